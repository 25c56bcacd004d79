"""Config of the text world: prompts from a `datasets` dataset, gold from a reward-model checkpoint or a rule.

Kept apart from rlhfsim/world/text.py so that loading a config never imports `datasets` or loads a model; the section
registers the world (rlhfsim.world.config.register_world) and names its factory, imported only when a run builds it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlhfsim.schema import local_path_exists
from rlhfsim.world.config import WorldBase, register_world

GOLD_RULES = ("length", "reference_match", "reference_f1")
CLASSIFIER_NAMES = ("tfidf_logreg",)  # the keys of rlhfsim.world.classifier.CLASSIFIERS (a test checks they agree)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GoldRuleConfig(_Strict):
    """Gold from a rule per prompt type (no model). `length`: the paper's length-based ranking on LongForm-style
    answers, min(words / target, 1) minus `length_decay` per word beyond the target; `reference_match`: 1 iff the
    completion starts with the reference answer (case and punctuation ignored), else 0 (closed-ended);
    `reference_f1`: word-overlap F1 with the reference answer."""

    kind: Literal["rule"] = Field("rule", description="Gold from a rule.")
    rules: dict[str, Literal["length", "reference_match", "reference_f1"]] = Field(
        default_factory=lambda: {"open": "length", "closed": "reference_match"}, description="Prompt type -> rule."
    )
    length_target: int = Field(64, ge=1, description="length rule: words at which the gold reaches 1.")
    length_decay: float = Field(
        0.0, ge=0, le=1, description="length rule: gold lost per word beyond the target (0 = longer never hurts)."
    )


class GoldModelConfig(_Strict):
    """Gold from a larger reward-model checkpoint (Gao et al. 2022): sigmoid(logit / temperature) in [0,1]."""

    kind: Literal["model"] = Field("model", description="Gold from a sequence-classification checkpoint.")
    checkpoint: str = Field(
        ..., description="Hub name or local folder of a 1-logit sequence classifier (a trained reward model)."
    )
    tokenizer: str | None = Field(None, description="Tokenizer when it is not stored with the checkpoint.")
    temperature: float = Field(1.0, gt=0, description="Logits are divided by this before the sigmoid.")
    max_length: int = Field(
        512, ge=8, le=32768, description="Tokens per (prompt, completion); the longer of the two is cut first."
    )

    _paths = field_validator("checkpoint", "tokenizer")(local_path_exists)


class GoldClassifierConfig(_Strict):
    """Gold from a classifier fitted on a labelled table: P(label == positive) of the completion (or prompt +
    completion), e.g. IMDB sentiment. Fitted once (seeded), cached by table checksum and settings."""

    kind: Literal["classifier"] = Field("classifier", description="Gold from a classifier fitted on a labelled table.")
    table: str = Field(
        ..., description="The labelled table: a .csv/.parquet/.json/.jsonl file or real:<name> (e.g. real:imdb)."
    )
    text_column: str = Field("text", description="Column with the texts.")
    label_column: str = Field("label", description="Column with the labels.")
    positive: int | str = Field(1, description="The label value whose probability is the gold reward.")
    where: dict[str, int | str] = Field(
        default_factory=dict, description="Keep only rows whose columns equal these values, e.g. {source: imdb}."
    )
    model: Literal[CLASSIFIER_NAMES] = Field(
        "tfidf_logreg",
        description="Classifier (rlhfsim.world.classifier.CLASSIFIERS): "
        "tfidf_logreg = TF-IDF of words + logistic regression (scikit-learn).",
    )
    C: float = Field(4.0, gt=0, description="tfidf_logreg: inverse L2 strength of the logistic regression.")
    max_features: int = Field(
        50000, ge=100, description="tfidf_logreg: vocabulary size (most frequent words seen in 2+ rows)."
    )
    ngram_max: int = Field(
        1, ge=1, le=3, description="tfidf_logreg: longest word n-gram (1 = words only; 2 costs ~3x the fit)."
    )
    holdout_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of rows held out of the fit to measure its accuracy."
    )
    seed: int = Field(0, ge=0, description="Seed of the hold-out split and the fit.")
    reads: Literal["completion", "prompt_and_completion"] = Field(
        "completion", description="What the classifier reads: the completion alone, or the prompt followed by it."
    )
    temperature: float = Field(1.0, gt=0, description="The classifier's logit is divided by this before the sigmoid.")

    _paths = field_validator("table")(local_path_exists)


@register_world
class TextWorldConfig(WorldBase):
    """Prompts from a `datasets` dataset (hub name or local json/jsonl/csv/parquet files), typed by a column or by
    rules, with a gold reward model or a gold rule. Needs policy.checkpoint and reward.checkpoint."""

    impl: ClassVar[str] = "rlhfsim.world.text:TextWorld"  # imports `datasets` only when a text world is built
    context: ClassVar[tuple[str, ...]] = ("policy_tokenizer", "device", "score_batch")
    own_tokenizer: ClassVar[bool] = False

    name: Literal["text"] = Field("text", description="World registry name.")
    seed: int = Field(0, ge=0, description="World seed: fixes the train/eval split of the prompts.")
    dataset: str = Field(
        ..., description="Hub dataset name, a local data file (.json/.jsonl/.csv/.parquet), or a folder of them."
    )
    config_name: str | None = Field(None, description="Hub dataset configuration (subset), if it has several.")
    split: str = Field("train", description="Split the prompts come from.")
    eval_split: str | None = Field(
        None, description="Split of the held-out eval prompts; null = hold out `eval_fraction` of `split`."
    )
    eval_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of `split` held out for evaluation when eval_split is null."
    )
    max_rows: int | None = Field(None, ge=1, description="Use only the first rows of the split (quick runs).")
    where: dict[str, int | str] = Field(
        default_factory=dict, description="Keep only rows whose columns equal these values, e.g. {source: imdb}."
    )
    sample_rows: int | None = Field(
        None,
        ge=2,
        description="Keep a random sample of this many rows (seeded by `seed`, after `where`); "
        "unlike max_rows it does not depend on the table's order.",
    )
    prompt_words: int | None = Field(
        None,
        ge=1,
        le=512,
        description="Cut each prompt to its first this many words, markup "
        "(<br />) removed: a review's opening for the policy to continue (null = the whole text).",
    )
    type_by_gold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Type each prompt by the gold model's score of the prompt text itself: prompt_types[1] at "
        "or above this, prompt_types[0] below (needs 2 prompt_types and no type_column / type_rules).",
    )
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    type_column: str | None = Field(
        None, description="Column holding each prompt's type (values must be in prompt_types); null = use type_rules."
    )
    type_rules: dict[str, str] = Field(
        default_factory=dict,
        description="Prompt type -> regular expression searched in the prompt (case-insensitive); the "
        "first match in order wins, else default_type. Used when type_column is null.",
    )
    default_type: str = Field("open", description="Type of prompts no rule matches.")
    prompt_types: list[str] = Field(
        ["open", "closed"], min_length=1, description="The prompt types (keys of reward.prompt_aware)."
    )
    family_column: str | None = Field(
        None, description="Column grouping prompts into families for per-family metrics; null = family is the type."
    )
    reference_column: str | None = Field(
        None,
        description="Column with a human-written answer: SFT demonstrations, reference_mix and the reference_* gold rules.",
    )
    prompt_template: str = Field(
        "{prompt}", description="How a prompt is shown to a policy without a chat template, e.g. 'Q: {prompt}\\nA:'."
    )
    chat_template: Literal["auto", "off"] = Field(
        "auto", description="auto: wrap prompts in the policy tokenizer's chat template when it has one."
    )
    max_prompt_tokens: int = Field(
        256, ge=1, description="Prompts longer than this (policy tokens, template included) are dropped."
    )
    gold: GoldRuleConfig | GoldModelConfig | GoldClassifierConfig = Field(
        default_factory=GoldRuleConfig, discriminator="kind", description="The hidden gold reward."
    )

    _paths = field_validator("dataset", "eval_split")(local_path_exists)

    @model_validator(mode="after")
    def _consistent(self) -> TextWorldConfig:
        if len(set(self.prompt_types)) != len(self.prompt_types):
            raise ValueError(f"prompt_types has duplicates: {self.prompt_types}")
        if self.default_type not in self.prompt_types and self.type_by_gold is None:
            raise ValueError(f"default_type {self.default_type!r} is not one of prompt_types {self.prompt_types}")
        for t, pattern in self.type_rules.items():
            if t not in self.prompt_types:
                raise ValueError(f"type_rules: {t!r} is not one of prompt_types {self.prompt_types}")
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"type_rules.{t}: bad regular expression {pattern!r}: {e}") from None
        if "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {prompt}")
        if self.type_by_gold is not None:
            if len(self.prompt_types) != 2 or self.type_column or self.type_rules:
                raise ValueError(
                    "type_by_gold needs exactly 2 prompt_types (low, high) and no type_column / type_rules"
                )
            if isinstance(self.gold, GoldRuleConfig):
                raise ValueError(
                    "type_by_gold needs a gold model (gold.kind: model or classifier) to score the prompts"
                )
        if isinstance(self.gold, GoldRuleConfig):
            missing = [t for t in self.prompt_types if t not in self.gold.rules]
            extra = [t for t in self.gold.rules if t not in self.prompt_types]
            if missing or extra:
                raise ValueError(f"gold.rules must name each prompt type once: missing {missing}, unknown {extra}")
            if self.reference_column is None and any(r.startswith("reference") for r in self.gold.rules.values()):
                raise ValueError("gold rules reference_match / reference_f1 need world.reference_column")
        return self

    @classmethod
    def audit_defaults(cls, raw: dict) -> dict:
        # the generic text transforms and no shifted sets unless the config names its own, and no stress suite without
        # reference answers (it perturbs them)
        return {**super().audit_defaults(raw), **({"enabled": False} if raw.get("reference_column") is None else {})}

    def check_run(self, cfg: Any) -> None:
        super().check_run(cfg)
        if cfg.reward.checkpoint is None:
            raise ValueError(
                "world.name: text needs reward.checkpoint (a sequence-classification backbone, e.g. a DeBERTa-v3)"
            )
        if self.reference_column is not None:
            return
        if cfg.loop.reference_mix > 0:
            raise ValueError(
                "loop.reference_mix > 0 needs world.reference_column (the human-written answers); set it or reference_mix: 0"
            )
        if cfg.policy.sft_demos > 0 and cfg.policy.sft_epochs > 0:
            raise ValueError(
                "SFT demonstrations come from world.reference_column; set it, or policy.sft_demos: 0 to skip SFT"
            )
        if cfg.audit.enabled:
            raise ValueError(
                "audit.enabled needs world.reference_column (the stress suite perturbs reference answers); set it or audit.enabled: false"
            )
        # reward.offline needs no check here: it is for the built-in reward model, and this world needs reward.checkpoint
