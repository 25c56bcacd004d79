"""Figure selection: degenerate inputs are recognised; many variants are split so a panel has at most MAX_COLOURS."""

from types import SimpleNamespace

import pandas as pd

from rlhfsim.report.select import MAX_COLOURS, constant_across_variants, variant_groups


def test_constant_across_variants():
    class S:
        variants = ["a", "b"]
        metrics = pd.DataFrame(
            {
                "variant": ["a", "a", "b", "b"],
                "round": [0, 1, 0, 1],
                "g": [0.1, 0.2, 0.1, 0.2],
                "h": [0.1, 0.2, 0.1, 0.3],
            }
        )

    assert (
        constant_across_variants(S, "g")
        and not constant_across_variants(S, "h")
        and not constant_across_variants(S, "x")
    )


def _study(n: int, factors=None, agg=None):
    variants = ["base"] + [f"v{i}" for i in range(n)]
    runs = [
        SimpleNamespace(variant=v, config={"reward": {"aggregation": (agg or {}).get(v, "mean")}}) for v in variants
    ]
    return SimpleNamespace(variants=variants, baseline="base", factors=factors or {}, runs=runs)


def test_few_variants_share_one_panel():
    assert variant_groups(_study(MAX_COLOURS)) == [("", ["base"] + [f"v{i}" for i in range(MAX_COLOURS)])]


def test_many_variants_split_with_the_baseline_in_every_row():
    groups = variant_groups(_study(12))
    assert [len(vs) - 1 for _, vs in groups] == [5, 5, 2]
    assert all(vs[0] == "base" for _, vs in groups)
    assert sorted(v for _, vs in groups for v in vs[1:]) == sorted(f"v{i}" for i in range(12))


def test_split_by_the_first_design_factor():
    agg = {f"v{i}": ("wco" if i % 2 else "mean") for i in range(8)}
    groups = variant_groups(_study(8, {"aggregation": "reward.aggregation"}, agg))
    assert [label for label, _ in groups] == ["aggregation = mean", "aggregation = wco"]
    assert groups[1][1] == ["base", "v1", "v3", "v5", "v7"]
