"""The graded world: partial credit by distance, paraphrased right answers, and an openness continuum in gold."""

import numpy as np
import pytest

from rlhfsim.config import ConfigError, load_config
from rlhfsim.world import WORLDS, build_world
from rlhfsim.world.base import Prompt
from rlhfsim.world.graded import GradedWorld, GradedWorldConfig
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig


@pytest.fixture(scope="module")
def world() -> GradedWorld:
    return GradedWorld(GradedWorldConfig())


def add(w, a, b, level):
    return Prompt(0, "add", "closed", f"add {a} {b} {w.levels[level]} =", answer=str(a + b))


def test_registered_beside_the_synthetic_world_which_stays_the_default():
    assert WORLDS["graded"] == (GradedWorldConfig, GradedWorld)
    assert isinstance(build_world({"name": "graded"}), GradedWorld)
    assert load_config(None).world.name == "synthetic"
    assert isinstance(load_config(None, ["world.name=graded", "world.openness_levels=3"]).world, GradedWorldConfig)
    with pytest.raises(ConfigError, match="max_operand"):
        load_config(None, ["world.name=graded", "world.max_operand=11"])  # 22 has no one-word paraphrase


def test_graded_gold_on_hand_made_answers(world):
    top = len(world.levels) - 1  # openness 1: a miss by d earns 1 - d / (1 + 3)
    mid = top // 2  # openness 0.5: 1 - d / 2.5
    cases = [  # (level, completion, gold)
        (0, "8", 1.0),
        (0, "eight", 1.0),
        (0, "7", 0.0),
        (0, "seven", 0.0),
        (0, "12", 0.0),
        (top, "8", 1.0),
        (top, "eight", 1.0),
        (top, "7", 0.75),
        (top, "nine", 0.75),
        (top, "5", 0.25),
        (top, "12", 0.0),
        (mid, "7", 0.6),
        (mid, "ten", 0.2),
        (mid, "5", 0.0),
        (top, "8 8", 0.0),
        (top, "8 wave", 0.0),
        (top, "wave", 0.0),
        (top, "", 0.0),
        (0, "v3", 0.0),
    ]
    prompts = [add(world, 3, 5, lvl) for lvl, _, _ in cases]
    got = world.gold(prompts, [c for _, c, _ in cases])
    assert np.allclose(got, [g for _, _, g in cases]), list(zip(cases, got))
    # a prompt without a level word (the 'operands' shift) is exact
    assert world.gold([Prompt(0, "add", "closed", "add 12 5 =")], ["16"])[0] == 0.0


def test_facts_and_open_prompts_keep_the_synthetic_gold(world):
    syn = SyntheticWorld(
        SyntheticWorldConfig(**world.cfg.model_dump(include=set(SyntheticWorldConfig.model_fields) - {"name"}))
    )
    rng = np.random.default_rng(0)
    pairs = [(p, c) for p, c in world.demonstrations(400, rng) if p.family != "add"]
    prompts, texts = [p for p, _ in pairs], [c for _, c in pairs]
    assert np.array_equal(world.gold(prompts, texts), syn.gold(prompts, texts))


def test_vocabulary_covers_prompts_and_paraphrased_demos(world):
    rng = np.random.default_rng(1)
    demos = world.demonstrations(600, rng)
    for p, c in demos:
        assert world.tokenizer.unk_token_id not in world.tokenizer(f"{p.text} {c}")["input_ids"]
    answers = [c.split()[0] for p, c in demos if p.family == "add"]
    words = np.mean([a in world.number_words for a in answers])
    assert 0.2 < words < 0.4  # p_word_answer 0.3 of the additions are written as words
    levels = [world.level_of(p) for p in world.eval_prompts(400) if p.family == "add"]
    assert sorted(set(levels)) == list(range(len(world.levels)))  # every openness level is held out too


def test_prompt_types_follow_openness(world):
    ps = [p for p in world.eval_prompts(300) if p.family == "add"]
    assert all((p.type == "closed") == (world.openness(p) < world.cfg.closed_below) for p in ps)
    assert {p.type for p in ps} == {"open", "closed"}


def gold_profiles(world, level, n_prompts=300, k=8, seed=0):
    """[n_prompts, k] gold of k demo-distribution completions per addition prompt at one openness level."""
    rng = np.random.default_rng([seed, level])
    out = []
    for _ in range(n_prompts):
        a, b = (int(x) for x in rng.integers(0, world.cfg.max_operand + 1, size=2))
        p = add(world, a, b, level)
        out.append(world.gold([p] * k, [world.demo_completion(p, rng) for _ in range(k)]))
    return np.stack(out)


def test_openness_continuum_in_gold_profiles(world):
    """Gold's own within-prompt profiles move with openness, on the same completion distribution: from polarised
    (every value 0 or 1) to graded (values spread inside [0, 1]). Measured per prompt, then averaged per level."""
    prof = [gold_profiles(world, lvl) for lvl in range(len(world.levels))]
    # distance of each prompt's values from the nearest of {0, 1}: 0 = polarised (closed), grows as credit spreads
    interior = np.array([np.minimum(g, 1 - g).mean() for g in prof])
    # within-prompt gold std: a polarised profile of right/wrong is the widest; graded credit narrows it
    spread = np.array([g.std(axis=1).mean() for g in prof])
    assert interior[0] == 0.0 and np.all(np.diff(interior) > 0.01), interior
    assert np.all(np.diff(spread) < -0.01), spread
    # so no single sorted profile fits every level: the mean sorted profiles differ by more than seed noise
    mean_sorted = np.stack([np.sort(g, axis=1).mean(0) for g in prof])
    w1_to_closed = np.abs(mean_sorted - mean_sorted[0]).mean(1)
    again = np.sort(gold_profiles(world, 0, seed=1), axis=1).mean(0)
    noise = np.abs(again - mean_sorted[0]).mean()
    assert np.all(np.diff(w1_to_closed) > 0) and w1_to_closed[-1] > 5 * noise, (w1_to_closed, noise)


def test_openness_seen_by_the_shape_dependence_instrument(world):
    """The instruments issue's per-prompt measure on gold itself: D falls with openness (polarised profiles differ
    most between prompts), and the openness levels carry a between-level share of D far above a random split's."""
    from rlhfsim.diagnostics.collapse import shape_dependence

    prof = [gold_profiles(world, lvl, n_prompts=200) for lvl in range(len(world.levels))]
    d = np.array([shape_dependence(g) for g in prof])
    assert np.all(np.diff(d) < 0), d
    mixed = np.concatenate(prof)
    between = shape_dependence(mixed) - d.mean()  # the law of total variance over equal-sized levels
    perm = np.random.default_rng(0).permutation(len(mixed))
    shuffled = [mixed[perm[i :: len(prof)]] for i in range(len(prof))]
    noise = shape_dependence(mixed) - np.mean([shape_dependence(g) for g in shuffled])
    assert between > 5 * abs(noise) and between > 0.01, (between, noise)
