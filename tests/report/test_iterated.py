"""Iterated-RLHF report (issue 36): the in-round analyses on constructed curves with known answers, and the page of a
fabricated 2-arm x 3-seed x 2-round study (reference: restart from SFT; start_continue) whose CSV numbers are checked
against values computed by hand."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rlhfsim.report import iterated as IT
from rlhfsim.report.fig_iterated import fig_iterated_frontiers, iterated_answer_into
from rlhfsim.report.load import load_study
from tests.fixtures.studies import built_report, edit_config, edit_metrics, fab_run, make_study, write_experiment

# ----------------------------------------------------------------------------- pure functions


def test_curve_at_kl_interpolates_a_known_line_and_never_extrapolates():
    kl = np.array([0.1, 0.2, 0.4])
    gold = 0.3 + 0.5 * kl  # a line: its value at any KL inside the curve is known
    assert IT.curve_at_kl(kl, gold, 0.3) == pytest.approx(0.45)
    assert IT.curve_at_kl(kl, gold, 0.1) == pytest.approx(0.35)  # the first evaluation itself
    assert np.isnan(IT.curve_at_kl(kl, gold, 0.05))  # the curve starts beyond the target: nothing is extrapolated
    assert np.isnan(IT.curve_at_kl(kl, gold, 0.5))  # never reached
    # KL not monotone within the round: the first crossing counts
    assert IT.curve_at_kl(np.array([0.1, 0.3, 0.2, 0.5]), np.array([1.0, 3.0, 2.0, 5.0]), 0.2) == pytest.approx(2.0)


def test_matched_gold_reads_every_arm_at_the_smallest_largest_kl_and_ignores_a_common_offset():
    curves = {
        "a": (np.array([0.1, 0.2, 0.4]), np.array([0.40, 0.45, 0.50])),
        "b": (np.array([0.1, 0.3, 0.5, 0.6]), np.array([0.36, 0.44, 0.40, 0.38])),
    }
    star, at = IT.matched_gold(curves)
    assert (
        star == pytest.approx(0.4) and at["a"] == pytest.approx(0.50) and at["b"] == pytest.approx(0.42)
    )  # b: halfway 0.44 -> 0.40
    shifted = {k: (x, g + 0.137) for k, (x, g) in curves.items()}  # a constant added to every arm's gold
    star2, at2 = IT.matched_gold(shifted)
    assert star2 == star and at2["b"] - at2["a"] == pytest.approx(at["b"] - at["a"], abs=1e-12)


def test_plateau_round_is_the_first_gain_below_the_threshold():
    assert IT.plateau_round([0, 1, 2, 3, 4], [0.30, 0.35, 0.37, 0.373, 0.38]) == 3  # gains .05, .02, .003, .007
    assert IT.plateau_round([0, 1, 2], [0.30, 0.35, 0.40]) is None
    assert IT.plateau_round([0, 1, 2], [0.30, 0.28, 0.40]) == 1  # a loss is below the threshold too
    assert IT.plateau_round([0, 1, 2], [np.nan, 0.35, 0.352]) == 2  # round 1's gain cannot be computed: skipped
    assert IT.round_gains(np.array([0.3, 0.35, 0.37])) == pytest.approx([0.05, 0.02])


def test_peak_and_fall_of_a_curve_with_a_known_peak_and_drop():
    assert IT.peak_and_fall(np.array([0.30, 0.50, 0.45, 0.48])) == pytest.approx((0.50, 0.05))
    assert IT.peak_and_fall(np.array([0.30, 0.40, 0.50])) == pytest.approx((0.50, 0.0))  # still rising: no fall
    assert IT.peak_and_fall(np.array([0.5, 0.3, 0.5])) == pytest.approx((0.5, 0.2))  # the first peak


def test_never_recovered_needs_a_fall_and_no_later_final_above_the_peak():
    rounds, peaks, falls = [1, 2, 3], [0.50, 0.45, 0.47], [0.05, 0.0, 0.0]
    assert IT.never_recovered(rounds, peaks, falls, [0.45, 0.44, 0.49]) == 1  # 0.49 < 0.50: never back above the peak
    assert IT.never_recovered(rounds, peaks, falls, [0.45, 0.44, 0.51]) is None  # round 3 ends above round 1's peak
    assert IT.never_recovered(rounds, peaks, [0.005, 0.0, 0.0], [0.45, 0.44, 0.49]) is None  # a fall within 0.01
    assert (
        IT.never_recovered(rounds, peaks, [0.0, 0.0, 0.02], [0.45, 0.44, 0.45]) == 3
    )  # the last round: counted (censored)


def test_pitman_morgan_on_constructed_pairs():
    y = np.array([0.1, 0.4, 0.2, 0.7, 0.5])
    r = IT.pitman_morgan(3 * y, y)  # x = 3 y: sd ratio 3, variances certainly differ
    assert r["ratio"] == pytest.approx(3.0) and r["p"] == 0.0 and r["n"] == 5
    x = y[::-1].copy()  # the same values in another order: equal variances
    r = IT.pitman_morgan(x, y)
    assert r["ratio"] == pytest.approx(1.0) and r["p"] == pytest.approx(1.0)


def _inner(arms: dict[str, float], seeds=(0, 1, 2, 3)) -> pd.DataFrame:
    """Inner curves gold = offset + 0.5 kl + 0.01 seed (arm b's noise differs by seed), arm KL ranges differ."""
    rows = []
    for v, off in arms.items():
        for s in seeds:
            for rd in (1, 2):
                top = 0.4 if v == "a" else 0.6
                for i, k in enumerate(np.linspace(0.1, top, 4), 1):
                    g = off + 0.5 * k + 0.01 * s + (0.003 * s * s if v == "b" else 0.0)
                    rows.append(
                        {
                            "variant": v,
                            "seed": s,
                            "run": f"{v}/{s}",
                            "round": rd,
                            "iteration": i,
                            "gold": g,
                            "proxy": 0.0,
                            "kl": k,
                        }
                    )
    return pd.DataFrame(rows)


def test_matched_kl_contrasts_are_invariant_to_a_constant_added_to_every_arm():
    study = SimpleNamespace(variants=["a", "b"], baseline="a")
    empty = pd.DataFrame(columns=IT.ROUND_COLUMNS)
    one = IT.round_contrasts(study, empty, IT.matched_frame(_inner({"a": 0.3, "b": 0.25})))
    two = IT.round_contrasts(study, empty, IT.matched_frame(_inner({"a": 0.3 + 0.2, "b": 0.25 + 0.2})))
    assert list(one["quantity"].unique()) == ["gold_at_matched_kl"] and list(one["round"]) == [1, 2]
    for c in ("diff", "lo", "hi", "p", "p_holm", "lo_adj", "hi_adj"):
        assert one[c].to_numpy() == pytest.approx(two[c].to_numpy(), abs=1e-12), c
    d = -0.05 + 0.003 * np.arange(4) ** 2  # at KL* = 0.4 both are on their lines: b - a = -0.05 + 0.003 s^2
    assert one["diff"].iloc[0] == pytest.approx(d.mean()) and one["n"].iloc[0] == 4


# ----------------------------------------------------------------------------- a fabricated study, end to end

SEEDS, MARGIN = (0, 1, 2), 0.02
REF_KL = [0.1, 0.2, 0.3, 0.4]  # reference: restarts from SFT, gold on a line with KL, no fall
CONT = {
    1: ([0.1, 0.3, 0.5, 0.55], [0.36, 0.44, 0.40, 0.38]),  # continue: peaks at iteration 2 and falls 0.06
    2: ([0.6, 0.7, 0.8, 1.0], [0.39, 0.40, 0.41, 0.42]),
}  # round 2 starts beyond KL*; final below round 1's peak


def _end_of_round(v: str, s: int) -> dict:
    """Per round: eval/gold, eval/kl, eval/proxy_gold_gap, eval/proxy_gold_w1 (round 0 = SFT: no gap)."""
    if v == "reference":
        return {
            "gold": [0.30, 0.36 + 0.01 * s, 0.363 + 0.01 * s],
            "kl": [0.0, 0.4, 0.4],
            "gap": [None, 1.0 + 0.1 * s, 0.6 + 0.12 * s],
            "w1": [None, 0.2, 0.15],
        }
    return {
        "gold": [0.30, 0.37 + 0.01 * s, 0.40 + 0.025 * s],
        "kl": [0.0, 0.5, 1.0],
        "gap": [None, 1.2 + 0.1 * s, 1.5 + 0.1 * s],
        "w1": [None, 0.25, 0.3 + 0.01 * s],
    }


def _inner_rows(v: str, s: int) -> list[dict]:
    rows = []
    for rd in (1, 2):
        kl, gold = (
            (REF_KL, [0.30 + 0.5 * k + 0.01 * s for k in REF_KL])
            if v == "reference"
            else (CONT[rd][0], [g + 0.02 * s for g in CONT[rd][1]])
        )
        if v != "reference" and rd == 2 and s == 2:
            gold = gold[:-1] + [
                0.44 + 0.04 + 0.01
            ]  # seed 2 ends round 2 above round 1's peak (0.44 + 0.04): it recovers
        rows += [
            {"round": rd, "iteration": i + 1, "gold": g, "proxy": 0.1 * (i + 1), "kl": k}
            for i, (k, g) in enumerate(zip(kl, gold))
        ]
    return rows


BASE = {
    "loop.policy_start": "sft",
    "loop.buffer": "accumulate",
    "reward.across_rounds": "last",
    "loop.proxy_gold_gap": True,
    "loop.inner_eval": {"every": 1, "prompts": 8, "completions": 2},
}


def _write_run(root: Path, v: str, s: int, settings: dict, e: dict, inner: list[dict]) -> None:
    """A fabricated run (tests/fixtures/studies.fab_run) with the iterated settings, end-of-round values e and inner rows."""
    d = fab_run(root, v, s, 0.05, 0.0, rounds=2)

    def config(cfg):
        for k, x in {**BASE, **settings}.items():
            sec, name = k.split(".", 1)
            cfg[sec][name] = x

    def row(r):
        i = r["round"]
        r.update({"eval/gold": e["gold"][i], "eval/kl": e["kl"][i], "eval/sqrt_kl": float(np.sqrt(e["kl"][i]))})
        if i:
            r.update({IT.GAP: e["gap"][i], IT.W1: e["w1"][i]})

    edit_config(d, config)
    edit_metrics(d, row, summary=True)
    (d / "inner_eval.jsonl").write_text("".join(json.dumps(x) + "\n" for x in inner))


def _experiment(root: Path, arms: dict[str, dict], factors: dict) -> None:
    write_experiment(
        root,
        {
            "name": "study",
            "question": "How do the iterated-RLHF choices move gold?",
            "base_overrides": {"device": "cpu"},
            "variants": {v: dict(x) for v, x in arms.items()},
            "seeds": list(SEEDS),
            "baseline": "reference",
            "primary": {"endpoint": "gold_final", "better": "higher", "margin": MARGIN},
            "secondary": [{"endpoint": "final/eval/proxy_gold_gap", "better": "lower"}],
            "factors": factors,
            "headline": ["iterated_frontiers", "effect_sizes"],
        },
        sort_keys=False,
    )


def make_iterated_study(tmp: Path) -> Path:
    root = tmp / "runs" / "study"
    arms = {"reference": {"loop.policy_start": "sft"}, "start_continue": {"loop.policy_start": "continue"}}
    for s in SEEDS:
        for v, settings in arms.items():
            _write_run(root, v, s, settings, _end_of_round(v, s), _inner_rows(v, s))
    _experiment(root, arms, {"start": "loop.policy_start"})
    return root


def _t(d) -> tuple[float, float, float]:
    d = np.asarray(d, float)
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return d.mean(), d.mean() - half, d.mean() + half


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_report(tmp_path_factory, "iterated", make_iterated_study)


@pytest.mark.slow  # a whole report build
def test_page_has_the_iterated_figures_sections_and_answer(built):
    _, out = built
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for f in ("iterated_frontiers.png", "iterated_gap.png"):
        assert (out / f).read_bytes()[:4] == b"\x89PNG" and f in md
    box = html.split("<section class='answer' id='answer'>", 1)[1].split("</section>", 1)[0]
    assert "iterated_frontiers.png" in box  # the headline figure leads the Answer box
    assert (
        "Predictions declared before the run" in box
        and "P1 holds; P2 holds; P3 cannot test; P4 cannot test; P5 cannot test" in box
    )
    assert "TOST interval, TOST p (Holm)" in box and "(±0.02)" in box
    for title in (
        "Predictions P1-P5 against the measured quantities",
        "Proxy-gold gap by round",
        "Gold at matched KL inside each round",
        "Gold gain per round and the plateau round",
        "Over-optimisation inside rounds, and recovery",
    ):
        assert f"## {title}" in md, title
    assert "seed-rounds without one: start_continue 3" in md  # continue's round 2 starts beyond KL*


def test_csv_numbers_equal_hand_computed_ones(built):
    _, out = built
    # primary: gold_final, continue minus reference = 0.037 + 0.015 s
    prim = pd.read_csv(out / "iterated_primary.csv").set_index("variant")
    d = [0.40 + 0.025 * s - (0.363 + 0.01 * s) for s in SEEDS]
    m, lo, hi = _t(d)
    c = prim.loc["start_continue"]
    assert (
        c["diff"] == pytest.approx(m) and c["lo"] == pytest.approx(lo) and c["hi"] == pytest.approx(hi) and c["n"] == 3
    )
    assert prim.loc["reference", "mean"] == pytest.approx(np.mean([0.363 + 0.01 * s for s in SEEDS]))
    # matched KL: KL* = 0.4 in round 1 (reference's largest); reference on its line 0.5 + 0.01 s; continue halfway
    # between 0.44 and 0.40 plus 0.02 s; round 2: continue starts at 0.6 > KL*, no value
    mk = pd.read_csv(out / "iterated_matched_kl.csv")
    r1 = mk[mk["round"] == 1].set_index(["variant", "seed"])
    assert np.allclose(r1["kl_star"], 0.4)
    for s in SEEDS:
        assert r1.loc[("reference", s), "gold"] == pytest.approx(0.5 + 0.01 * s)
        assert r1.loc[("start_continue", s), "gold"] == pytest.approx(0.42 + 0.02 * s)
    assert mk[(mk["round"] == 2) & (mk["variant"] == "start_continue")]["gold"].isna().all()
    br = pd.read_csv(out / "iterated_by_round.csv").set_index(["quantity", "round"])
    m, lo, hi = _t([-0.08 + 0.01 * s for s in SEEDS])
    row = br.loc[("gold_at_matched_kl", 1)]
    assert row["diff"] == pytest.approx(m) and row["lo"] == pytest.approx(lo) and row["hi"] == pytest.approx(hi)
    m, lo, hi = _t([(1.5 + 0.1 * s) - (0.6 + 0.12 * s) for s in SEEDS])  # the gap in round 2
    row = br.loc[("proxy_gold_gap", 2)]
    assert row["diff"] == pytest.approx(m) and row["lo"] == pytest.approx(lo) and row["hi"] == pytest.approx(hi)
    ok = br.dropna(subset=["p"])
    assert (ok["p_holm"] >= ok["p"] - 1e-12).all() and len(br) == 6  # 3 quantities x 2 rounds, one Holm family
    # per run: plateau (reference: round 2's gain 0.003 < 0.005; continue: none), over-optimisation and recovery
    runs = pd.read_csv(out / "iterated_runs.csv", dtype={"overopt_rounds": str}).set_index(["variant", "seed"])
    for s in SEEDS:
        assert runs.loc[("reference", s), "plateau_round"] == 2 and np.isnan(
            runs.loc[("start_continue", s), "plateau_round"]
        )
        assert (
            pd.isna(runs.loc[("reference", s), "overopt_rounds"])
            and runs.loc[("start_continue", s), "overopt_rounds"] == "1"
        )
        nr = runs.loc[("start_continue", s), "never_recovered_round"]
        assert nr == 1 if s < 2 else np.isnan(nr)  # seed 2 ends round 2 above round 1's peak
    assert not runs["censored"].any()
    rounds = pd.read_csv(out / "iterated_rounds.csv").set_index(["variant", "seed", "round"])
    assert rounds.loc[("start_continue", 1, 1), "inner_fall"] == pytest.approx(0.06) and rounds.loc[
        ("start_continue", 1, 1), "inner_peak"
    ] == pytest.approx(0.46)
    assert rounds.loc[("reference", 0, 2), "gain"] == pytest.approx(0.003)
    # predictions: P1 (reference gap round 2 minus round 1 = -0.4 + 0.02 s), P2 slope of gains (-0.057 - 0.01 s)
    pr = pd.read_csv(out / "iterated_predictions.csv")
    p1 = pr[pr["prediction"] == "P1"].iloc[0]
    m, lo, hi = _t([-0.4 + 0.02 * s for s in SEEDS])
    assert (
        p1["value"] == pytest.approx(m)
        and p1["lo"] == pytest.approx(lo)
        and p1["hi"] == pytest.approx(hi)
        and p1["outcome"] == "holds"
    )
    p2 = pr[pr["prediction"] == "P2"]
    m, lo, hi = _t([0.003 - (0.06 + 0.01 * s) for s in SEEDS])
    assert (
        p2.iloc[0]["value"] == pytest.approx(m)
        and p2.iloc[0]["hi"] == pytest.approx(hi)
        and p2.iloc[0]["outcome"] == "holds"
    )
    assert p2.iloc[1]["detail"].startswith("3 of 3 seeds") and p2.iloc[1]["outcome"] == "holds"
    p3 = pr[pr["prediction"] == "P3"].set_index("claim")
    kl = p3.loc["continue reaches a higher KL than reference"]
    assert kl["value"] == pytest.approx(0.6) and kl["outcome"] == "holds"
    sd = p3.loc["continue's gold is more variable across seeds than reference's"]
    assert sd["value"] == pytest.approx(2.5) and sd["outcome"] == "holds"
    assert (pr[pr["prediction"].isin(["P4", "P5"])]["outcome"] == "cannot test").all()


def test_a_study_without_inner_evaluations_gets_none_of_it(tmp_path):
    study = load_study([make_study(tmp_path)])
    ctx = {"answer": {"verdicts": ["x"]}, "sections": []}
    assert iterated_answer_into(study, ctx, tmp_path, pd.DataFrame()) == [] and ctx == {
        "answer": {"verdicts": ["x"]},
        "sections": [],
    }
    assert fig_iterated_frontiers(study, {}).fig is None and not list(tmp_path.glob("iterated_*.csv"))


# ----------------------------------------------------------------------------- every arm of the study: the predictions

NINE = {  # arm: (settings, Δ gold_final(seed), Δ final gap) on the reference's values; start arms use continue's
    "reference": ({}, 0.0, 0.0),
    "data_last": ({"loop.buffer": "fresh"}, lambda s: -0.06 - 0.005 * s, 0.5),
    "data_sample": ({"loop.buffer": "equal_share", "loop.buffer_total": 32}, lambda s: -0.01 + 0.002 * s, 0.1),
    "data_once": ({"loop.buffer": "prompt_once", "loop.buffer_total": 32}, lambda s: -0.02, 0.2),
    "reward_mean": ({"reward.across_rounds": "mean"}, lambda s: 0.001 * (s - 1), 0.0),  # inside the ±0.02 margin
    "reward_min": ({"reward.across_rounds": "min"}, lambda s: -0.03 - 0.003 * s, -0.3),
    "reward_wavg": (
        {"reward.across_rounds": "weight_average"},
        lambda s: -0.08 - 0.004 * s,
        0.05,
    ),  # well beyond the margin
    "start_continue": ({"loop.policy_start": "continue"}, None, None),
    "start_liti": ({"loop.policy_start": "interpolate", "loop.liti_eta": 0.5}, None, None),
}
NINE_FACTORS = {"data": "loop.buffer", "reward": "reward.across_rounds", "start": "loop.policy_start"}


def make_nine_arm_study(tmp: Path) -> Path:
    root = tmp / "runs" / "study"
    for s in SEEDS:
        for v, (settings, dg, dgap) in NINE.items():
            if dg is None:  # continue and LITI: over-optimise in round 1, seeds 0 and 1 never recover; LITI's KL 0.8
                e = _end_of_round("start_continue", s)
                e["kl"] = e["kl"][:2] + [0.8] if v == "start_liti" else e["kl"]
                _write_run(root, v, s, settings, e, _inner_rows("start_continue", s))
                continue
            e = _end_of_round("reference", s)
            e["gold"][2] += dg(s) if callable(dg) else dg
            e["gap"][2] += dgap
            _write_run(root, v, s, settings, e, _inner_rows("reference", s))
    _experiment(root, {v: x[0] for v, x in NINE.items()}, NINE_FACTORS)
    return root


@pytest.mark.slow  # a whole report build
def test_predictions_of_a_study_with_every_arm(tmp_path):
    from rlhfsim.report.answer import comparisons
    from rlhfsim.report.fig_iterated import factor_rows
    from rlhfsim.report.iterated_claims import arm_roles, overall, predictions

    study = load_study([make_nine_arm_study(tmp_path)])
    roles = arm_roles(study)
    assert roles == {
        "data_last": "data_last",
        "data_sample": "data_sample",
        "data_once": "data_once",
        "reward_mean": "reward_mean",
        "reward_min": "reward_min",
        "reward_wavg": "reward_wavg",
        "continue": "start_continue",
        "liti": "start_liti",
    }
    assert [(lab, vs[1:]) for lab, vs in factor_rows(study)] == [
        ("data", ["data_last", "data_sample", "data_once"]),
        ("reward", ["reward_mean", "reward_min", "reward_wavg"]),
        ("start", ["start_continue", "start_liti"]),
    ]
    rounds = IT.round_frame(study, IT.inner_frame(study))
    tab = predictions(study, comparisons(study), rounds, IT.run_frame(rounds, IT.gold_round0(study)))
    assert overall(tab) == {"P1": "holds", "P2": "holds", "P3": "holds", "P4": "holds", "P5": "fails"}
    p5 = tab[tab["prediction"] == "P5"].set_index("claim")["outcome"]
    assert p5["reward_mean is within the margin of reference in gold_final"] == "holds"  # TOST inside ±0.02
    assert (
        p5["reward_wavg is within the margin of reference in gold_final"] == "fails"
    )  # Holm-step interval beyond -0.02
    assert p5["the minimum may cost gold"] == "descriptive"
    p4 = tab[tab["prediction"] == "P4"]
    assert len(p4) == 5 and (p4["outcome"] == "holds").all()
    m, lo, hi = _t([0.01 - 0.002 * s for s in SEEDS])  # reference minus the equal-share sample
    assert (
        p4.iloc[0]["value"] == pytest.approx(m)
        and p4.iloc[0]["lo"] == pytest.approx(lo)
        and p4.iloc[0]["hi"] == pytest.approx(hi)
    )
    p3 = tab[tab["prediction"] == "P3"]
    assert p3.iloc[-1]["detail"] == (
        "start_continue: 2 of 3 seeds (0 in their last round); start_liti: 2 of 3 seeds (0 in their last "
        "round); reference: 0 of 3 seeds (0 in their last round)"
    )
