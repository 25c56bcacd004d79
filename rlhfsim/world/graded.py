"""The graded world: the synthetic world with partial credit and a continuum of openness (world.name: graded).

Where one prompt-independent reward profile should hurt: the additions carry an openness level in their text,

    add   "add 3 5 roughly ="   level l of L (a word from OPENNESS_WORDS); the right answer "8" or "eight"

and the level sets how much partial credit a near miss earns, so the true within-prompt reward profile moves
from polarised (level 0: right 1, everything else 0, as a closed prompt) to graded (high levels: every near
miss earns credit by its distance, as an open prompt). A batch mixes levels, so any one shared profile weights
some prompts' completions wrongly. Facts stay exact (closed) and "write about <topic>" keeps the synthetic
world's open gold: the fully open end. Everything else (topics, facts, demonstrations, shifts) is the
synthetic world's; the synthetic world itself is unchanged and stays the default.
"""

from __future__ import annotations

import numpy as np

from rlhfsim.world.base import Prompt
from rlhfsim.world.config import NUMBER_WORDS, OPENNESS_WORDS, GradedWorldConfig  # noqa: F401  (re-exported)
from rlhfsim.world.synthetic import SyntheticWorld
from rlhfsim.world.tokenizer import build_word_tokenizer


class GradedWorld(SyntheticWorld):
    """The synthetic world with graded additions (gold in the module docstring and `add_gold`)."""

    def __init__(self, cfg: GradedWorldConfig | None = None):
        cfg = cfg if cfg is not None else GradedWorldConfig()
        super().__init__(cfg)
        self.levels = list(OPENNESS_WORDS[: cfg.openness_levels])
        self.number_words = list(NUMBER_WORDS[: 2 * cfg.max_operand + 1])
        self.vocab = [*self.vocab, *self.levels, *self.number_words]
        self.tokenizer = build_word_tokenizer(self.vocab)

    # ------------------------------------------------------------------ prompts

    def level_of(self, prompt: Prompt) -> int:
        """Openness level of an addition prompt (0 when the text carries none, e.g. a shifted-operand prompt)."""
        words = prompt.text.split()
        return self.levels.index(words[3]) if len(words) == 5 and words[3] in self.levels else 0

    def openness(self, prompt: Prompt) -> float:
        """Openness in [0, 1]: l / (levels - 1) for additions, 0 for facts, 1 for open prompts."""
        if prompt.family == "add":
            return self.level_of(prompt) / (len(self.levels) - 1)
        return 1.0 if prompt.family == "open" else 0.0

    def make_prompt(self, family: str, rng: np.random.Generator, id: int) -> Prompt:
        if family != "add":
            return super().make_prompt(family, rng, id)
        a, b = (int(x) for x in rng.integers(0, self.cfg.max_operand + 1, size=2))
        level = int(rng.integers(len(self.levels)))
        kind = "closed" if level / (len(self.levels) - 1) < self.cfg.closed_below else "open"
        return Prompt(id, "add", kind, f"add {a} {b} {self.levels[level]} =", answer=str(a + b))

    # ------------------------------------------------------------------ truth

    def number(self, word: str) -> int | None:
        """The value of a number written as digits or as a word; None for anything else."""
        if word in self.number_words:
            return self.number_words.index(word)
        return int(word) if word.isdigit() else None

    def add_gold(self, prompt: Prompt, words: list[str]) -> float:
        """1 for the right sum (digits or word); max(0, 1 - d / (1 + credit_width * openness)) for a sum off by d;
        0 for anything that is not exactly one number."""
        value = self.number(words[0]) if len(words) == 1 else None
        if value is None:
            return 0.0
        d = abs(value - int(self.answer(prompt)))
        return float(max(0.0, 1.0 - d / (1.0 + self.cfg.credit_width * self.openness(prompt))))

    def gold(self, prompts: list[Prompt], completions: list[str]) -> np.ndarray:
        """Gold reward, float64 [N] in [0, 1]: additions graded (add_gold), facts and open prompts as the synthetic world."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        out = super().gold(prompts, completions)
        for i, (p, text) in enumerate(zip(prompts, completions)):
            if p.family == "add":
                out[i] = self.add_gold(p, text.split())
        return out

    # ------------------------------------------------------------------ demonstrations

    def demo_completion(self, prompt: Prompt, rng: np.random.Generator) -> str:
        text = super().demo_completion(prompt, rng)
        if prompt.family == "add" and rng.random() < self.cfg.p_word_answer:
            words = text.split()
            words[0] = self.number_words[int(words[0])]  # the paraphrase of the same (right or near-miss) sum
            text = " ".join(words)
        return text
