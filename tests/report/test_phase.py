"""Phase-diagram studies: fabricated source x dial x optimiser studies with a known dial effect (-0.05 on the gold
source only, 0 elsewhere; or 0 everywhere), and the pure pieces (matched KL, band sentences) on constructed cases."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report import phase as PH
from rlhfsim.report.fig_phase import fig_phase_diagram
from rlhfsim.report.load import load_study
from tests.fixtures.browser import first_screen, needs_chromium
from tests.fixtures.studies import built_report, edit_config, edit_metrics, fab_run, write_experiment

# whole report builds over fabricated studies (seconds each): the full suite runs them, the fast lane does not
pytestmark = pytest.mark.slow


SOURCES = {
    "gold": None,
    "rho0.6": 0.6,
    "weak": 0.15,
}  # source -> its measured within-prompt Spearman (gold: rho 1 by definition)
LINES, SEEDS, EFFECT, MARGIN = ("ppo", "rloo"), (0, 1, 2, 3, 4, 5), -0.05, 0.02
ZERO_MEAN = (
    -1.5,
    -0.5,
    0.5,
    1.5,
    -1.0,
    1.0,
)  # per-seed noise of the dial-1 arms: the mean effect is exactly the set one


def _shift(d: Path, source: str, line: str, dial: float, gain: float, closed: float, rho: float, rng) -> None:
    def config(cfg):
        cfg["optimizer"]["name"] = line
        cfg.setdefault("surgery", {})["dial"] = dial
        cfg["loop"]["reward_source"] = "gold" if source == "gold" else "learned"

    def row(r):
        r["eval/gold"] += gain
        r["eval/gold_closed"] += closed
        r["rm/within_prompt_spearman"] = (
            0.05 if source == "gold" else rho + rng.normal(0, 0.01)
        )  # gold: an unused RM's value
        r["adv/gold_corr_score"] = 0.9 - 0.4 * dial * (source == "gold")

    edit_config(d, config)
    edit_metrics(d, row, from_round=1, summary=True)


def make_phase_study(tmp: Path, effect: float = EFFECT, noise: float = 0.004) -> Path:
    """runs/phase/<source>_<line>_d<dial>/seed<k>: the dial adds `effect` to gold (and to closed prompts' gold) after
    round 0 in the gold source's arms only, plus per-seed noise (zero mean over the seeds) in the dial-1 arms; arms of a
    seed share the base trajectory, so each cell's mean effect is exactly the set one."""
    root = tmp / "runs" / "phase"
    rng = np.random.default_rng(3)
    variants = {}
    for seed in SEEDS:
        for s, rho in SOURCES.items():
            for ln in LINES:
                for x in (0.0, 1.0):
                    v = f"{s}_{ln}_d{x:g}"
                    variants[v] = {"optimizer.name": ln, "surgery.dial": x}
                    d = fab_run(root, v, seed, 0.05, 0.0)
                    e = effect * x if s == "gold" else 0.0
                    _shift(d, s, ln, x, e + noise * ZERO_MEAN[seed] * x, e, rho or 1.0, rng)
    write_experiment(
        root,
        {
            "name": "phase",
            "question": "Where does collapse start to cost gold?",
            "base_overrides": {"device": "cpu"},
            "variants": variants,
            "seeds": list(SEEDS),
            "baseline": "gold_ppo_d0",
            "headline": ["phase_diagram"],
            "primary": {
                "endpoint": "gold_gain_late",
                "better": "higher",
                "margin": MARGIN,
                "where": {"source": "gold"},
            },
            "factors": {"dial": "surgery.dial", "optimizer": "optimizer.name", "source": {"levels": list(SOURCES)}},
        },
        sort_keys=False,
    )
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_report(tmp_path_factory, "phase", make_phase_study)


def test_design_finds_cells_sources_lines_and_the_gold_source(built):
    p = PH.phase_design(load_study([built[0]]))
    assert p.sources == list(SOURCES) and p.lines == list(LINES) and p.gold_sources == {"gold"}
    assert sorted(p.cells.values()) == sorted((s, ln) for s in SOURCES for ln in LINES) and p.dose.doses == [0.0, 1.0]


def test_cells_recover_the_known_effect_and_measured_rho(built):
    cells = pd.read_csv(built[1] / "phase_cells.csv")
    prim = cells[cells["family"] == "primary"].set_index(["source", "line"])
    for s, rho in SOURCES.items():
        for ln in LINES:
            r = prim.loc[(s, ln)]
            want = EFFECT if s == "gold" else 0.0
            assert r["effect"] == pytest.approx(want, abs=1e-9) and r["lo"] < want < r["hi"] and r["n"] == len(SEEDS)
            assert r["rho"] == pytest.approx(rho or 1.0, abs=0.01)  # gold: 1 by definition, not its unused RM's 0.05
            assert (
                r["p_holm"] >= r["p"] and r["lo_adj"] <= r["lo"] and r["hi_adj"] >= r["hi"]
            )  # Holm-step interval is wider
    assert (
        (prim.loc["gold", "hi"] < 0).all() and (prim.loc["weak", "lo"] < 0).all() and (prim.loc["weak", "hi"] > 0).all()
    )
    typed = cells[cells["family"] == "closed vs open"].set_index(["endpoint", "source", "line"])["effect"]
    assert typed.loc[("closed_gain_late", "gold", "ppo")] == pytest.approx(
        EFFECT, abs=1e-9
    )  # closed gold moved exactly
    assert typed.loc[("open_gain_late", "gold", "ppo")] == pytest.approx(0.0, abs=1e-9)
    kl = cells[cells["family"] == "matched KL"].set_index(["source", "line"])["effect"]
    assert kl.loc[("gold", "rloo")] == pytest.approx(EFFECT, abs=1e-9) and kl.loc[("weak", "rloo")] == pytest.approx(
        0, abs=1e-9
    )
    fid = cells[
        (cells["family"] == "advantage fidelity") & (cells["endpoint"] == "mean/adv/gold_corr_score")
    ].set_index(["source", "line"])
    assert fid.loc[("gold", "ppo"), "effect"] == pytest.approx(-0.4) and fid.loc[
        ("weak", "ppo"), "effect"
    ] == pytest.approx(0.0)


def test_primary_is_the_gold_source_only_averaged_over_lines(built):
    root, out = built
    html = (out / "report.html").read_text()
    box = html.split("<section class='answer' id='answer'>", 1)[1].split("</section>", 1)[0]
    seeds = pd.read_csv(out / "phase_seed_effects.csv")
    want = seeds[seeds["source"] == "gold"].groupby("seed")["effect"].mean()  # the declared primary, by hand
    m = float(re.search(r"slope of gold_gain_late on dial ([+-]\d\.\d+) per unit", box).group(1))
    assert m == pytest.approx(want.mean(), abs=6e-4) and m == pytest.approx(EFFECT, abs=6e-4)
    assert (
        "Primary (source = gold, mean over optimizer): Dose-response detected: gold_gain_late falls" in box
        and "restricted to source = gold" not in box
    )  # method note is below
    assert "at source = gold only" in box and "phase_diagram.png" in box
    assert box.index("phase_diagram.png") < box.index("at source = gold only")  # the figure before the method note
    for (
        ln
    ) in LINES:  # one sentence per line: the gold cell leaves the band, the others are inside; first differs at gold
        sent = next(x for x in re.findall(r"<li><strong>(.*?)</strong></li>", box) if x.startswith(f"{ln}:"))
        assert "the 95% interval is wholly beyond it at gold (rho 1.00" in sent and "inside it at rho0.6, weak" in sent
        assert "first, going down from rho 1, at gold" in sent
    assert not (out / "dose_response.png").exists() and (out / "phase_diagram.png").is_file()
    slopes = pd.read_csv(out / "phase_rho_slopes.csv").set_index("line")
    hand = np.polyfit([1.0, 0.6, 0.15], [EFFECT, 0, 0], 1)[0]
    assert slopes.loc["ppo", "slope"] == pytest.approx(hand, abs=0.01) and slopes.loc["ppo", "hi"] < 0


def test_a_null_study_with_tight_seeds_is_equivalent_within_the_margin(tmp_path):
    from rlhfsim.report.fig_phase import phase_answer_into

    ctx = {"answer": {}, "sections": []}
    phase_answer_into(load_study([make_phase_study(tmp_path, effect=0.0, noise=0.002)]), ctx, tmp_path)
    lines = ctx["answer"]["verdicts"]
    assert lines[0].startswith(
        "Primary (source = gold, mean over optimizer): Equivalent within ±0.02 (margin declared"
    ), lines[0]
    for ln, text in zip(LINES, lines[1:3]):
        assert text.startswith(
            f"{ln}: against the ±0.02 band, the 95% interval is outside it at no source; inside it at gold, rho0.6, weak"
        )
        assert text.endswith("The effect differs from 0 at no source (Holm over the cells).")
    assert [s.title.split(":")[0] for s in ctx["sections"]][:2] == ["Closed vs open prompts", "Gold at matched KL"]


def test_the_figure_draws_a_line_per_optimiser_at_measured_rho_with_the_band(built):
    res = fig_phase_diagram(load_study([built[0]]))
    ax = res.fig.axes[0]
    mains = [ln for ln in ax.lines if ln.get_label().endswith("95% paired t interval")]
    assert [m.get_label().split(":")[0] for m in mains] == list(LINES)
    assert mains[0].get_color() != mains[1].get_color()
    xs = np.sort(mains[0].get_xdata())  # dodged by -0.006 for the first of two lines
    assert np.allclose(xs, np.array([0.15, 0.6, 1.0]) - 0.006, atol=0.01)
    band = [pt for pt in ax.patches if abs(pt.get_height() - 2 * MARGIN) < 1e-9] if ax.patches else []
    assert band or any("band" in t.get_text() for t in ax.get_legend().get_texts())
    assert "±0.02 equivalence band" in res.caption


def test_gold_at_matched_kl_on_constructed_trajectories():
    kl0, g0 = np.array([0.0, 0.1, 0.2, 0.3]), np.array([0.3, 0.4, 0.5, 0.6])  # gold = 0.3 + KL
    kl1, g1 = np.array([0.0, 0.2, 0.4, 0.6]), np.array([0.3, 0.5, 0.7, 0.9])  # the same curve, twice as far
    k, a, b = PH.matched_kl((kl0, g0), (kl1, g1))
    assert k == pytest.approx(0.3) and a == pytest.approx(0.6) and b == pytest.approx(0.6)  # no effect at matched KL
    assert PH.gold_at_kl(np.array([0.0, 0.2, 0.1, 0.4]), np.array([0, 2, 1, 4.0]), 0.15) == pytest.approx(
        1.5
    )  # first crossing
    assert np.isnan(PH.gold_at_kl(kl0, g0, 0.5))


def test_band_sentence_on_a_constructed_table():
    cells = pd.DataFrame(
        {
            "line": "ppo",
            "source": ["gold", "mid", "weak"],
            "rho": [1.0, 0.5, 0.1],
            "effect": [-0.06, -0.01, 0.0],
            "lo": [-0.08, -0.03, -0.01],
            "hi": [-0.04, 0.01, 0.01],
            "p_holm": [0.001, 0.3, 0.9],
            "lo_adj": [-0.09, -0.04, -0.02],
            "hi_adj": [-0.03, 0.02, 0.02],
            "n": 6,
        }
    )
    s = PH.band_sentence(cells, "ppo", 0.02)
    assert s.startswith(
        "ppo: against the ±0.02 band, the 95% interval is wholly beyond it at gold (rho 1.00: -0.060 [-0.080, -0.040]); "
        "reaching outside it at mid (rho 0.50: -0.010 [-0.030, +0.010]); inside it at weak."
    )
    assert "differs from 0 (Holm p < 0.05) at gold; first, going down from rho 1, at gold (rho 1.00" in s


@needs_chromium
def test_first_screen_shows_question_verdict_and_phase_diagram(built, tmp_path):
    spans = first_screen((built[1] / "report.html").read_text(), tmp_path)
    assert all(0 <= top < 900 for top, _ in spans), (
        spans
    )  # question, first verdict and the phase diagram start on screen
    assert spans[2][1] - spans[2][0] > 200  # the figure, not a sliver


def test_band_sentence_without_intervals_gives_the_effects_and_no_verdict():
    cells = pd.DataFrame(
        {
            "line": "rloo",
            "source": ["gold", "weak"],
            "rho": [1.0, 0.12],
            "effect": [0.002, -0.032],
            "lo": np.nan,
            "hi": np.nan,
            "p_holm": np.nan,
            "lo_adj": np.nan,
            "hi_adj": np.nan,
            "n": 1,
        }
    )
    s = PH.band_sentence(cells, "rloo", 0.02)
    assert (
        s
        == "rloo: no interval yet (fewer than 2 complete seeds); the dial effects: gold (rho 1.00) +0.002, weak (rho 0.12) -0.032."
    )
