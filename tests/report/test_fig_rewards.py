"""Faceting of the many-variant figures: ensembles.yaml's ten variants by its design factors (size x kind x
aggregation), at most MAX_COLOURS variants besides the baseline per panel, legends outside, bounded height."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rlhfsim.report.dynamics import fig_proxy_gold_kl
from rlhfsim.report.fig_rewards import fig_distributions, fig_profiles
from rlhfsim.report.figures import fig_by_type, fig_gold_proxy, palette
from rlhfsim.report.select import MAX_COLOURS, variant_groups
from rlhfsim.report.study import Study
from tests.fixtures.memory import mem_run, mem_study

ROOT = Path(__file__).resolve().parents[2]
MAX_PX = 1600  # rendered at the report's 100 dpi


def ensembles_study(seeds=(0, 1)) -> tuple[Study, pd.DataFrame]:
    """The variants and factors of experiments/ensembles.yaml, with fabricated metrics and rewards."""
    exp = yaml.safe_load((ROOT / "experiments" / "ensembles.yaml").read_text())
    rng = np.random.default_rng(0)
    runs, rewards = [], []
    for v, ov in exp["variants"].items():
        reward = {"ensemble_size": 1, "aggregation": "mean", "ensemble_kind": "members"}
        reward.update({k.removeprefix("reward."): x for k, x in ov.items()})
        for s in seeds:
            rows = [
                {
                    "round": r,
                    "eval/gold": 0.4 + 0.02 * r + rng.normal(0, 0.01),
                    "eval/kl": 0.1 * r,
                    "eval/proxy": np.nan if r == 0 else 0.3 * r,
                    "eval/gold_open": 0.5,
                    "eval/accuracy_closed": 0.3,
                }
                for r in range(4)
            ]
            path = Path(f"/x/{v}/seed{s}")
            runs.append(mem_run(v, s, rows, "ensembles", config={"reward": reward}))
            for rd in (1, 3):
                n = 8 * 3
                rewards.append(
                    pd.DataFrame(
                        {
                            "run": str(path),
                            "variant": v,
                            "seed": s,
                            "round": rd,
                            "prompt_id": np.repeat(np.arange(8), 3),
                            "prompt_type": np.repeat(["open", "closed"], 12),
                            "gold": rng.uniform(0, 1, n),
                            "proxy": rng.normal(0, 1, n),
                        }
                    )
                )
    st = mem_study(runs, "ensembles", exp["question"], exp["baseline"], list(exp["variants"]), factors=exp["factors"])
    return st, pd.concat(rewards, ignore_index=True)


def test_ensembles_groups_by_size_and_kind_with_aggregation_as_colour():
    st, _ = ensembles_study()
    groups = variant_groups(st)
    assert [vs for _, vs in groups] == [
        ["m1", "m3_mean", "m3_wco", "m3_uwo"],
        ["m1", "m5_mean", "m5_wco", "m5_uwo"],
        ["m1", "h5_mean", "h5_wco", "h5_uwo"],
    ]
    assert [lab for lab, _ in groups] == [
        "size = 3, kind = members",
        "size = 5, kind = members",
        "size = 5, kind = heads",
    ]


def _check(fig, n_rows):
    w, h = fig.get_size_inches()
    assert h * fig.dpi <= MAX_PX or h * 100 <= MAX_PX
    rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes if ax.get_visible()}
    assert len(rows) == n_rows
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None:  # any legend sits right of its panel, not over the data
            assert leg.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1


@pytest.mark.parametrize("build", ["fig4", "fig5"])
def test_reward_figures_facet_by_the_design_factors(build):
    st, rewards = ensembles_study()
    pal = palette(st.variants, st.baseline)
    res = (fig_distributions if build == "fig4" else fig_profiles)(st, pal, rewards, [1, 3])
    _check(res.fig, 3)
    if build == "fig4":  # boxes per panel: at most the baseline and MAX_COLOURS variants
        for ax in res.fig.axes:
            colours = {tuple(np.round(p.get_facecolor()[:3], 3)) for p in ax.patches}
            assert 1 < len(colours) <= MAX_COLOURS + 1
    else:  # a panel per variant, titled by it; the ensembles study has no prompt-aware variant to caption
        titles = [ax.get_title() for ax in res.fig.axes if ax.get_visible()]
        assert sorted(set(titles)) == sorted({"m1 (baseline)", *st.variants[1:]})
        assert "prompt-aware" not in res.caption


@pytest.mark.parametrize("build", [fig_gold_proxy, fig_by_type, fig_proxy_gold_kl])
def test_round_figures_facet_with_a_legend_per_row(build):
    st, _ = ensembles_study()
    res = build(st, palette(st.variants, st.baseline), "ci")
    _check(res.fig, 3)
    legends = [ax.get_legend() for ax in res.fig.axes if ax.get_legend() is not None]
    assert len(legends) == 3 and all(len(leg.get_texts()) == 4 for leg in legends)  # the row's baseline + 3 variants


def test_one_colour_per_level_of_the_colour_factor():
    from rlhfsim.report.select import colour_keys

    st, _ = ensembles_study()
    keys = colour_keys(st)
    assert keys["m3_wco"] == keys["h5_wco"] == "aggregation = wco" and "m1" not in keys
    pal = palette(st.variants, st.baseline, keys)
    assert pal["m3_mean"] == pal["m5_mean"] == pal["h5_mean"] != pal["m3_wco"]
    assert len(set(pal.values())) == 4  # grey + mean, wco, uwo
    few = Study("s", "q", "a", ["a", "b"], [], [], [], factors={"x": "reward.x"})
    assert colour_keys(few) is None  # few variants: a colour each


def test_the_page_gives_every_arm_its_own_colour():
    """issue 30: colour per arm, not per optimiser or aggregation (rows of panels still follow the factors)."""
    from rlhfsim.report.render import page_palette

    st, _ = ensembles_study()
    pal = page_palette(st)
    assert len(set(pal.values())) == len(st.variants) and pal[st.baseline] == (0.45, 0.45, 0.45)
