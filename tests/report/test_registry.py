"""issue 30: the figure and table registry on fabricated studies: the design kind picks what a page carries, a
gold-reward arm draws no proxy, audits off draw no alarm panel, and a figure is one file."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rlhfsim.experiment.ids as ids
from rlhfsim.experiment.spec import ExperimentSpec
from rlhfsim.report import registry as REG
from rlhfsim.report.answer import comparisons, fig_effect_sizes, verdicts
from rlhfsim.report.kinds import answering_figures, design_kind
from rlhfsim.report.load import load_study
from rlhfsim.report.plots import palette
from rlhfsim.report.registry import Figure, Page, build_tables, draw_figures, proxy_free
from rlhfsim.report.stats import SMALL_NOTE
from rlhfsim.report.study import Study
from tests.fixtures.browser import first_screen, needs_chromium
from tests.fixtures.memory import mem_run, mem_study
from tests.fixtures.studies import (
    edit_configs,
    edit_metrics,
    fab_run,
    html_images,
    make_study,
    md_images,
    read_metrics,
    write_experiment,
    write_metrics,
)


def _by_id(*ids: str) -> list[Figure]:
    return [f for f in REG.all_figures() if f.id in ids]


def _page(study: Study, kind: str = "ab") -> Page:
    return Page(proxy_free(study), kind, palette(study.variants, study.baseline), "sd")


def _colours(ax) -> set:
    """Colours of the lines that draw something (a finite point)."""
    return {
        tuple(np.round(ln.get_color()[:3], 3))
        for ln in ax.lines
        if np.isfinite(np.asarray(ln.get_ydata(), float)).any()
    }


# ----------------------------------------------------------------------------- design kinds


def _light_study(**kw) -> Study:
    runs = [
        mem_run(v, 0, None, root="/nowhere", config={"surgery": {"dial": x}, "optimizer": {"name": "ppo"}})
        for v, x in (("d0", 0.0), ("d1", 1.0))
    ]
    return mem_study(runs, sources=("fabricated",), **kw)


def test_the_kind_is_read_from_the_experiment_file():
    assert design_kind(_light_study()) == "ab" and answering_figures(_light_study()) == ["effect_sizes"]
    dose = _light_study(
        factors={"dial": "surgery.dial"}, variant_overrides={"d0": {"surgery.dial": 0.0}, "d1": {"surgery.dial": 1.0}}
    )
    assert design_kind(dose) == "dose" and answering_figures(dose) == ["dose_response"]
    assert design_kind(_light_study(headline=["fig3_gold_vs_sqrt_kl"])) == "overopt"
    assert answering_figures(_light_study(primary={"endpoint": "gold_drop_after_peak"})) == [
        "fig9_proxy_and_gold_vs_sqrt_kl"
    ]
    assert design_kind(_light_study(headline=["calibration"])) == "calibration"
    assert design_kind(_light_study(kind="overopt", headline=["calibration"])) == "overopt"  # `design:` named: it wins


def test_a_dose_page_carries_no_effect_against_one_baseline_and_shows_the_reward_models_accuracy():
    figs = _by_id("effect_sizes", "fig3_gold_vs_sqrt_kl", "rm_accuracy", "dose_response")
    assert [f.id for f in figs if "dose" in f.kinds] == ["dose_response", "rm_accuracy"]
    assert [f.id for f in figs if "ab" in f.kinds] == ["effect_sizes"]
    assert [f.id for f in figs if "overopt" in f.kinds] == ["effect_sizes", "fig3_gold_vs_sqrt_kl"]


# ----------------------------------------------------------------------------- a gold-reward arm draws no proxy


def test_a_gold_reward_arm_draws_no_proxy_figure(tmp_path):
    root = make_study(tmp_path)
    edit_configs(root, "high_kl", lambda c: c["loop"].update(reward_source="gold"))
    study = load_study([root])
    page = _page(study)
    drawn, _ = draw_figures(page, [], _by_id("fig1_gold_proxy_kl", "fig9_proxy_and_gold_vs_sqrt_kl"))
    gold_rgb = tuple(np.round(page.pal["high_kl"][:3], 3))
    for res in drawn:  # the gold arm in every gold panel, in no proxy panel
        axes = {ax.get_title().split("\n")[0]: ax for ax in res.fig.axes}
        proxy = [ax for t, ax in axes.items() if t.startswith("proxy")]
        gold = [ax for t, ax in axes.items() if t.startswith("gold")]
        assert proxy and gold, list(axes)
        assert all(gold_rgb in _colours(ax) for ax in gold) and not any(gold_rgb in _colours(ax) for ax in proxy), (
            res.key
        )
    assert np.isnan(page.study.metrics.query("variant == 'high_kl'")["rm/pairwise_acc"]).all()
    assert study.metrics.query("variant == 'high_kl'")["rm/pairwise_acc"].notna().any()  # the study itself is untouched

    edit_configs(root, "low_kl", lambda c: c["loop"].update(reward_source="gold"))  # every arm optimises gold
    page = _page(load_study([root]))
    drawn, left_out = draw_figures(
        page, [], _by_id("fig1_gold_proxy_kl", "fig6_collapse", "fig9_proxy_and_gold_vs_sqrt_kl")
    )
    fig1, fig6 = drawn  # fig9 (a proxy figure) is not applicable: left out without a word
    assert [ax.get_title() for ax in fig1.fig.axes] == ["gold (true) reward", "KL to the reference"]
    assert fig6.fig is None and "no collapse/*" in fig6.skipped and not left_out


# ----------------------------------------------------------------------------- audits off draw no alarm panel


def _with_alarms(root: Path, variant: str) -> None:
    for d in (root / variant).glob("seed*"):
        edit_metrics(
            d,
            lambda r: r.update({"audit/alarms": 1.0, "audit/alarm_collapse": 1.0, "audit/exploit_rate_max": 0.6}),
            from_round=1,
        )


def test_audits_off_draw_no_alarm_panel_and_no_alarm_table(tmp_path):
    root = make_study(tmp_path)
    for v in ("low_kl", "high_kl"):
        _with_alarms(root, v)  # alarm columns logged, as a run with audits off may still carry them
        edit_configs(root, v, lambda c: c.setdefault("audit", {}).update(enabled=False))
    page = _page(load_study([root]))
    drawn, left_out = draw_figures(page, ["fig11_audits"], _by_id("fig11_audits"))
    assert (
        not drawn and left_out == [("fig11_audits", REG.audits_off(page))] and "audit.enabled: false" in left_out[0][1]
    )
    sections, dropped = build_tables(page)
    assert not any(s.title.startswith(("Audits", "Alarm")) for s in sections)
    assert dropped == [("audits", REG.audits_off(page)), ("alarm_detection", REG.audits_off(page))]

    edit_configs(root, "high_kl", lambda c: c["audit"].update(enabled=True))  # audits on in one arm: its alarms only
    page = _page(load_study([root]))
    (res,), _ = draw_figures(page, [], _by_id("fig11_audits"))
    alarms = next(ax for ax in res.fig.axes if ax.get_title().startswith("alarms on"))
    assert tuple(np.round(page.pal["low_kl"][:3], 3)) not in _colours(alarms)
    rows = next(s for s in build_tables(page)[0] if s.title.startswith("Audits: alarms")).rows
    assert {r[0] for r in rows} == {"high_kl"}


# ----------------------------------------------------------------------------- verdicts the data allow


def _set_final_gold(root: Path, variant: str, values) -> None:
    for seed, g in enumerate(values):
        d = root / variant / f"seed{seed}"
        rows = read_metrics(d)
        rows[-1]["eval/gold"] = g
        write_metrics(d, rows)


def test_no_verdict_says_no_effect_beside_an_interval_that_excludes_0_and_three_seeds_print_no_p(tmp_path):
    root = tmp_path / "runs" / "s"
    shifts = {"base": 0.0, "big": 0.2, "small": 0.01, "none": 0.0}
    for seed in range(3):
        for v in shifts:
            fab_run(root, v, seed, 0.05, 0.0)
    base = np.array([0.40, 0.45, 0.50])
    for v, s in shifts.items():
        _set_final_gold(root, v, base + s + np.array([0.0, 0.004, -0.003]) * (v != "base"))
    write_experiment(
        root,
        {
            "name": "s",
            "question": "q?",
            "base_overrides": {"device": "cpu"},
            "variants": {v: {} for v in shifts},
            "seeds": [0, 1, 2],
            "baseline": "base",
            "primary": {"endpoint": "gold_final"},
        },
    )
    study = load_study([root])
    comps = comparisons(study)
    lines = verdicts(study, comps)
    for line in lines:
        lo, hi = (float(x) for x in re.search(r"\[([-+]\d\.\d+), ([-+]\d\.\d+)\]", line).groups())
        if line.startswith("No effect detected"):
            assert lo <= 0 <= hi, line
        assert "p =" not in line and "p_Holm" not in line and SMALL_NOTE in line  # 3 seeds: intervals, no p-value
    assert any(x.startswith("big raises") for x in lines) and any(
        x.startswith("No effect detected: none") for x in lines
    )
    res = fig_effect_sizes(study, comps)
    texts = [t.get_text() for ax in res.fig.axes for t in ax.texts]
    assert texts and not any("p_Holm" in t or "p=" in t for t in texts)


# ----------------------------------------------------------------------------- adding a figure is one file


PLUGIN = """
    from rlhfsim.plotting import pyplot
    from rlhfsim.report.registry import Figure


    def draw(page):
        fig, ax = pyplot().subplots()
        ax.plot([0, 1], [0, page.study.metrics["eval/gold"].max()])
        return fig


    FIGURE = Figure("gold_line", draw, kinds=("ab",), needs=("eval/gold",), title="A gold line", caption="One line, for the test.")
    """


def test_adding_a_figure_is_one_file(tmp_path, monkeypatch):
    pkg = tmp_path / "myfigs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "gold_line.py").write_text(textwrap.dedent(PLUGIN))  # the one file
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(REG, "PLUGIN_PACKAGE", "myfigs")
    monkeypatch.setattr(ids, "PLUGIN_FIGURES", pkg)
    assert [f.id for f in REG.plugins()] == ["gold_line"]
    ExperimentSpec(
        name="x", question="q", base_overrides={"device": "cpu"}, headline=["gold_line"]
    )  # a headline may name it
    study = load_study([make_study(tmp_path)])
    (res,), _ = draw_figures(_page(study), ["gold_line"], REG.plugins())
    assert (res.key, res.title, res.caption) == (
        "gold_line",
        "A gold line",
        "One line, for the test.",
    ) and res.fig is not None
    assert not draw_figures(_page(study, "dose"), [], REG.plugins())[0]  # not on a page of another kind
    (pkg / "bad_name.py").write_text(textwrap.dedent(PLUGIN))  # its file name is its id
    with pytest.raises(TypeError, match="bad_name"):
        REG.plugins()


def test_the_shipped_plug_in_is_a_figure_of_its_kinds(tmp_path):
    study = load_study([make_study(tmp_path)])
    (res,), _ = draw_figures(_page(study, "dose"), [], REG.plugins())
    assert res.key == "rm_accuracy" and res.fig is not None and res.caption
    assert not draw_figures(_page(study, "ab"), [], REG.plugins())[0]


# ----------------------------------------------------------------------------- the over-optimisation overlay


def test_the_overlay_draws_a_gao_fit_only_where_it_describes_the_arm():
    import pandas as pd

    from rlhfsim.diagnostics.overopt import gao_rl
    from rlhfsim.report.dynamics import gold_fit

    d = np.tile(np.linspace(0, 2, 9), 3)
    rows = pd.DataFrame(
        {
            "seed": np.repeat([0, 1, 2], 9),
            "round": np.tile(np.arange(9), 3),
            "eval/sqrt_kl": d,
            "eval/gold": 0.3 + np.repeat([0.0, 0.01, -0.01], 9) + gao_rl(np.maximum(d, 1e-9), 0.5, 0.4),
        }
    )
    xs, ys = gold_fit(rows)
    assert xs.max() == pytest.approx(2.0) and ys == pytest.approx(
        0.3 + gao_rl(xs, 0.5, 0.4), abs=1e-6
    )  # the known curve
    noise = rows.assign(**{"eval/gold": 0.3 + np.random.default_rng(0).normal(0, 0.05, len(rows))})
    assert gold_fit(noise) is None  # R² below R2_ADEQUATE: no curve drawn as a finding


# ----------------------------------------------------------------------------- the page of a kind


@pytest.fixture
def ab_page(ab_report):
    """The report of make_study's study (the session's, tests/conftest.py)."""
    return ab_report[1]


def test_an_ab_page_leads_with_its_answering_figure_once(ab_page):
    md, html = (ab_page / "report.md").read_text(), (ab_page / "report.html").read_text()
    box = html.split("<section class='answer' id='answer'>", 1)[1].split("</section>", 1)[0]
    assert "effect_sizes.png" in box  # no headline declared: the A/B kind's answering figure
    assert (
        sorted(md_images(md)) == sorted(p.name for p in ab_page.glob("*.png")) == sorted(set(md_images(md)))
    )  # each once
    assert (
        len(html_images(html)) == len(md_images(md)) and "fig3_gold_vs_sqrt_kl.png" not in md
    )  # not an over-optimisation page
    assert (
        "Design: A/B comparison against a baseline" in md and "<details class='part'>" in html
    )  # runs all finished: closed


@needs_chromium
def test_an_ab_page_first_screen_is_question_verdict_and_figure(ab_page, tmp_path):
    spans = first_screen((ab_page / "report.html").read_text(), tmp_path)
    assert all(0 <= top < 900 for top, _ in spans), spans
    assert spans[2][1] - spans[2][0] > 100  # the figure, not a sliver


def test_a_dose_page_draws_the_equivalence_band_of_a_declared_margin(tmp_path):
    root = tmp_path / "runs" / "dose"
    for seed in range(3):
        for x in (0.0, 1.0):
            d = fab_run(root, f"ppo_d{x:g}", seed, 0.05, 0.0)
            edit_configs(root, f"ppo_d{x:g}", lambda c, x=x: c.setdefault("surgery", {}).update(dial=x))
    write_experiment(
        root,
        {
            "name": "dose",
            "question": "q?",
            "base_overrides": {"device": "cpu"},
            "seeds": [0, 1, 2],
            "baseline": "ppo_d0",
            "variants": {"ppo_d0": {"surgery.dial": 0.0}, "ppo_d1": {"surgery.dial": 1.0}},
            "factors": {"dial": "surgery.dial"},
            "primary": {"endpoint": "gold_gain", "margin": 0.05},
        },
    )
    study = load_study([root])
    assert design_kind(study) == "dose" and d.is_dir()
    drawn, _ = draw_figures(
        _page(study, "dose"), answering_figures(study), _by_id("effect_sizes", "dose_response", "rm_accuracy")
    )
    assert [r.key for r in drawn] == [
        "dose_response",
        "rm_accuracy",
    ]  # the answering figure first; no effect against ppo_d0
    dose = drawn[0]
    assert "equivalence band" in dose.caption and "±0.05 per unit dial" in dose.caption
    (ax,) = [a for a in dose.fig.axes if "gold gain" in a.get_ylabel()]
    (band,) = [
        c for c in ax.collections if "Poly" in type(c).__name__
    ]  # the filled band (error bars are line collections)
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() - ys.min() == pytest.approx(0.10, abs=1e-9)  # ±0.05 at dose 1 around the dose-0 mean
