"""Bands over seeds that respect a metric's range: bootstrap interval of the mean, or sd clipped to the range."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report.bands import seed_curves, seed_interval


def test_sd_band_is_clipped_to_the_range():
    v = [0.9, 1.0, 1.0, 0.7]  # mean 0.9, sd 0.14: mean + sd leaves [0, 1]
    lo, hi = seed_interval(v, "sd")
    assert hi > 1.0  # unclipped, it leaves the range (the defect the clip is for)
    lo_c, hi_c = seed_interval(v, "sd", bounds=(0.0, 1.0))
    assert hi_c == 1.0 and lo_c == pytest.approx(lo)


def test_count_band_never_below_zero():
    counts = [0, 0, 0, 2]  # mean 0.5, sd 1
    assert seed_interval(counts, "sd")[0] < 0
    assert seed_interval(counts, "sd", bounds=(0, 5))[0] == 0.0
    lo, hi = seed_interval(counts, "ci")  # the bootstrap of the mean stays within the seeds' own range
    assert 0.0 <= lo <= np.mean(counts) <= hi <= 2.0


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_agreement():
    rng = np.random.default_rng(0)
    wide = seed_interval(rng.normal(0.5, 0.2, 8), "ci")
    narrow = seed_interval(rng.normal(0.5, 0.02, 8), "ci")
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3
    assert seed_interval([0.3], "ci") == (0.3, 0.3) and all(np.isnan(seed_interval([np.nan], "ci")))
    with pytest.raises(ValueError, match="band"):
        seed_interval([1, 2], "iqr")


def test_seed_curves_per_variant_and_round():
    df = pd.DataFrame(
        {
            "variant": ["a"] * 4 + ["b"] * 2,
            "seed": [0, 1, 0, 1, 0, 0],
            "round": [1, 1, 2, 2, 1, 2],
            "y": [0.2, 0.4, 0.9, 1.0, 0.5, np.nan],
        }
    )
    c = seed_curves(df, "y", "sd", (0, 1)).set_index(["variant", "round"])
    assert c.loc[("a", 1), "mean"] == pytest.approx(0.3) and c.loc[("a", 1), "n"] == 2
    assert c.loc[("a", 2), "hi"] == 1.0 and ("b", 2) not in c.index  # NaN rows are dropped, not counted


@pytest.mark.parametrize(
    "col, bounds",
    [
        ("rm/pairwise_acc", (0.0, 1.0)),
        ("eval/accuracy_closed", (0.0, 1.0)),
        ("adv/sign_agree_seq", (0.0, 1.0)),
        ("adv/kl_share", (0.0, 1.0)),
        ("adv/gold_corr", (-1.0, 1.0)),
        ("rm/kendall_tau", (-1.0, 1.0)),
        ("eval/kl", (0.0, float("inf"))),
        ("collapse/probe_shape_rel", (float("-inf"), 1.0)),
        ("eval/gold", None),
        ("eval/proxy", None),
        ("adv/std_raw", None),  # world- or model-dependent: never clipped
    ],
)
def test_metric_bounds_by_definition(col, bounds):
    from rlhfsim.report.bands import metric_bounds

    assert metric_bounds(col) == bounds


def test_seaborn_sd_band_of_an_accuracy_stays_inside_0_1():
    """The policy figures' seaborn bands (fig1/2/6/7) with --band sd: an accuracy near 1 keeps its band <= 1, while an
    unbounded metric's band is plain mean +- sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfsim.report.plots import lineplot as _lineplot

    class S:
        variants = ["a"]

    rows = [
        {"variant": "a", "seed": s, "round": r, "rm/pairwise_acc": v, "eval/proxy": v + 5}
        for s, v in enumerate([0.9, 1.0, 1.0, 0.7])
        for r in (0, 1)
    ]
    df = pd.DataFrame(rows)
    for col, top in (("rm/pairwise_acc", 1.0), ("eval/proxy", 5.9 + np.std([0.9, 1.0, 1.0, 0.7], ddof=1))):
        fig, ax = plt.subplots()
        _lineplot(ax, df, col, S, {"a": "C0"}, "sd")
        ys = np.concatenate([c.get_paths()[0].vertices[:, 1] for c in ax.collections])
        assert ys.max() == pytest.approx(top, abs=1e-9)
        plt.close(fig)
