"""Distinct completions per prompt: the ranking data of the collapse study needs k different texts per prompt.

A reward model gives identical texts identical rewards, so a group with duplicates can never reach the
finite-n optimum of a total order. The loop oversamples (m * k completions per prompt) and keeps the
first k distinct texts of each prompt, in sampling order.
"""

from __future__ import annotations

import numpy as np


def first_distinct(texts: list[str], n_prompts: int, k: int) -> tuple[list[str], np.ndarray]:
    """texts [n_prompts * m * k], prompt-major -> (first k distinct texts per prompt [n_prompts * k], distinct counts [n_prompts]).

    A prompt with fewer than k distinct texts keeps all of them and fills the rest with its first
    samples again (in order), so the output always has k texts per prompt; its count says how many
    are distinct (at most k).
    """
    if n_prompts <= 0 or len(texts) % n_prompts:
        raise ValueError(f"{len(texts)} texts do not split evenly over {n_prompts} prompts")
    per = len(texts) // n_prompts
    if per < k:
        raise ValueError(f"{per} texts per prompt, fewer than k = {k}")
    out: list[str] = []
    counts = np.zeros(n_prompts, dtype=int)
    for i in range(n_prompts):
        block = texts[i * per : (i + 1) * per]
        keep = list(dict.fromkeys(block))[:k]  # dict keeps first-seen order
        counts[i] = len(keep)
        out.extend(keep + block[: k - len(keep)])
    return out, counts
