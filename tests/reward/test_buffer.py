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
