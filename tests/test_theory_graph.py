"""rlhfsim.theory_graph: the batched graph optimum equals the per-graph solver bit for bit (issue 34: diagnosis solves
~250 graphs a round; the batch must not move collapse/*_graph_dev_* in its last bits)."""

import numpy as np
import pytest

from rlhfsim import theory
from rlhfsim.diagnostics.collapse import gold_graphs, graph_optimum_dev
from rlhfsim.reward.utilities import get_utility
from rlhfsim.theory_graph import optimal_rewards_graphs

UTILITIES = [
    ("logsigmoid", {"scale": 4.0}),
    ("logsigmoid", {"scale": 1.0}),
    ("log", {}),
    ("power", {"g": 0.5}),
    ("neg_power", {"g": 2.0, "eps": 0.01}),
    ("linear", {}),
    ("power", {"g": 2.0}),
]


def graphs(n: int, seed: int) -> np.ndarray:
    """Gold-like weak orders (ties and missing completions) and sparse random graphs, as diagnosis and training see."""
    rng = np.random.default_rng(seed)
    G = rng.integers(0, 4, size=(60, n)).astype(float)
    G[rng.random(G.shape) < 0.1] = np.nan
    A = np.triu(rng.random((60, n, n)) < 0.3, 1)
    perm = [rng.permutation(n) for _ in range(60)]
    return np.concatenate([gold_graphs(G), np.stack([a[np.ix_(p, p)] for a, p in zip(A, perm)])])


@pytest.mark.parametrize("name, params", UTILITIES)
@pytest.mark.parametrize("n", [2, 5, 8])
def test_batch_equals_per_graph_bit_for_bit(name, params, n):
    u = get_utility(name, **params)
    E = graphs(n, n)
    E = E[E.any(axis=(1, 2))] if name in ("linear", "power") and params.get("g", 1) >= 1 else E
    theory._graph_cached.cache_clear()
    one = np.stack([theory.optimal_rewards_graph(u, e) for e in E])
    assert optimal_rewards_graphs(u, E).tobytes() == one.tobytes()


def test_graph_optimum_dev_unchanged():
    u = get_utility("logsigmoid", scale=4.0)
    rng = np.random.default_rng(3)
    G = rng.integers(0, 3, size=(40, 8)).astype(float)
    R = rng.random((40, 8))
    R[5, 2] = np.nan
    E = gold_graphs(G)
    E[7] = False
    want = np.full(40, np.nan)
    for i, (r, e) in enumerate(zip(R, E)):  # the per-prompt loop this replaced
        if e.any() and np.isfinite(r).all():
            want[i] = float(np.abs(r - theory.optimal_rewards_graph(u, e)).mean())
    assert graph_optimum_dev(R, E, u).tobytes() == want.tobytes()


def test_batch_rejects_what_one_graph_rejects():
    E = np.zeros((2, 3, 3), bool)
    E[1, 0, 1] = E[1, 1, 0] = True
    with pytest.raises(ValueError, match="both ways"):
        optimal_rewards_graphs("log", E)
