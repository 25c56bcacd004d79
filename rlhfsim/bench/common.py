"""Shared pieces of `rlhfsim bench`: the benchmark shape, a word vocabulary of a given size, timing.

Every section times with warm-up calls first (allocator, thread pool and lazy-init costs are not
what we measure) and reports the median of the timed repeats (robust to a noisy shared machine).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from rlhfsim.models.policy import gpt2_config
from rlhfsim.world.tokenizer import build_word_tokenizer


@dataclass
class Shape:
    """The named benchmark shape (every field is a `rlhfsim bench` flag)."""

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    vocab: int = 64  # tokenizer size, specials included
    prompts: int = 64  # rollout / PPO batch rows
    prompt_len: int = 8
    response_len: int = 16
    ppo_epochs: int = 1
    ppo_minibatches: int = 1
    rm_groups: int = 64  # prompt groups in the reward-training data
    rm_k: int = 8  # completions per group (k(k-1)/2 ranked pairs each)
    rm_seq_len: int = 24  # tokens per (prompt, completion) sequence, EOS included
    rm_batch: int = 64  # TRL: pairs per step; rlhfsim: completions per step (rm_batch // rm_k groups)
    warmup: int = 2
    repeats: int = 5
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def vocab_tokenizer(size: int):
    """A word tokenizer with exactly `size` ids (3 specials + words w0, w1, ...)."""
    if size < 8:
        raise ValueError(f"--vocab {size}: need at least 8 ids")
    return build_word_tokenizer([f"w{i}" for i in range(size - 3)])


def policy_model(tok, shape: Shape, n_positions: int, seed: int = 0):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(tok, shape.n_layer, shape.n_embd, shape.n_head, n_positions)).eval()


def random_words(n_rows: int, n_words: int, vocab: int, gen: torch.Generator) -> list[str]:
    """n_rows texts of n_words ordinary words (never specials), drawn with `gen`."""
    ids = torch.randint(0, vocab - 3, (n_rows, n_words), generator=gen)
    return [" ".join(f"w{i}" for i in row) for row in ids.tolist()]


def timeit(
    fn: Callable[[], object], warmup: int, repeats: int, setup: Callable[[], object] | None = None
) -> list[float]:
    """Wall seconds of `repeats` calls of fn after `warmup` untimed ones; `setup` runs untimed before each call."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    out = []
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def environment() -> dict:
    import os
    import platform

    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
