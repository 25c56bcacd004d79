"""Config sections of the worlds (rlhfsim.world): the registry of worlds, the synthetic and graded worlds' sections
and the simulated annotator's.

A world is a plug-in: its section subclasses `WorldBase` (a `name` literal, `impl` naming the factory, the world's
checks) and registers itself with `@register_world`; the root config's `world` union and `rlhfsim.world.build_world`
are built from `WORLD_SECTIONS` (docs/architecture.md, "Adding a world"). Sections are kept apart from the worlds
themselves so that loading a config imports neither numpy tables nor the tokenizer; the text world's section is
rlhfsim/world/text_config.py. The word pools live here because the fields' bounds read them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rlhfsim.schema import Strict

# Topic pool: the world seed picks `n_topics` topics and `words_per_topic` words of each.
TOPIC_POOL: dict[str, tuple[str, ...]] = {
    "ocean": ("wave", "fish", "salt", "tide", "shore", "coral", "whale", "sand", "reef", "boat"),
    "forest": ("tree", "leaf", "moss", "fern", "owl", "pine", "root", "bark", "deer", "trail"),
    "city": ("street", "tower", "bus", "crowd", "shop", "bridge", "light", "noise", "metro", "park"),
    "space": ("star", "planet", "orbit", "comet", "moon", "rocket", "galaxy", "void", "alien", "dust"),
    "music": ("song", "drum", "guitar", "melody", "rhythm", "choir", "piano", "note", "band", "tune"),
    "food": ("bread", "soup", "spice", "cheese", "apple", "rice", "honey", "salad", "bake", "taste"),
    "weather": ("rain", "cloud", "storm", "wind", "snow", "thunder", "fog", "sun", "frost", "breeze"),
    "sport": ("ball", "goal", "team", "race", "coach", "score", "match", "run", "jump", "medal"),
    "school": ("book", "teacher", "class", "pencil", "lesson", "exam", "desk", "chalk", "library", "study"),
    "machine": ("gear", "engine", "wheel", "bolt", "motor", "lever", "steam", "spring", "valve", "robot"),
}
# Content-free words: they lengthen a text without putting it on topic.
FILLER_POOL = (
    "the",
    "a",
    "very",
    "and",
    "so",
    "just",
    "really",
    "thing",
    "stuff",
    "good",
    "nice",
    "some",
    "more",
    "also",
    "then",
    "it",
)
OPEN_DEMO_KINDS = ("good", "short", "long", "repetitive", "offtopic")
# eval_prompts(n, shift=...) of the synthetic and graded worlds: distributions the training stream never shows
SHIFTS = ("operands", "topics", "facts")
# graded world: the openness words of addition prompts, and the word paraphrases of sums
OPENNESS_WORDS = ("exactly", "closely", "nearly", "roughly", "loosely", "vaguely", "freely", "wildly")
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
# perturbation families (rlhfsim.world.perturb.PERTURBATIONS) that read the synthetic world's tables (topics, answers,
# fillers), and those that work on any text; tests/world/test_perturb.py checks that the two make up the registry
NEEDS_SYNTHETIC = ("topic_words", "answer_junk", "wrong_format")
TEXT_FAMILIES = ("append_junk", "echo_prompt", "pad_length", "repeat_tokens")


class WorldBase(BaseModel):
    """The base of every world's section. A subclass declares `name: Literal["<name>"]`, its fields, `impl` and
    registers itself with `@register_world`. Checks of its own fields are pydantic validators on the subclass; checks
    against the rest of the run's config go in `check_run`, which the root config calls (the defaults below fit a
    world with its own word tokenizer, no shifted eval sets and none of the synthetic world's tables)."""

    model_config = ConfigDict(extra="forbid")

    impl: ClassVar[str] = ""  # "module:factory" building the World; imported only when a run builds the world
    context: ClassVar[tuple[str, ...]] = ()  # the run context the factory takes (policy_tokenizer, device, score_batch)
    shifts: ClassVar[tuple[str, ...]] = ()  # names its World's eval_prompts(n, shift=...) accepts (audit.shifts)
    own_tokenizer: ClassVar[bool] = True  # True: the world brings its tokenizer; False: it reads policy.checkpoint's
    synthetic_tables: ClassVar[bool] = False  # has the tables (topics, answers, fillers) NEEDS_SYNTHETIC families read

    @classmethod
    def audit_defaults(cls, raw: dict) -> dict:
        """The audit fields this world sets when the config leaves them out (`raw`: the world section as written).
        The audit section's own defaults read the synthetic world's tables; any other world gets the perturbations
        that work on any text and no shifted sets."""
        return {"families": list(TEXT_FAMILIES), "shifts": []}

    def check_run(self, cfg: Any) -> None:
        """This world against the rest of the run's config (`cfg`: rlhfsim.config.Config); a ValueError names the
        fields and the fix. A subclass extends it (super().check_run(cfg) first)."""
        if cfg.policy.checkpoint is not None and self.own_tokenizer:
            readers = " or ".join(n for n, s in WORLD_SECTIONS.items() if not s.own_tokenizer)
            raise ValueError(
                f"policy.checkpoint needs world.name: {readers} (the {self.name} world has its own word tokenizer)"
            )
        if not self.own_tokenizer and cfg.policy.checkpoint is None:
            raise ValueError(f"world.name: {self.name} needs policy.checkpoint (a causal LM: hub name or local folder)")
        for s in cfg.audit.shifts:
            if s not in self.shifts:
                raise ValueError(f"audit.shifts: unknown shift {s!r}; this world has {list(self.shifts)}")
        tables = sorted({f.name for f in cfg.audit.families} & set(NEEDS_SYNTHETIC))
        if cfg.audit.enabled and tables and not self.synthetic_tables:
            raise ValueError(
                f"audit.families: {tables} need the synthetic world; the {self.name} world's are "
                f"{sorted(TEXT_FAMILIES)}"
            )


# world.name -> its section, in registration order; read by the root config's
# `world` union and by rlhfsim.world.build_world
WORLD_SECTIONS: dict[str, type[WorldBase]] = {}
_LISTENERS: list[Callable[[], None]] = []  # called after every change (rlhfsim.config rebuilds its `world` union)


def register_world(section: type[WorldBase]) -> type[WorldBase]:
    """Register a world's section under its `name` (a class decorator). A world registered after rlhfsim.config was
    imported (a plug-in outside the package, a test) is added to the config's `world` union at once."""
    name = section.model_fields["name"].default if "name" in section.model_fields else None
    if not (isinstance(section, type) and issubclass(section, WorldBase)) or not isinstance(name, str):
        raise TypeError(
            f"{section!r}: a world's section subclasses WorldBase and declares name: Literal[...] with its default"
        )
    if ":" not in section.impl:
        raise TypeError(
            f"{section.__name__}.impl must name the world's factory as 'module:attribute', got {section.impl!r}"
        )
    if WORLD_SECTIONS.get(name, section) is not section:
        raise ValueError(f"world {name!r} is already registered ({WORLD_SECTIONS[name].__name__})")
    WORLD_SECTIONS[name] = section
    for listener in _LISTENERS:
        listener()
    return section


def unregister_world(name: str) -> None:
    """Remove a registered world (a test's toy world when the test is done)."""
    del WORLD_SECTIONS[name]
    for listener in _LISTENERS:
        listener()


def on_world_registry_change(listener: Callable[[], None]) -> None:
    _LISTENERS.append(listener)


@register_world
class SyntheticWorldConfig(WorldBase):
    """The embedded synthetic world: additions and hidden facts (closed), "write about <topic>" (open)."""

    impl: ClassVar[str] = "rlhfsim.world.synthetic:SyntheticWorld"
    shifts: ClassVar[tuple[str, ...]] = SHIFTS
    synthetic_tables: ClassVar[bool] = True

    name: Literal["synthetic"] = Field("synthetic", description="World registry name.")
    seed: int = Field(
        0, ge=0, description="World seed: fixes the fact table, the topics and their words, and the eval prompts."
    )
    add_frac: float = Field(
        0.35, ge=0, le=1, description="Share of addition prompts ('add a b =') in the training stream."
    )
    fact_frac: float = Field(0.15, ge=0, le=1, description="Share of fact look-up prompts ('fact e<i> =').")
    open_frac: float = Field(
        0.5, ge=0, le=1, description="Share of open prompts ('write about <topic>'); the three shares sum to 1."
    )
    max_operand: int = Field(9, ge=1, le=20, description="Addition operands are drawn from 0..max_operand.")
    n_facts: int = Field(24, ge=1, le=64, description="Entities in the hidden fact table (e0, e1, ...).")
    n_fact_values: int = Field(8, ge=2, le=32, description="Distinct fact values (v0, v1, ...); each entity has one.")
    n_topics: int = Field(
        6,
        ge=1,
        le=len(TOPIC_POOL),
        description="Topics for open prompts, picked by the world seed from a built-in pool.",
    )
    words_per_topic: int = Field(
        8, ge=1, le=10, description="On-topic words per topic (the topic name itself also counts as on topic)."
    )
    n_filler: int = Field(
        10, ge=0, le=len(FILLER_POOL), description="Content-free filler words ('the', 'very', ...) in the vocabulary."
    )
    open_length_optimum: int = Field(
        6, ge=1, le=11, description="Open prompts: the length (words) at which the length term peaks."
    )
    open_length_decay: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Open prompts: the length term loses this much per word beyond the optimum (floored at 0).",
    )
    open_w_topic: float = Field(
        1.0, ge=0, le=10, description="Open gold: exponent of the on-topic share (0 ignores it)."
    )
    open_w_diversity: float = Field(
        1.0, ge=0, le=10, description="Open gold: exponent of diversity, distinct words / words."
    )
    open_w_length: float = Field(1.0, ge=0, le=10, description="Open gold: exponent of the length term.")
    p_correct_add: float = Field(
        0.5, ge=0, le=1, description="Demonstrations: probability an addition demo is right (else a near miss)."
    )
    p_correct_fact: float = Field(
        0.5, ge=0, le=1, description="Demonstrations: probability a fact demo is right (else another value)."
    )
    near_miss_spread: int = Field(
        3,
        ge=1,
        le=10,
        description="Demonstrations: wrong sums are the true sum +-1..spread (near misses teach addition partially).",
    )
    closed_junk_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Demonstrations: share of closed demos with 1-2 stray words after the answer (gold 0).",
    )
    demo_open_good: float = Field(
        0.3, ge=0, le=1, description="Open demos: share of distinct on-topic texts near the length optimum."
    )
    demo_open_short: float = Field(
        0.15, ge=0, le=1, description="Open demos: share of short on-topic texts (1 to optimum/2 words)."
    )
    demo_open_long: float = Field(
        0.2, ge=0, le=1, description="Open demos: share of on-topic texts longer than the optimum."
    )
    demo_open_repetitive: float = Field(
        0.15, ge=0, le=1, description="Open demos: share of texts repeating 1-2 on-topic words."
    )
    demo_open_offtopic: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Open demos: share of texts mixing on-topic words with filler and other topics' words.",
    )
    max_demo_words: int = Field(
        9, ge=2, le=12, description="Longest demonstration in words (keep below policy.response_len for EOS)."
    )
    holdout_topics: int = Field(
        0,
        ge=0,
        le=9,
        description="The last this many topics never appear in training prompts or demos (the eval shift 'topics' asks about them).",
    )
    holdout_facts: int = Field(
        0,
        ge=0,
        le=63,
        description="The last this many fact entities never appear in training prompts or demos (eval shift 'facts').",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticWorldConfig:
        for label, parts in (
            ("add_frac + fact_frac + open_frac", (self.add_frac, self.fact_frac, self.open_frac)),
            ("the demo_open_* shares", tuple(getattr(self, f"demo_open_{k}") for k in OPEN_DEMO_KINDS)),
        ):
            if abs(sum(parts) - 1.0) > 1e-6:
                raise ValueError(f"{label} must sum to 1, got {sum(parts):g}")
        if self.words_per_topic + 1 < self.open_length_optimum:
            raise ValueError(
                f"open_length_optimum ({self.open_length_optimum}) needs that many distinct on-topic words; "
                f"a topic has words_per_topic + 1 = {self.words_per_topic + 1}"
            )
        if self.holdout_topics >= self.n_topics or self.holdout_facts >= self.n_facts:
            raise ValueError(
                f"holdout_topics ({self.holdout_topics}) / holdout_facts ({self.holdout_facts}) must leave at least one "
                f"training topic / entity (n_topics {self.n_topics}, n_facts {self.n_facts})"
            )
        if self.max_demo_words <= self.open_length_optimum:
            raise ValueError(
                f"max_demo_words ({self.max_demo_words}) must exceed open_length_optimum ({self.open_length_optimum})"
            )
        return self

    @classmethod
    def audit_defaults(cls, raw: dict) -> dict:
        return {}  # the audit section's defaults are this world's

    def check_run(self, cfg: Any) -> None:
        super().check_run(cfg)
        for s in cfg.audit.shifts:
            if s in ("topics", "facts") and getattr(self, f"holdout_{s}") == 0:
                raise ValueError(f"audit.shifts: {s!r} needs world.holdout_{s} >= 1 (nothing is held out of training)")


@register_world
class GradedWorldConfig(SyntheticWorldConfig):
    """The graded world (rlhfsim.world.graded): the synthetic world's families, with additions graded by distance to
    the right sum and an openness level per addition prompt that sets how far partial credit reaches."""

    impl: ClassVar[str] = "rlhfsim.world.graded:GradedWorld"

    name: Literal["graded"] = Field("graded", description="World registry name.")
    add_frac: float = Field(0.6, ge=0, le=1, description="Share of (graded) addition prompts ('add a b <level> =').")
    fact_frac: float = Field(0.1, ge=0, le=1, description="Share of fact look-up prompts (exact, closed).")
    open_frac: float = Field(
        0.3, ge=0, le=1, description="Share of open prompts ('write about <topic>'); the three shares sum to 1."
    )
    openness_levels: int = Field(
        5,
        ge=2,
        le=len(OPENNESS_WORDS),
        description="Openness levels of addition prompts, drawn uniformly; level l "
        f"is the word OPENNESS_WORDS[l] ({', '.join(OPENNESS_WORDS[:3])}, ...) before '='.",
    )
    credit_width: float = Field(
        3.0,
        gt=0,
        le=20,
        description="A sum off by d at openness o = l / (levels - 1) earns max(0, 1 - d / (1 + credit_width * o)): "
        "level 0 gives 0 to every wrong sum (polarised), higher levels graded credit to ever farther near misses (the top "
        "level, with the demos' misses of 1-3, spreads gold evenly over [0, 1]).",
    )
    p_word_answer: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Demonstrations: probability an addition's answer is written as a word ('eight'), "
        "a paraphrase gold treats exactly as the digits.",
    )
    closed_below: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Addition prompts with openness l / (levels - 1) below this are of type closed, the "
        "rest open (the type prompt-aware utilities and type-level collapse metrics read).",
    )

    @model_validator(mode="after")
    def _words_cover_sums(self) -> GradedWorldConfig:
        if 2 * self.max_operand >= len(NUMBER_WORDS):
            raise ValueError(
                f"graded world: max_operand ({self.max_operand}) must be at most {(len(NUMBER_WORDS) - 1) // 2} "
                f"so every sum has a word paraphrase (up to {NUMBER_WORDS[-1]!r})"
            )
        return self


class AnnotatorConfig(Strict):
    """The simulated annotator: rankings from gold plus noise (rlhfsim.world.annotator)."""

    name: Literal["plackett_luce", "bradley_terry"] = Field("plackett_luce", description="Noise model.")
    temperature: float = Field(0.05, ge=0, le=100, description="Noise temperature on gold (0 = exact gold order).")
    flip_rate: float = Field(0.0, ge=0, le=0.5, description="Probability of flipping each labelled pair.")
    ties: Literal["keep", "break", "consistent"] = Field(
        "keep",
        description="keep: equal gold gives no pair; break: random direction; consistent: the direction of a fixed "
        "per-(prompt, completion) key salted by the seed, so a repeated prompt with the same completions gets the same order.",
    )
