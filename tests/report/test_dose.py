"""Dose-response studies: a fabricated study with a known slope of gold gain on surgery.dial, and a null one."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlhfsim.diagnostics.dose_response import minimal_detectable_effect
from rlhfsim.report import dose as DR
from rlhfsim.report.fig_dose import fig_dose_response
from rlhfsim.report.load import load_study
from tests.fixtures.browser import check_rendered_page, needs_chromium, probe_dom
from tests.fixtures.studies import (
    built_report,
    edit_config,
    edit_metrics,
    fab_run,
    html_images,
    make_study,
    report,
    write_experiment,
)

GROUPS, DOSES, SEEDS = ("ppo", "grpo"), (0.0, 0.5, 1.0), (0, 1, 2, 3, 4)
SLOPE, FID_SLOPE = -0.05, -0.2


# whole report builds over fabricated studies (seconds each): the full suite runs them, the fast lane does not
pytestmark = pytest.mark.slow


def shift_run(d: Path, group: str | None, dial: float, gain: float, fid: float, proxy_collapse: bool = False) -> None:
    """Set the run's optimiser and dial, add `gain` to gold after round 0 and `fid` to adv/gold_corr (and log the
    collapse of the surgered reward, 0.8 x dial, when asked); re-summarise."""

    def config(cfg):
        if group:
            cfg["optimizer"]["name"] = group
        cfg.setdefault("surgery", {})["dial"] = dial

    def row(r):
        r["eval/gold"] += gain
        r["adv/gold_corr"] += fid
        if proxy_collapse:
            r["surgery/shape_rel"] = 0.8 * dial

    edit_config(d, config)
    edit_metrics(d, row, from_round=1, summary=True)


def make_dose_study(
    tmp: Path, slope: float, noise: float = 0.01, unfinished_seed: int | None = 5, proxy_collapse: bool = False
) -> Path:
    """runs/dose/{ppo,grpo}_d{0,0.5,1} + ctl (a control whose config also has a dial, with a huge gain) x seeds;
    one extra seed with an unfinished arm, which must not enter."""
    root = tmp / "runs" / "dose"
    rng = np.random.default_rng(7)
    variants: dict[str, dict] = {}
    seeds = list(SEEDS) + ([unfinished_seed] if unfinished_seed is not None else [])
    for seed in seeds:
        seed_effect = rng.normal(0, 0.03)  # shared by the arms of a seed: pairing removes it
        for g in GROUPS:
            for x in DOSES:
                v = f"{g}_d{x:g}"
                variants[v] = {"optimizer.name": g, "surgery.dial": x}
                d = fab_run(root, v, seed, 0.05, 0.0)
                shift_run(
                    d,
                    g,
                    x,
                    seed_effect + slope * x + rng.normal(0, noise),
                    FID_SLOPE * x + rng.normal(0, noise),
                    proxy_collapse,
                )
        variants["ctl"] = {"surgery.profile": "none"}
        d = fab_run(root, "ctl", seed, 0.05, 0.0)
        shift_run(d, None, 1.0, 5.0, 0.0)  # far off: any slope that used it would be wild
    if unfinished_seed is not None:
        (root / "grpo_d1" / f"seed{unfinished_seed}" / "summary.json").unlink()  # still running: no summary yet
    write_experiment(
        root,
        {
            "name": "dose",
            "question": "Does the dial lower gold gain?",
            "base_overrides": {"device": "cpu"},
            "variants": variants,
            "seeds": seeds,
            "baseline": "ppo_d0",
            "primary": {"endpoint": "gold_gain", "better": "higher"},
            "headline": ["dose_response"],
            "factors": {"optimizer": "optimizer.name", "dial": "surgery.dial"},
        },
    )
    return root


def by_hand(root: Path, endpoint: str = "gold_gain") -> pd.DataFrame:
    """Per seed x group slopes with numpy.polyfit, from the summaries the report wrote (seeds of complete runs only)."""
    s = pd.read_csv(root / "summary.csv")
    s = s[s["seed"].isin(SEEDS) & (s["variant"] != "ctl")].copy()
    s["group"], s["dial"] = s["variant"].str.split("_d").str[0], s["variant"].str.split("_d").str[1].astype(float)
    return s.groupby(["seed", "group"]).apply(lambda t: np.polyfit(t["dial"], t[endpoint], 1)[0]).unstack()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_report(tmp_path_factory, "dose", make_dose_study, slope=SLOPE, proxy_collapse=True)


def test_design_finds_dose_arms_and_controls(built):
    study = load_study([built[0]])
    d = DR.design(study)
    assert d.dose == "dial" and d.group == "optimizer" and d.controls == ["ctl"]
    assert d.groups == list(GROUPS) and d.doses == list(DOSES)
    assert DR.complete_seeds(study) == list(SEEDS)  # seed 5 has an unfinished arm


def test_answer_reports_the_known_slope_from_complete_seeds_only(built):
    root, out = built
    html = (out / "report.html").read_text()
    box = html.split("<section class='answer' id='answer'>", 1)[1].split("</section>", 1)[0]
    assert "Dose-response detected: gold_gain falls" in box and f"{len(SEEDS)} complete seed(s)" in box
    assert "dose_response.png" in box  # the headline figure is in the box
    assert "MDE: noncentral t, power 80%, alpha 0.05" in box and "{" not in box  # no unformatted template field
    hand = by_hand(out).mean(axis=1)  # a seed's slope: mean over its optimisers; controls never enter
    m = float(re.search(r"slope of gold_gain on dial ([+-]\d\.\d+) per unit", box).group(1))
    assert m == pytest.approx(hand.mean(), abs=6e-4)
    lo, hi = (float(x) for x in re.search(r"95% t interval \[([+-]\d\.\d+), ([+-]\d\.\d+)\]", box).groups())
    assert lo < SLOPE < hi and hi < 0
    eff = pd.read_csv(out / "dose_effects.csv")
    assert set(eff["endpoint"]) == {"gold_gain", "mean/adv/gold_corr", "mean/adv/sign_agree"}
    row = eff[(eff["endpoint"] == "gold_gain") & (eff["group"] == "ppo")].iloc[0]
    assert row["slope"] == pytest.approx(by_hand(out)["ppo"].mean()) and row["n"] == len(SEEDS)
    fid = eff[eff["endpoint"] == "mean/adv/gold_corr"]
    assert np.allclose(fid["slope"], FID_SLOPE, atol=0.02) and (fid["p_holm"] >= fid["p"]).all()


def test_dose_figure_is_drawn_with_a_panel_per_group(built):
    _, out = built
    assert (out / "dose_response.png").is_file()
    res = fig_dose_response(load_study([built[0]]))
    axes = [a for a in res.fig.axes if a.get_visible()]
    assert len(axes) == 3 * len(GROUPS)  # rows: collapse the optimiser saw, fidelity, gold gain; a column per optimiser
    assert {a.get_title().split("\n")[0] for a in axes} == set(GROUPS)
    assert "optimiser saw" in axes[0].get_ylabel() and "gold gain" in axes[-len(GROUPS)].get_ylabel()
    means = axes[0].lines[len(SEEDS)].get_ydata()  # the bold mean after the seeds' thin lines: 0.8 x dial
    assert np.allclose(means, 0.8 * np.array(DOSES))
    assert "ctl (control)" in " ".join(t.get_text() for a in axes for t in a.texts)  # off scale: printed at the edge
    assert "tests their mean across optimizer" in res.caption
    only = fig_dose_response(load_study([built[0]]), where={"optimizer": GROUPS[0]})  # a primary.where restriction
    assert f"tests the slope of {GROUPS[0]} only" in only.caption and "their mean across" not in only.caption


def test_null_study_reports_no_dose_response_with_the_mde(tmp_path):
    root = make_dose_study(tmp_path, 0.0, unfinished_seed=None)
    study = load_study([root])
    d = DR.design(study)
    box = DR.dose_answer(study, d, DR.slope_table(study, d))
    b = DR.primary_slopes(study, d, "gold_gain")
    mde = minimal_detectable_effect(len(b), float(b.std(ddof=1)))
    assert box["verdicts"][0].startswith("No dose-response detected") and f"MDE {mde:.3f}" in box["verdicts"][0]


def test_mde_from_two_seeds_is_stated_or_said_to_be_unavailable():
    """With 2 seeds (df = 1) scipy's noncentral t may fail: the answer says so instead of failing the report."""
    m = DR._mde(2, 0.02)
    assert m is None or m > minimal_detectable_effect(3, 0.02)
    assert DR._mde(5, 0.0) is None and DR._mde(5, 0.02) == pytest.approx(minimal_detectable_effect(5, 0.02))


def test_too_few_seeds_say_so(tmp_path):
    root = make_dose_study(tmp_path, SLOPE, unfinished_seed=None)
    for seed in SEEDS[1:]:
        (root / "ppo_d0" / f"seed{seed}" / "summary.json").unlink()
    study = load_study([root])
    box = DR.dose_answer(study, DR.design(study), DR.slope_table(study, DR.design(study)))
    assert box["verdicts"][0].startswith("No test yet: 1 complete seed(s)") and box["n_seeds"] == 1


def test_study_without_dose_factor_has_no_dose_design(tmp_path):
    assert DR.design(load_study([make_study(tmp_path)])) is None


@pytest.mark.parametrize(
    "ci, mde, start",
    [
        ((-0.09, -0.01), 0.05, "Dose-response detected: gold_gain falls"),
        ((0.01, 0.2), 0.05, "Dose-response detected: gold_gain rises"),
        ((-0.02, 0.03), 0.05, "No dose-response detected (no equivalence margin"),
        ((-0.08, 0.03), 0.05, "No dose-response detected (no equivalence margin"),
    ],
)
def test_verdict_reads_the_interval_and_never_calls_a_null_from_the_mde(ci, mde, start):
    """Inside +-MDE is a power statement, not an equivalence test: without a declared margin no verdict claims a null."""
    res = {"n": 10, "mean": sum(ci) / 2, "p": 0.5, "ci_t": ci, "ci_boot": ci}
    text = DR.dose_verdict("gold_gain", "dial", res, mde)
    assert text.startswith(start) and "MDE 0.050" in text and "clean null" not in text
    none = DR.dose_verdict("gold_gain", "dial", res, None)
    assert "no MDE" in none and (
        none.startswith("Dose-response detected") or none.startswith("No dose-response detected (inconclusive")
    )


def test_verdict_with_a_margin_is_a_tost():
    res = {"n": 10, "mean": 0.001, "p": 0.8, "ci_t": (-0.01, 0.012), "ci_boot": (-0.01, 0.012), "sd": 0.01}
    eq = {"p": 0.001, "level": 0.9, "lo": -0.008, "hi": 0.01, "equivalent": True}
    assert DR.dose_verdict("gold_gain", "dial", res, 0.02, 0.02, eq).startswith("Equivalent within ±0.02")
    no = {**eq, "p": 0.2, "hi": 0.03, "equivalent": False}
    assert DR.dose_verdict("gold_gain", "dial", res, 0.02, 0.02, no).startswith("Inconclusive")


def test_null_study_without_proxy_collapse_draws_two_rows(tmp_path):
    study = load_study([make_dose_study(tmp_path, 0.0, unfinished_seed=None)])
    res = fig_dose_response(study)
    assert len([a for a in res.fig.axes if a.get_visible()]) == 2 * len(GROUPS) and "is not logged" in res.caption


def test_headline_dose_figure_without_complete_seeds_says_why(tmp_path):
    root = make_dose_study(tmp_path, SLOPE, unfinished_seed=None)
    for seed in SEEDS:
        (root / "ctl" / f"seed{seed}" / "summary.json").unlink()  # the control is still running in every seed
    out = report(root, tmp_path / "rep")
    md = (out / "report.md").read_text()
    assert not (out / "dose_response.png").exists() and "`dose_response`: no complete seed yet" in md
    assert "No test yet: 0 complete seed(s)" in md


@needs_chromium
def test_dose_report_renders_in_headless_chromium(built, tmp_path):
    html = (built[1] / "report.html").read_text()
    n_img = len(html_images(html))
    dom = probe_dom(html, tmp_path)
    assert f'data-probe="{n_img}:{n_img}"' in dom
    check_rendered_page(dom, n_img)  # a verdict in the Answer box, no figure taller than the limit, no absurd number


def test_an_incomplete_study_is_an_interim_look_never_a_clean_null(tmp_path):
    """With declared seeds still missing, the Answer says interim and does not call a clean null; complete: no prefix."""
    for unfinished, interim in ((5, True), (None, False)):
        root = make_dose_study(tmp_path / str(unfinished), 0.0, unfinished_seed=unfinished)
        study = load_study([root])
        d = DR.design(study)
        text = DR.dose_answer(study, d, DR.slope_table(study, d))["verdicts"][0]
        assert text.startswith("Interim, 5 of 6 declared seeds") == interim, text
        # a flat true slope with tight seeds and no margin: never a null claimed, interim or not
        assert "clean null" not in text and "no equivalence margin was declared" in text


def test_a_declared_contrast_and_margin_lead_the_answer_and_curvature_uses_the_middle_arms(tmp_path):
    """primary.contrast replaces the slope (any collapse: mean of doses > 0 minus dose 0) and primary.margin makes the
    verdict a TOST; the curvature line is there (the middle arms carry it)."""
    root = make_dose_study(tmp_path, 0.0, noise=0.001, unfinished_seed=None)
    study = load_study([root])
    d = DR.design(study)
    spec = {"endpoint": "gold_gain", "better": "higher", "margin": 0.05, "contrast": {0.0: -1.0, 0.5: 0.5, 1.0: 0.5}}
    box = DR.dose_answer(study, d, DR.slope_table(study, d), spec)
    assert box["verdicts"][0].startswith("Equivalent within ±0.05"), box["verdicts"][0]
    assert "declared contrast" in box["what"] and "TOST at ±0.05" in box["what"]
    assert any(v.startswith("Exploratory, not the primary test: curvature of gold_gain") for v in box["verdicts"])
    sm = study.summary.set_index(["seed", "variant"])["gold_gain"].astype(
        float
    )  # the contrast by hand from the summaries
    y = lambda s, g, x: sm.loc[(s, f"{g}_d{x:g}")]  # noqa: E731
    want = np.mean([0.5 * (y(s, g, 0.5) + y(s, g, 1.0)) - y(s, g, 0.0) for s in SEEDS for g in GROUPS])
    assert DR.primary_slopes(study, d, "gold_gain", spec["contrast"]).mean() == pytest.approx(want)
