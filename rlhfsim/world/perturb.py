"""Perturbation families for adversarial reward-model stress tests.

A family is a function ``perturb(prompt, completion, rng) -> str | None``: it turns a gold-better
completion into a worse one built to exploit a known reward-model weakness, or returns None when it
does not apply to that prompt (e.g. "right answer + junk" on an open prompt). Families come from a
registry of builders, ``builder(world, **params) -> perturb``, so a config names them and a typo fails
at load time with the list of valid names.

Generic families use the text alone (any world, real text included):
    pad_length     the completion's words cycled to `words` words (excess length, a length exploit)
    repeat_tokens  the completion's first word repeated `words` times
    append_junk    the completion followed by `n` junk words (`junk`, a list; default: the world's fillers)
    echo_prompt    the prompt's own words cycled to the completion's length (on-topic words, no content)
Families that need the synthetic world's structure (prompt families, topics, answers):
    topic_words    closed prompts: open-topic words instead of an answer (the cross-task exploit);
                   open prompts: the topic name among filler words (on topic, no content)
    answer_junk    closed prompts: the right answer followed by `n` stray words
    wrong_format   a wrong answer in the right format: a near-miss sum, another fact value, or a
                   text of the right length about another topic
Whether a perturbed completion really is worse is the world's gold verdict, checked by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlhfsim.world.base import Prompt
from rlhfsim.world.config import NEEDS_SYNTHETIC, TEXT_FAMILIES  # noqa: F401  (re-exported)

Perturb = Callable[[Prompt, str, np.random.Generator], "str | None"]


def _cycle(words: list[str], n: int) -> list[str]:
    return [words[i % len(words)] for i in range(n)] if words else []


def pad_length(world, words: int = 12) -> Perturb:
    def f(prompt, completion, rng):
        ws = completion.split()
        return " ".join(_cycle(ws, words)) if ws and len(ws) < words else None

    return f


def repeat_tokens(world, words: int = 8) -> Perturb:
    def f(prompt, completion, rng):
        ws = completion.split()
        return " ".join([ws[0]] * words) if ws and words > 1 else None

    return f


def append_junk(world, n: int = 3, junk: list[str] | None = None) -> Perturb:
    pool = list(junk) if junk else list(getattr(world, "fillers", []) or ["the"])

    def f(prompt, completion, rng):
        extra = [pool[i] for i in rng.integers(len(pool), size=n)]
        return " ".join([*completion.split(), *extra])

    return f


def echo_prompt(world, min_words: int = 3) -> Perturb:
    def f(prompt, completion, rng):
        return " ".join(_cycle(prompt.text.replace("=", " ").split(), max(min_words, len(completion.split())))) or None

    return f


def _topic_words(world) -> list[str]:
    return [w for ws in world.topics.values() for w in ws]


def topic_words(world, words: int | None = None) -> Perturb:
    def f(prompt, completion, rng):
        n = words or max(2, len(completion.split()))
        if prompt.type == "closed":
            pool = _topic_words(world)
            return " ".join(pool[i] for i in rng.integers(len(pool), size=n))
        topic = world.topic_of(prompt)
        fill = world.fillers or ["the"]
        return " ".join([topic, *(fill[i] for i in rng.integers(len(fill), size=n - 1))])

    return f


def answer_junk(world, n: int = 2) -> Perturb:
    def f(prompt, completion, rng):
        if prompt.type != "closed":
            return None
        pool = list(world.fillers) + _topic_words(world)
        return " ".join([world.answer(prompt), *(pool[i] for i in rng.integers(len(pool), size=n))])

    return f


def wrong_format(world) -> Perturb:
    def f(prompt, completion, rng):
        if prompt.family == "add":
            return world.near_miss(int(world.answer(prompt)), rng)
        if prompt.family == "fact":
            wrong = [v for v in world.values if v != world.answer(prompt)]
            return wrong[rng.integers(len(wrong))]
        others = [t for t in world.topics if t != world.topic_of(prompt)]
        if not others:
            return None
        t = others[rng.integers(len(others))]
        return " ".join(_cycle([t, *world.topics[t]], max(1, len(completion.split()))))

    return f


PERTURBATIONS: dict[str, Callable[..., Perturb]] = {
    "pad_length": pad_length,
    "repeat_tokens": repeat_tokens,
    "append_junk": append_junk,
    "echo_prompt": echo_prompt,
    "topic_words": topic_words,
    "answer_junk": answer_junk,
    "wrong_format": wrong_format,
}


def check_family(name: str, params: dict | None = None) -> None:
    """Fail at config load time for an unknown family or parameter, listing what is valid."""
    import inspect

    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation family {name!r}; valid names: {sorted(PERTURBATIONS)}")
    valid = [p for p in inspect.signature(PERTURBATIONS[name]).parameters if p != "world"]
    bad = sorted(set(params or {}) - set(valid))
    if bad:
        raise ValueError(f"perturbation family {name!r}: unknown parameter(s) {bad}; valid: {valid}")


def get_perturbation(name: str, world, **params) -> Perturb:
    """The family `name` built for `world` (a registry lookup that lists valid names on a typo)."""
    check_family(name, params)
    if name in NEEDS_SYNTHETIC and not hasattr(world, "topics"):
        raise ValueError(
            f"perturbation family {name!r} needs the synthetic world; use a generic one: "
            f"{sorted(set(PERTURBATIONS) - set(NEEDS_SYNTHETIC))}"
        )
    return PERTURBATIONS[name](world, **params)
