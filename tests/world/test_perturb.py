"""Perturbation families: each produces what it claims, and the world's gold calls it worse than the reference."""

import numpy as np
import pytest

from rlhfsim.diagnostics.audit import DEFAULT_FAMILIES, FamilySpec, build_stress_suite
from rlhfsim.world.base import Prompt
from rlhfsim.world.perturb import PERTURBATIONS, get_perturbation
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(SyntheticWorldConfig())


@pytest.fixture(scope="module")
def prompts(world):
    return world.eval_prompts(90)


def outputs(world, prompts, name, **params):
    f, rng = get_perturbation(name, world, **params), np.random.default_rng(0)
    return [(p, world.reference_completion(p), f(p, world.reference_completion(p), rng)) for p in prompts]


def test_every_family_is_gold_worse_than_the_reference(world, prompts):
    for name in PERTURBATIONS:
        applied = [(p, base, bad) for p, base, bad in outputs(world, prompts, name) if bad is not None]
        assert applied, name
        for p, base, bad in applied:
            g = world.gold([p, p], [base, bad])
            assert g[0] > g[1], (name, p.text, base, bad, g)
            assert set(bad.split()) <= set(world.vocab), (name, bad)  # the reward model can read it


def test_families_do_what_they_claim(world, prompts):
    topic_words = {w for ws in world.topics.values() for w in ws}
    for _, base, bad in outputs(world, prompts, "pad_length", words=12):
        assert len(bad.split()) == 12 and set(bad.split()) == set(base.split())
    for _, base, bad in outputs(world, prompts, "repeat_tokens", words=8):
        assert bad.split() == [base.split()[0]] * 8
    for p, _, bad in outputs(world, prompts, "topic_words"):
        if p.type == "closed":  # the cross-task exploit: open-topic words instead of an answer
            assert set(bad.split()) <= topic_words
        else:  # the topic named, the rest filler
            assert bad.split()[0] == p.topic and set(bad.split()[1:]) <= set(world.fillers)
    for p, _, bad in outputs(world, prompts, "answer_junk", n=2):
        if p.type == "closed":
            assert bad.split()[0] == world.answer(p) and len(bad.split()) == 3
        else:
            assert bad is None
    for p, base, bad in outputs(world, prompts, "wrong_format"):
        words = bad.split()
        if p.family == "add":
            assert len(words) == 1 and words[0].isdigit() and words[0] != world.answer(p)
        elif p.family == "fact":
            assert len(words) == 1 and words[0] in world.values and words[0] != world.answer(p)
        else:  # the right length about another topic
            assert len(words) == len(base.split()) and not set(words) & world.topic_sets[p.topic]
    for _, base, bad in outputs(world, prompts, "append_junk", n=2, junk=["very", "nice"]):
        assert bad.split()[:-2] == base.split() and set(bad.split()[-2:]) <= {"very", "nice"}
    for p, _, bad in outputs(world, prompts, "echo_prompt"):
        assert set(bad.split()) <= set(p.text.replace("=", " ").split())


def test_suite_keeps_only_gold_verified_pairs(world, prompts):
    suite = build_stress_suite(world, prompts, [FamilySpec(name=n) for n in DEFAULT_FAMILIES], seed=0)
    assert set(suite.family) == set(DEFAULT_FAMILIES)
    assert sum(suite.dropped.values()) == 0
    g_better = world.gold(suite.prompts, suite.better)
    g_worse = world.gold(suite.prompts, suite.worse)
    assert (g_better > g_worse).all()

    # a family gold does not call worse (a "perturbation" that returns the reference itself, slightly reordered for
    # open prompts) is dropped and counted, never kept
    import rlhfsim.world.perturb as P

    P.PERTURBATIONS["_same"] = lambda w: lambda p, c, rng: " ".join(reversed(c.split())) if p.type == "open" else None
    try:
        s2 = build_stress_suite(world, prompts, [FamilySpec.model_construct(name="_same", params={})], seed=0)
    finally:
        del P.PERTURBATIONS["_same"]
    assert not s2.prompts and s2.dropped["_same"] == sum(p.type == "open" for p in prompts)


def test_registry_errors_list_valid_names(world):
    with pytest.raises(ValueError, match="pad_length"):
        get_perturbation("pad_lenght", world)
    with pytest.raises(ValueError, match="unknown parameter"):
        get_perturbation("pad_length", world, length=3)

    class TextWorld:  # a real-text world: no topic tables, generic families only
        fillers = ["um"]

    with pytest.raises(ValueError, match="synthetic"):
        get_perturbation("topic_words", TextWorld())
    f = get_perturbation("append_junk", TextWorld(), n=2)
    p = Prompt(0, "qa", "open", "why is the sky blue")
    assert f(p, "light scatters", np.random.default_rng(0)) == "light scatters um um"


def test_family_lists_of_the_config_make_up_the_registry():
    # rlhfsim.world.config names the families (the config reads them without importing this module)
    from rlhfsim.world.config import NEEDS_SYNTHETIC, TEXT_FAMILIES

    assert set(NEEDS_SYNTHETIC) | set(TEXT_FAMILIES) == set(PERTURBATIONS)
    assert not set(NEEDS_SYNTHETIC) & set(TEXT_FAMILIES)
