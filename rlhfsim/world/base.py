"""What every world provides: prompts, a tokenizer, the hidden gold reward and demonstrations.

A world is where prompts and truth come from. The loop never looks inside a world: it samples
prompts, asks for gold rewards of decoded completions, and takes demonstrations for the SFT warm
start. Completions are plain strings of space-separated words without special tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerFast


@dataclass(frozen=True)
class Prompt:
    """One prompt as the loop, the buffer and the reports see it."""

    id: int  # unique within a world's prompt stream (eval prompts: 0..n-1)
    family: str  # "add" | "fact" | "open" (synthetic); any string for other worlds
    type: str  # "closed" | "open": the prompt type for prompt-aware utilities and collapse metrics
    text: str  # e.g. "add 3 5 =" ; "fact e12 =" ; "write about ocean"
    answer: str | None = None  # the one right answer for closed prompts
    topic: str | None = None
    policy_text: str | None = (
        None  # the prompt as the policy sees it (chat template, BOS) when that differs from `text`
    )

    @property
    def model_input(self) -> str:
        """What the policy is prompted with; reward and gold models read `text` with their own tokenizers."""
        return self.text if self.policy_text is None else self.policy_text


class World(ABC):
    """A source of prompts with a known (hidden) gold reward."""

    tokenizer: PreTrainedTokenizerFast
    prompt_types: list[str]  # e.g. ["open", "closed"]
    families: list[str]
    shifts: list[str] = []  # names `eval_prompts(n, shift=...)` accepts: held-out sets off the training distribution

    @abstractmethod
    def sample_prompts(self, n: int, rng: np.random.Generator) -> list[Prompt]:
        """n training prompts drawn with `rng` (family mix from the config)."""

    @abstractmethod
    def eval_prompts(self, n: int, shift: str | None = None) -> list[Prompt]:
        """A fixed held-out set: deterministic given the world seed, independent of any training rng.

        shift: one of `shifts`, for a set drawn from a shifted distribution instead of the training one."""

    @abstractmethod
    def gold(self, prompts: list[Prompt], completions: list[str]) -> np.ndarray:
        """Hidden gold reward, float64 [N] in [0, 1], for N (prompt, completion) pairs."""

    @abstractmethod
    def demonstrations(self, n: int, rng: np.random.Generator) -> list[tuple[Prompt, str]]:
        """n noisy (prompt, completion) demonstrations for the SFT warm start."""

    @abstractmethod
    def reference_completion(self, prompt: Prompt) -> str:
        """A gold-optimal answer (a human-written answer mixed into annotated groups)."""
