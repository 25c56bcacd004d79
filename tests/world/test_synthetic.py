import numpy as np
import pytest
from pydantic import ValidationError

from rlhfsim.world import WORLDS, build_world
from rlhfsim.world.base import Prompt
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(SyntheticWorldConfig())


def add(a, b):
    return Prompt(0, "add", "closed", f"add {a} {b} =", answer=str(a + b))


def open_prompt(w, i=0):
    t = list(w.topics)[i]
    return Prompt(0, "open", "open", f"write about {t}", topic=t)


def test_registry_builds_and_rejects_unknown_names():
    assert WORLDS["synthetic"] == (SyntheticWorldConfig, SyntheticWorld)
    assert isinstance(build_world(SyntheticWorldConfig()), SyntheticWorld)
    assert isinstance(build_world({"name": "synthetic", "seed": 3}), SyntheticWorld)

    class Other:
        name = "nope"

    with pytest.raises(ValueError, match="synthetic"):
        build_world(Other())


def test_vocabulary_is_small_and_covers_every_prompt_and_demo(world):
    tok = world.tokenizer
    assert len(tok) <= 150
    rng = np.random.default_rng(0)
    for p, c in world.demonstrations(500, rng):
        ids = tok.encode(f"{p.text} {c}")
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == f"{p.text} {c}"


def test_add_gold(world):
    p = add(3, 5)
    g = world.gold([p] * 6, ["8", " 8 ", "7", "8 8", "8 ocean", ""])
    assert g.dtype == np.float64
    assert g.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_fact_gold_uses_the_hidden_table(world):
    e, v = next(iter(world.fact_table.items()))
    wrong = next(x for x in world.values if x != v)
    p = Prompt(0, "fact", "closed", f"fact {e} =", answer=v)
    assert world.gold([p] * 4, [v, wrong, f"{v} the", ""]).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert world.reference_completion(p) == v


def test_fact_table_depends_on_world_seed():
    tables = {tuple(SyntheticWorld(SyntheticWorldConfig(seed=s)).fact_table.values()) for s in range(4)}
    assert len(tables) > 1
    assert (
        SyntheticWorld(SyntheticWorldConfig(seed=1)).fact_table
        == SyntheticWorld(SyntheticWorldConfig(seed=1)).fact_table
    )


def test_open_gold_grades_topic_diversity_and_length(world):
    p = open_prompt(world, 0)
    own = [p.topic, *world.topics[p.topic]]
    other = world.topics[list(world.topics)[1]]
    opt = world.cfg.open_length_optimum
    texts = {
        "optimal": own[:opt],
        "moderate": own[:4],
        "too_long": own + own[:1],  # 10 words, 9 distinct
        "repetitive": [own[0]] * opt,
        "exploit": (own[:2] * 10)[: world.max_completion_words],  # long + repetitive
        "off_topic": other[:opt],
        "filler": own[:3] + world.fillers[:3],
        "empty": [],
    }
    g = dict(zip(texts, world.gold([p] * len(texts), [" ".join(t) for t in texts.values()])))
    assert g["optimal"] == pytest.approx(1.0)
    assert g["empty"] == 0.0 and g["off_topic"] == 0.0
    assert 0 < g["exploit"] < 0.5 * g["moderate"]
    assert g["repetitive"] < g["moderate"]
    assert g["too_long"] < g["optimal"] and g["moderate"] < g["optimal"]
    assert g["filler"] < g["optimal"] and g["filler"] < g["moderate"]
    assert all(0.0 <= x <= 1.0 for x in g.values())


def test_open_length_term_peaks_at_the_optimum(world):
    p = open_prompt(world, 2)
    own = [p.topic, *world.topics[p.topic]]
    g = world.gold([p] * len(own), [" ".join(own[: n + 1]) for n in range(len(own))])
    peak = world.cfg.open_length_optimum - 1
    assert np.argmax(g) == peak
    assert np.all(np.diff(g[: peak + 1]) > 0) and np.all(np.diff(g[peak:]) < 0)


def test_reference_completion_is_gold_optimal(world):
    rng = np.random.default_rng(1)
    prompts = world.sample_prompts(200, rng)
    refs = [world.reference_completion(p) for p in prompts]
    assert np.all(world.gold(prompts, refs) == 1.0)
    assert max(len(r.split()) for r in refs) <= world.max_completion_words


def test_eval_prompts_fixed_and_independent_of_training_rng(world):
    a = world.eval_prompts(40)
    np.random.default_rng(0).random(1000)  # training draws must not matter
    world.sample_prompts(100, np.random.default_rng(5))
    assert world.eval_prompts(40) == a
    assert SyntheticWorld(SyntheticWorldConfig()).eval_prompts(40) == a
    assert [p.id for p in a] == list(range(40))
    assert SyntheticWorld(SyntheticWorldConfig(seed=7)).eval_prompts(40) != a
    fams = [p.family for p in a]
    assert (fams.count("add"), fams.count("fact"), fams.count("open")) == (14, 6, 20)


def test_sample_prompts_follow_the_mix_and_the_rng(world):
    ps = world.sample_prompts(4000, np.random.default_rng(0))
    frac = {f: np.mean([p.family == f for p in ps]) for f in world.families}
    assert frac["add"] == pytest.approx(0.35, abs=0.03)
    assert frac["fact"] == pytest.approx(0.15, abs=0.03)
    assert frac["open"] == pytest.approx(0.5, abs=0.03)
    assert all(p.type == ("open" if p.family == "open" else "closed") for p in ps)
    assert len({p.id for p in ps}) == len(ps) and min(p.id for p in ps) >= 2**32
    assert world.sample_prompts(50, np.random.default_rng(3)) == world.sample_prompts(50, np.random.default_rng(3))
    assert set(world.prompt_types) == {p.type for p in ps}
    custom = SyntheticWorld(SyntheticWorldConfig(add_frac=0.0, fact_frac=0.0, open_frac=1.0))
    assert {p.family for p in custom.sample_prompts(200, np.random.default_rng(0))} == {"open"}


def test_demonstrations_are_noisy_with_near_misses(world):
    demos = world.demonstrations(3000, np.random.default_rng(0))
    assert max(len(c.split()) for _, c in demos) <= world.max_completion_words <= 12
    adds = [(p, c) for p, c in demos if p.family == "add"]
    right = [c == p.answer for p, c in adds]
    assert 0.35 < np.mean(right) < 0.65
    misses = [abs(int(c.split()[0]) - int(p.answer)) for p, c in adds if c.split()[0] != p.answer]
    assert misses and set(misses) <= {1, 2, 3} and len(set(misses)) == 3
    facts = [(p, c) for p, c in demos if p.family == "fact"]
    assert 0.3 < np.mean([c == p.answer for p, c in facts]) < 0.7
    opens = [(p, c) for p, c in demos if p.family == "open"]
    g = world.gold([p for p, _ in opens], [c for _, c in opens])
    assert g.std() > 0.2 and (g > 0.8).mean() > 0.2 and (g < 0.3).mean() > 0.15
    lengths = np.array([len(c.split()) for _, c in opens])
    assert (lengths > world.cfg.open_length_optimum).mean() > 0.2
    assert world.demonstrations(20, np.random.default_rng(9)) == world.demonstrations(20, np.random.default_rng(9))


@pytest.mark.parametrize(
    "bad",
    [
        {"add_frac": 0.5},  # mix no longer sums to 1
        {"add_frac": -0.1, "open_frac": 0.95},
        {"max_operand": 0},
        {"n_topics": 99},
        {"p_correct_add": 1.5},
        {"demo_open_good": 0.9},
        {"open_length_optimum": 11, "words_per_topic": 4},
        {"max_demo_words": 6},
        {"name": "other"},
        {"typo_field": 1},
    ],
)
def test_bad_config_fields_raise(bad):
    with pytest.raises(ValidationError):
        SyntheticWorldConfig(**bad)


def test_every_config_field_is_documented():
    for name, field in SyntheticWorldConfig.model_fields.items():
        assert field.description, name
