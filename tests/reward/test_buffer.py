import numpy as np

from rlhfsim.reward.buffer import Group, PreferenceBuffer
from rlhfsim.world.base import Prompt


def group(r, i, prefs):
    p = Prompt(id=i, family="add", type="closed", text=f"add {i} 1 =", answer=str(i + 1))
    return Group(p, ["1", "2", "3"], np.array([1.0, 0.0, 0.0]), np.array(prefs, dtype=bool), r, [False] * 3)


PREFS = [[0, 1, 1], [0, 0, 0], [0, 0, 0]]
TIES = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_modes():
    for mode, expect in (("fresh", {3}), ("accumulate", {1, 2, 3}), ("window", {2, 3})):
        b = PreferenceBuffer(mode, window=2)
        for r in (1, 2, 3):
            b.add(r, [group(r, r, PREFS)])
        assert {g.round for g in b.training_groups()} == expect


def test_groups_of_ties_are_not_trained_on():
    b = PreferenceBuffer("accumulate")
    b.add(1, [group(1, 0, PREFS), group(1, 1, TIES)])
    assert len(b) == 2 and len(b.training_groups()) == 1


def test_trl_export_and_state_round_trip():
    b = PreferenceBuffer("accumulate")
    b.add(1, [group(1, 0, PREFS)])
    b.add(2, [group(2, 5, PREFS)])
    ds = b.to_dataset(2)
    assert ds.column_names[:3] == ["prompt", "chosen", "rejected"]
    assert len(ds) == 2 and set(ds["chosen"]) == {"1"} and set(ds["rejected"]) == {"2", "3"}
    c = PreferenceBuffer()
    c.load_state_dict(b.state_dict())
    assert c.pairs() == b.pairs()


# ------------------------------------------------------------------ equal_share / prompt_once (issue 36)


def test_equal_shares_are_equal_with_a_fixed_total_and_pass_a_shortfall_on():
    from rlhfsim.reward.buffer import equal_shares

    assert equal_shares(12, [10, 10, 10]) == [4, 4, 4]
    assert equal_shares(10, [10, 10, 10]) == [3, 3, 4]  # the remainder to the newest round
    assert equal_shares(12, [2, 10, 10]) == [2, 5, 5]  # round 1 has only 2: the rest shared by the others
    assert equal_shares(100, [2, 3, 4]) == [2, 3, 4]  # fewer than the total: all there is
    assert equal_shares(0, [5]) == [0]


def test_equal_share_buffer_draws_a_fixed_size_sample_seeded_by_round():
    b = PreferenceBuffer("equal_share", total=9, seed=4)
    for r in (1, 2, 3):
        b.add(r, [group(r, 10 * r + i, PREFS) for i in range(8)] + [group(r, 99, TIES)])  # ties are never sampled
    s = b.training_groups()
    assert len(s) == 9 and [sum(g.round == r for g in s) for r in (1, 2, 3)] == [3, 3, 3]
    assert all(g.n_pairs > 0 for g in s) and len({id(g) for g in s}) == 9  # without replacement
    assert [g.prompt.id for g in s] == [g.prompt.id for g in b.training_groups()]  # same round, same sample
    c = PreferenceBuffer()
    c.load_state_dict(b.state_dict())  # resume: mode, total and seed's sample come back
    assert c.mode == "equal_share" and c.total == 9
    c.seed = 4
    assert [g.prompt.id for g in c.training_groups()] == [g.prompt.id for g in s]
    b.add(4, [group(4, 40 + i, PREFS) for i in range(8)])
    assert [sum(g.round == r for g in b.training_groups()) for r in (1, 2, 3, 4)] == [2, 2, 2, 3]  # 9 over 4 rounds


def test_prompt_once_uses_every_prompt_at_most_once():
    b = PreferenceBuffer("prompt_once", total=8, seed=0)
    for r in (1, 2):  # the same 6 prompts each round: at most 6 distinct in the sample
        b.add(r, [group(r, i, PREFS) for i in range(6)])
    s = b.training_groups()
    texts = [g.prompt.text for g in s]
    assert len(texts) == len(set(texts)) == 6  # short of the total: every prompt once, no more
    assert sum(g.round == 2 for g in s) == 4 and sum(g.round == 1 for g in s) == 2  # newest picks its share first
    b2 = PreferenceBuffer("prompt_once", total=6, seed=0)
    for r in (1, 2):
        b2.add(r, [group(r, 10 * r + i, PREFS) for i in range(6)])  # distinct prompts: an equal share each
    assert [sum(g.round == r for g in b2.training_groups()) for r in (1, 2)] == [3, 3]
