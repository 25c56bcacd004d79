import numpy as np
import pytest

from rlhfsim.world.annotator import ANNOTATORS, BradleyTerry, PlackettLuce, get_annotator

NAMES = sorted(ANNOTATORS)


def check_antisymmetric(P):
    assert P.dtype == bool
    assert not np.any(np.diagonal(P, axis1=-2, axis2=-1))
    assert not np.any(P & np.swapaxes(P, -1, -2))


def test_registry():
    assert isinstance(get_annotator("plackett_luce"), PlackettLuce)
    assert isinstance(get_annotator("bradley_terry", temperature=0.1, flip_rate=0.1, ties="break"), BradleyTerry)
    with pytest.raises(ValueError, match="bradley_terry"):
        get_annotator("human")
    with pytest.raises(ValueError):
        get_annotator("plackett_luce", tempreature=1.0)


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"flip_rate": 0.6}, {"flip_rate": -0.1}, {"ties": "drop"}])
def test_bad_params(bad):
    with pytest.raises(ValueError):
        get_annotator("plackett_luce", **bad)


@pytest.mark.parametrize("name", NAMES)
def test_temperature_zero_reproduces_gold_order(name):
    gold = np.array([0.2, 0.9, 0.5, 0.0, 0.7])
    P = get_annotator(name, temperature=0.0)(gold, np.random.default_rng(0))
    assert np.array_equal(P, gold[:, None] > gold[None, :])


@pytest.mark.parametrize("name", NAMES)
def test_ties_keep_vs_break(name):
    gold = np.array([1.0, 0.0, 0.0, 0.0])  # three equally wrong answers
    keep = get_annotator(name, temperature=0.0, ties="keep")(gold, np.random.default_rng(0))
    assert keep[0, 1:].all() and not keep[1:, 0].any()
    assert not keep[1:, 1:].any()  # tied pairs carry no label at all
    all_wrong = get_annotator(name, temperature=0.5, ties="keep")(np.zeros(4), np.random.default_rng(0))
    assert not all_wrong.any()
    rng = np.random.default_rng(1)
    brk = [get_annotator(name, temperature=0.0, ties="break")(gold, rng) for _ in range(200)]
    for P in brk:
        check_antisymmetric(P)
        assert P[0, 1:].all()
        assert (P | P.T)[1:, 1:].sum() == 6  # every tied pair labelled, one direction each
    assert 0.35 < np.mean([P[1, 2] for P in brk]) < 0.65  # random direction


@pytest.mark.parametrize("name", NAMES)
def test_flip_rate_half_is_random_and_zero_is_clean(name):
    gold = np.linspace(0, 1, 6)
    truth = gold[:, None] > gold[None, :]
    rng = np.random.default_rng(2)
    clean = get_annotator(name, temperature=0.0, flip_rate=0.0)
    noisy = get_annotator(name, temperature=0.0, flip_rate=0.5)
    assert np.array_equal(clean(gold, rng), truth)
    agree = np.mean([noisy(gold, rng)[truth].mean() for _ in range(400)])
    assert agree == pytest.approx(0.5, abs=0.03)
    some = np.mean([get_annotator(name, temperature=0.0, flip_rate=0.2)(gold, rng)[truth].mean() for _ in range(400)])
    assert some == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("name", NAMES)
def test_temperature_adds_noise_that_follows_gold(name):
    gold = np.array([0.0, 0.1, 0.5, 1.0])
    rng = np.random.default_rng(3)
    Ps = np.stack([get_annotator(name, temperature=0.2)(gold, rng) for _ in range(2000)])
    for P in Ps[:50]:
        check_antisymmetric(P)
        assert (P | P.T).sum() == 12
    p_small, p_big = Ps[:, 1, 0].mean(), Ps[:, 3, 0].mean()
    assert 0.5 < p_small < p_big  # closer gold -> noisier comparison
    assert p_big > 0.95
    if name == "bradley_terry":
        assert p_small == pytest.approx(1 / (1 + np.exp(-0.5)), abs=0.03)


def test_plackett_luce_gives_a_consistent_total_order():
    gold = np.array([0.3, 0.31, 0.32, 0.33, 0.34])
    rng = np.random.default_rng(4)
    ann = get_annotator("plackett_luce", temperature=1.0)
    for _ in range(100):
        P = ann(gold, rng)
        # a total order: win counts are a permutation of 0..k-1 (no cycles)
        assert sorted(P.sum(1).tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", NAMES)
def test_reproducible_with_the_same_seed(name):
    gold = np.array([0.1, 0.4, 0.4, 0.8, 0.3])
    ann = get_annotator(name, temperature=0.3, flip_rate=0.1, ties="break")
    a = ann(gold, np.random.default_rng(11))
    assert np.array_equal(a, ann(gold, np.random.default_rng(11)))
    draws = {ann(gold, np.random.default_rng(s)).tobytes() for s in range(20)}
    assert len(draws) > 1


@pytest.mark.parametrize("name", NAMES)
def test_annotate_groups_handles_nan_padding(name):
    gold = np.array([[0.1, 0.9, 0.5], [1.0, 0.0, np.nan], [np.nan, np.nan, np.nan]])
    ann = get_annotator(name, temperature=0.0, flip_rate=0.0)
    P = ann.annotate_groups(gold, np.random.default_rng(0))
    assert P.shape == (3, 3, 3)
    check_antisymmetric(P)
    assert np.array_equal(P[0], ann(gold[0], np.random.default_rng(0)))
    assert P[1].tolist() == [[False, True, False], [False, False, False], [False, False, False]]
    assert not P[2].any()
    noisy = get_annotator(name, temperature=0.5, flip_rate=0.3, ties="break").annotate_groups(
        gold, np.random.default_rng(1)
    )
    assert not noisy[1, 2].any() and not noisy[1, :, 2].any() and not noisy[2].any()


@pytest.mark.parametrize("name", NAMES)
def test_ties_consistent_follow_fixed_keys_whatever_the_rng(name):
    from rlhfsim.world.annotator import tie_keys

    gold = np.array([1.0, 0.0, 0.0, 0.0, 0.5])
    texts = ["right", "wrong a", "wrong b", "wrong c", "half"]
    keys = tie_keys(["q"] * 5, texts, salt=0)
    ann = get_annotator(name, temperature=0.0, ties="consistent")
    Ps = [ann(gold, np.random.default_rng(s), keys) for s in range(20)]
    for P in Ps:
        check_antisymmetric(P)
        assert np.array_equal(P, Ps[0])  # the same texts are ordered the same way every time
        assert P[0, 1:].all() and P[4, 1:4].all()  # gold differences are untouched
        for a in (1, 2, 3):
            for b in (1, 2, 3):
                if a != b:
                    assert P[a, b] == (keys[a] > keys[b])  # gold ties follow the keys
    # the salt (the run seed) changes the hidden taste; identical texts get equal keys and no label
    assert not np.array_equal(tie_keys(["q"] * 5, texts, 0), tie_keys(["q"] * 5, texts, 1))
    dup = tie_keys(["q"] * 2, ["same", "same"], 0)
    assert not ann(np.zeros(2), np.random.default_rng(0), dup).any()
    with pytest.raises(ValueError, match="keys"):
        ann(gold, np.random.default_rng(0))
