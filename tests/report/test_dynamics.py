"""Report parts of the learning-signal diagnostics: Gao-fit, stagnation and propagation tables, best-of-n figure."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.diagnostics import summarize
from rlhfsim.diagnostics.overopt import bon_kl, gao_bon, gao_rl
from rlhfsim.report import dynamics as D
from rlhfsim.report.figures import palette
from rlhfsim.report.registry import Page, build_tables
from rlhfsim.report.rundir import RunData
from rlhfsim.report.study import Study
from tests.fixtures.memory import mem_run, mem_study

ALPHA, BETA = 0.3, 0.2  # RL form of the fabricated gold curve
BON_ALPHA, BON_BETA = 0.4, 0.3


def _run(variant: str, seed: int, rounds: int = 8) -> RunData:
    rows = []
    for r in range(rounds + 1):
        kl = 0.4 * r * r * (1 + 0.1 * seed)
        row = {"round": r, "eval/gold": 0.4 + float(gao_rl(np.sqrt(kl), ALPHA, BETA)), "eval/kl": kl}
        if r > 0:
            x = 0.1 * r + 0.05 * (r % 3)
            row.update(
                {
                    "eval/proxy": 0.1 * r,
                    "eval/policy_move": 0.2,
                    "collapse/probe_shape_rel": x,
                    "collapse/saturation": 1 - x,
                    "rm/pairwise_acc": 0.7,
                    "adv/gold_corr": 0.9 - x,
                    "adv/sign_agree": 0.8,
                    "adv/kl_share": 0.1,
                    "adv/std_raw": 1.0,
                    "adv/snr": 2.0,
                    "val/var_explained": 0.5,
                }
            )
            for n in (1, 2, 4, 8):
                row[f"bon/gold_n{n}"] = 0.5 + float(gao_bon(np.sqrt(bon_kl(n)), BON_ALPHA, BON_BETA))
                row[f"bon/proxy_n{n}"] = 0.1 * n
        rows.append(row)
    m = pd.DataFrame(rows)
    m["eval/sqrt_kl"] = np.sqrt(m["eval/kl"])
    return mem_run(variant, seed, m, root="runs/s", summary=summarize(rows, 1.0))


@pytest.fixture(scope="module")
def study():
    runs = [_run(v, s) for v in ("a", "b") for s in (0, 1, 2)]
    return mem_study(runs, question="q?", sources=("fabricated",))


def test_overopt_section_recovers_the_gao_parameters(study):
    sec = D.overopt_section(study)
    assert [r[0] for r in sec.rows] == ["a", "b"]
    row = dict(zip(sec.header, sec.rows[0]))
    assert float(row["α (pooled)"]) == pytest.approx(ALPHA, abs=1e-3)
    assert float(row["β (pooled)"]) == pytest.approx(BETA, abs=1e-3)
    assert row["R² (pooled)"] == "1.00" and row["points"] == str(3 * 9)
    assert row["α per seed"].startswith(f"{ALPHA:.3f} ± 0.000 (n=3)")


def test_stagnation_and_propagation_sections(study):
    sec = D.stagnation_section(study)
    row = dict(zip(sec.header, sec.rows[0]))
    peaks = [r.summary["gold_peak_round"] for r in study.runs if r.variant == "a"]
    assert row["peak round per seed"] == ", ".join(str(p) for p in peaks)
    assert row["adv/sign_agree"].startswith("0.800 ± 0.000")
    prop = D.propagation_section(study)
    assert prop.header == ["x → y", "a", "b"]
    first = prop.rows[0]  # collapse/probe_shape_rel -> adv/gold_corr at lag 0: an exact negative line
    assert first[0].startswith("collapse/probe_shape_rel (r) → adv/gold_corr (r+0)")
    assert first[1].startswith("-1.00 ± 0.00 (n=3); rounds per run 8-8")
    assert (
        "With 7-8 rounds" in prop.note and "±0.80" in prop.note
    )  # lag 1 leaves 7; 1.96 / sqrt(7 - 1): one run's null band


def test_figures_draw_and_fit_best_of_n(study):
    pal = palette(study.variants)
    res = D.fig_best_of_n(study, pal)
    assert res.fig is not None and res.skipped is None
    fits = {(rnd, v): f for rnd, v, f in res.fits}
    assert set(fits) == {(1, "a"), (1, "b"), (8, "a"), (8, "b")}
    assert fits[(8, "a")]["alpha"] == pytest.approx(BON_ALPHA, abs=1e-9)
    assert fits[(8, "a")]["beta"] == pytest.approx(BON_BETA, abs=1e-9)
    for build in (D.fig_proxy_gold_kl, D.fig_signal):
        assert build(study, pal).fig is not None
    empty = Study("s", "q", "a", ["a"], [], [], [])
    assert all(build(empty, pal).fig is None for build in D.BUILDERS)


def _shaped_run(variant: str, seed: int, gold_of_d) -> RunData:
    rows = [
        {
            "round": r,
            "eval/gold": 0.4 + float(gold_of_d(np.sqrt(0.4 * r * r))),
            "eval/kl": 0.4 * r * r,
            "eval/proxy": 0.1 * r if r else None,
        }
        for r in range(9)
    ]
    m = pd.DataFrame(rows)
    return mem_run(variant, seed, m, root="runs/s", summary=summarize(rows, 1.0))


def test_gao_shape_shares_per_variant():
    turn = lambda d: gao_rl(d, ALPHA, BETA)  # noqa: E731 - peak at exp(α/β - 1) = 1.65, inside d <= 5.06
    runs = [
        _shaped_run("a", 0, turn),
        _shaped_run("a", 1, turn),
        _shaped_run("a", 2, lambda d: 0.05 * d),
        *[_shaped_run("b", s, lambda d: -0.05 * d) for s in range(3)],
    ]
    assert [r.summary["gao_rl_shape"] for r in runs] == [
        "rise_fall",
        "rise_fall",
        "rising",
        "falling",
        "falling",
        "falling",
    ]
    sec = D.gao_shape_section(mem_study(runs, sources=("fabricated",)))
    rows = {r[0]: dict(zip(sec.header, r)) for r in sec.rows}
    assert rows["a"]["rise then fall"] == "67% (2)" and rows["a"]["rising only"] == "33% (1)"
    assert rows["b"]["falling from the start"] == "100% (3)" and rows["b"]["rise then fall"] == "0% (0)"
    assert rows["b"]["seeds fitted"] == "3/3"
    page = Page(mem_study(runs, sources=("fabricated",)), "overopt")  # an over-optimisation page carries it
    assert sec.title in [s.title for s in build_tables(page)[0]]


def test_best_of_n_is_faceted_with_many_variants_and_fits_stay_in_the_data():
    from rlhfsim.diagnostics.overopt import bon_kl
    from rlhfsim.report.select import MAX_COLOURS

    names = [f"v{i}" for i in range(MAX_COLOURS + 2)]  # the baseline and MAX_COLOURS + 1 others: two rows of panels
    many = mem_study([_run(v, s) for v in names for s in (0, 1)], variants=names, sources=("fabricated",))
    res = D.fig_best_of_n(many, palette(names))
    axes = res.fig.axes
    rows = {round(ax.get_position().y0, 3) for ax in axes}
    assert len(rows) == 2 and len(axes) == 2 * 4  # 2 rows x (gold, proxy) x (first, last round)
    d_max = max(np.sqrt(bon_kl(n)) for n in (1, 2, 4, 8, 16))
    for ax in axes[::2]:  # the gold panels carry the fits (lw 2)
        fits = [ln for ln in ax.get_lines() if ln.get_linewidth() == 2]
        assert 1 <= len(fits) <= MAX_COLOURS + 1
        assert max(float(np.max(ln.get_xdata())) for ln in fits) <= d_max + 1e-9  # never drawn beyond the data


def test_proxy_gold_against_kl_draws_each_seed_under_the_mean(study):
    res = D.fig_proxy_gold_kl(study, palette(study.variants))
    for ax in res.fig.axes[:2]:
        thin = [ln for ln in ax.get_lines() if ln.get_linewidth() == 0.6]
        assert len(thin) == 2 * 3  # 2 variants x 3 seeds
        assert len([ln for ln in ax.get_lines() if ln.get_marker() == "o"]) == 2  # one mean path per variant
