"""Reports from fabricated run directories: files, figures, tables, missing data, and a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from rlhfsim.cli import main
from rlhfsim.report.load import load_study
from rlhfsim.report.stats import paired_effect
from rlhfsim.report.tables import final_table
from tests.fixtures.browser import check_rendered_page, chromium_cmd, needs_chromium, probe_dom
from tests.fixtures.studies import (
    QUESTION,
    ROOT,
    edit_config,
    edit_configs,
    edit_metrics,
    fab_run,
    html_images,
    make_study,
    md_images,
)


def test_report_from_tiny_runs(ab_report):
    _, out = ab_report
    for f in ("report.html", "report.md", "summary.csv"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0

    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    imgs = md_images(md)
    assert len(pngs) >= 6  # gold/proxy, by type, Gao, distributions, profiles, collapse, advantage
    assert sorted(imgs) == pngs and len(html_images(html)) == len(imgs)
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5000
    import base64

    assert all(base64.b64decode(b)[:4] == b"\x89PNG" for b in html_images(html))
    assert "src='http" not in html and "<script" not in html  # self-contained
    assert QUESTION in md and QUESTION in html

    # summary.csv: one row per run with summary fields and final metrics
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == 4 and set(s["variant"]) == {"low_kl", "high_kl"} and sorted(s["seed"]) == [0, 0, 1, 1]
    for col in (
        "gold_final",
        "gold_peak",
        "gold_peak_round",
        "stagnation_round",
        "kl_final",
        "collapse_probe_shape_rel_final",
        "wall_time_s",
        "final/eval/gold",
    ):
        assert col in s.columns, col
    assert np.allclose(s["gold_final"], s["final/eval/gold"])

    # the final table: a row per variant, baseline first, mean ± std and a paired interval for the other
    final = md.split("## Final table per variant")[1].split("\n## ")[0]
    rows = [ln for ln in final.splitlines() if ln.startswith("| low_kl") or ln.startswith("| high_kl")]
    table = [ln for ln in rows if "±" in ln]
    assert len(table) == 2 and table[0].startswith("| low_kl (baseline) | 2 |")
    assert "Δ" in table[1] and "Δ" not in table[0]
    hi = s[s["variant"] == "high_kl"]["gold_final"].to_numpy()
    lo = s[s["variant"] == "low_kl"]["gold_final"].to_numpy()
    assert f"{lo.mean():.3f} ± {lo.std(ddof=1):.3f}" in table[0]
    assert f"{hi.mean():.3f} ± {hi.std(ddof=1):.3f}" in table[1]
    by_seed = s.set_index("seed")
    w = paired_effect(
        by_seed[by_seed["variant"] == "high_kl"]["gold_final"], by_seed[by_seed["variant"] == "low_kl"]["gold_final"]
    )
    assert f"Δ {w['diff']:+.3f} [{w['lo']:+.3f}, {w['hi']:+.3f}]" in table[1]
    # what differs: the KL coefficient, and nothing about seeds or names
    assert re.search(r"\| optimizer\.kl_coef \| 0\.01 \| 0\.2 \|", md)
    assert "| seed |" not in md and "output.variant" not in md
    assert "Nothing missing" in md


def test_final_table_against_baseline(study_root):
    study = load_study([study_root])
    assert study.baseline == "low_kl" and study.variants == ["low_kl", "high_kl"] and study.question == QUESTION
    ft = final_table(study)
    assert set(ft["variant"]) == {"low_kl", "high_kl"}
    row = ft[(ft["variant"] == "high_kl") & (ft["metric"] == "gold_final")].iloc[0]
    assert row["n"] == 2 and row["n_pairs"] == 2 and row["n_baseline"] == 2 and row["lo"] <= row["diff"] <= row["hi"]
    assert ft[ft["variant"] == "low_kl"]["diff"].isna().all()


@pytest.mark.slow  # a whole report build
def test_report_of_partial_and_mixed_runs_says_what_is_missing(study_root, tmp_path):
    (study_root / "high_kl" / "seed1" / "summary.json").unlink()  # killed run
    (study_root / "low_kl" / "seed1" / "rewards" / "round_003.parquet").unlink()
    (study_root / "low_kl" / "seed1" / "rewards" / "round_001.parquet").write_text("not parquet")
    lines = (study_root / "high_kl" / "seed0" / "metrics.jsonl").read_text().splitlines()
    (study_root / "high_kl" / "seed0" / "metrics.jsonl").write_text(
        "\n".join(lines[:2]) + '\n{"round": 2, "eval/go'
    )  # torn
    only_cfg = study_root / "extra" / "seed0"
    only_cfg.mkdir(parents=True)
    shutil.copy(study_root / "low_kl" / "seed0" / "config.yaml", only_cfg / "config.yaml")
    bare = study_root / "bare" / "seed3"
    bare.mkdir(parents=True)
    out = tmp_path / "rep"
    assert main(["report", str(study_root), "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    missing = md.split("## Missing data", 1)[1]
    assert "high_kl/seed1" in missing and "no summary.json" in missing
    assert (
        "low_kl/seed1" in missing
        and "round_003" in missing.replace("round(s) 3", "round_003")
        and "unreadable" in missing
    )
    assert "no metrics.jsonl" in missing and "no config.yaml" in missing and "bare/seed3" in missing
    # 'extra' reused low_kl's config.yaml, so it is a low_kl run by its config: still reported, not an error
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == 6
    assert set(s["status"]) >= {"finished", "unfinished", "empty"}
    assert len(md_images(md)) == len(html_images((out / "report.html").read_text())) >= 5


@pytest.mark.slow  # a whole report build
def test_report_of_one_variant_folder_expects_only_that_variant(study_root, tmp_path):
    """A report over runs/<exp>/<variant> folders is a selection: the experiment's other variants are not 'missing',
    but a seed the selected variant lacks still is."""
    shutil.rmtree(study_root / "high_kl" / "seed1")
    out = tmp_path / "rep"
    assert main(["report", str(study_root / "high_kl"), "-o", str(out)]) == 0
    missing = (out / "report.md").read_text().split("## Missing data", 1)[1]
    assert "low_kl/seed" not in missing  # not selected, so not expected
    assert "high_kl/seed1: no run directory" in missing
    assert (
        main(["report", str(study_root), "-o", str(tmp_path / "whole")]) == 0
    )  # the whole experiment still expects it
    assert "high_kl/seed1: no run directory" in (tmp_path / "whole" / "report.md").read_text()


def test_report_from_a_run_dir_missing_files(tmp_path):
    d = fab_run(tmp_path / "runs" / "solo", "only", 0, 0.05, 0.0)
    (d / "summary.json").unlink()
    shutil.rmtree(d / "rewards")
    out = tmp_path / "rep"
    assert main(["report", str(d), "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    missing = md.split("## Missing data", 1)[1]
    assert "no summary.json" in missing and "no rewards/round_XXX.parquet" in missing and "the question" in missing
    assert "Not drawn" in md  # distributions need the parquet files
    assert len(md_images(md)) == len(list(out.glob("*.png"))) == len(html_images((out / "report.html").read_text()))


@pytest.mark.slow  # a whole report build
def test_report_from_experiment_yaml_and_bad_inputs(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        yaml.safe_dump(
            {
                "name": "study",
                "question": QUESTION,
                "base_overrides": {"device": "cpu"},
                "variants": {"low_kl": {}, "high_kl": {}, "never_run": {}},
                "seeds": [0, 1],
            }
        )
    )
    root = tmp_path / "runs" / "study"
    for seed in (0, 1):
        fab_run(root, "low_kl", seed, 0.01, 0.0)
        fab_run(root, "high_kl", seed, 0.2, 0.05)
    out = tmp_path / "rep"
    assert (
        main(["report", str(exp), "--runs", str(tmp_path / "runs"), "-o", str(out), "--rounds", "1,2", "--band", "ci"])
        == 0
    )
    md = (out / "report.md").read_text()
    assert QUESTION in md and "never_run/seed0: no run directory" in md
    assert main(["report", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert main(["report", str(exp), "--runs", str(tmp_path / "empty"), "-o", str(out)]) == 2  # no runs at all
    assert main(["report", str(root), "-o", str(out), "--rounds", "x"]) == 2
    assert main(["report", str(root), "-o", str(out), "--baseline", "nope"]) == 2
    assert "nope" in capsys.readouterr().out


def test_palette_is_one_fixed_colour_per_variant():
    from rlhfsim.report.figures import palette

    p = palette(["a", "b", "c"])
    assert list(p) == ["a", "b", "c"] and len(set(p.values())) == 3
    assert palette(["a", "b", "c"]) == p
    assert len(set(palette([f"v{i}" for i in range(14)]).values())) == 14


@needs_chromium
def test_report_renders_in_headless_chromium(ab_report, tmp_path):
    import matplotlib.image as mpimg

    _, out = ab_report
    shot = tmp_path / "shot.png"
    cmd = chromium_cmd(tmp_path) + [
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        (out / "report.html").resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[0] >= 2900 and img.shape[1] >= 1100
    assert img.std() > 0.05  # not a blank page
    # rendered figures: the non-baseline variant's colour (the baseline is grey) fills more pixels than the swatches of a page without images (~3k)
    mx, mn = img.max(-1), img.min(-1)
    saturated = ((mx - mn) > 0.35).sum()
    assert saturated > 5_000, saturated

    # every embedded figure decodes, at most MAX_FIGURE_PX tall as rendered
    html = (out / "report.html").read_text()
    n_img = len(html_images(html))
    dom = probe_dom(html, tmp_path)
    assert f'data-probe="{n_img}:{n_img}"' in dom, (n_img, re.findall(r'data-probe="[^"]*"', dom))
    check_rendered_page(dom, n_img)


# ----------------------------------------------------------------------------- answer, degenerate studies, stale summaries


def test_answer_box_and_effect_sizes(tmp_path):
    root = make_study(tmp_path)
    rec = yaml.safe_load((root / "experiment.yaml").read_text())
    rec.update(
        primary={"endpoint": "gold_final", "better": "higher"},
        secondary=[{"endpoint": "kl_final", "better": "lower"}],
        headline=["effect_sizes"],
    )
    (root / "experiment.yaml").write_text(yaml.safe_dump(rec))
    out = tmp_path / "rep"
    assert main(["report", str(root), "-o", str(out)]) == 0
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    box = html.split("<section class='answer' id='answer'>", 1)[1].split("</section>", 1)[0]
    assert "high_kl" in box and "gold_final" in box and "paired t, 2 seeds" in box and "effect_sizes.png" in box
    assert html.index("id='answer'") < html.index("id='table'")  # the answer comes before the tables
    eff = pd.read_csv(out / "effects.csv")
    assert set(eff["family"]) == {"primary", "secondary"} and set(eff["endpoint"]) == {"gold_final", "kl_final"}
    s = pd.read_csv(out / "summary.csv").set_index(["variant", "seed"])["gold_final"]
    d = (s["high_kl"] - s["low_kl"]).mean()
    assert eff[eff["endpoint"] == "gold_final"]["diff"].iloc[0] == pytest.approx(d)
    assert f"{d:+.3f}" in box
    assert (out / "effect_sizes.png").is_file() and "## Answer" in md


def test_degenerate_study_gets_no_policy_figures(tmp_path):
    """One round of reward-model training alone: no curves over rounds, nothing about the policy."""
    root = tmp_path / "runs" / "rm_only"
    for v in ("a", "b"):
        for seed in (0, 1):
            d = fab_run(root, v, seed, 0.05, 0.0, rounds=1)
            edit_config(d, lambda c: c["loop"].update(train_policy=False))
            edit_metrics(d, lambda r: r.update({"eval/kl": 0.0, "eval/sqrt_kl": 0.0}))
    out = tmp_path / "rep"
    out.mkdir()
    (out / "fig1_gold_proxy_kl.png").write_bytes(b"stale: an earlier report of this folder drew it")
    (out / "notes.png").write_bytes(b"the user's")
    assert main(["report", str(root), "-o", str(out)]) == 0
    from rlhfsim.report.select import POLICY_FIGURES, ROUND_FIGURES

    assert not (out / "fig1_gold_proxy_kl.png").exists()  # a figure left out is not left behind from an older page
    assert (out / "notes.png").read_bytes() == b"the user's"

    drawn = {p.stem for p in out.glob("*.png")} - {"notes"}
    assert not drawn & (set(POLICY_FIGURES) | set(ROUND_FIGURES)), drawn & (set(POLICY_FIGURES) | set(ROUND_FIGURES))
    assert "fig4_reward_distributions" in drawn and "effect_sizes" in drawn
    md = (out / "report.md").read_text()
    assert "`fig7_advantage_fidelity`: the policy was not trained" in md  # fig3 is an over-optimisation page's
    assert "`fig6_collapse`: 1 feedback round(s)" in md


@pytest.mark.slow  # a whole report build
def test_summary_written_by_older_code_is_recomputed_and_flagged(tmp_path):
    root = make_study(tmp_path)
    old = root / "high_kl" / "seed0" / "summary.json"
    s = json.loads(old.read_text())
    true_final = s["gold_final"]
    for k in ("code_version", "code_hash", "metric_schema"):
        s.pop(k)
    s["gold_final"] = 123.0  # what an older definition might have written
    old.write_text(json.dumps(s))
    study = load_study([root])
    row = study.summary.set_index(["variant", "seed"]).loc[("high_kl", 0)]
    assert row["gold_final"] == pytest.approx(true_final)
    note = study.version_note()
    assert note and "different code versions" in note and "unstamped" in note and "gold_final" in note
    out = tmp_path / "rep"
    assert main(["report", str(root), "-o", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "class='versions'" in html and "unstamped" in html
    # the same study with every summary from the current code: no flag
    fresh = make_study(tmp_path / "fresh")
    assert load_study([fresh]).version_note() is None


COMMITTED = sorted((ROOT / "reports").rglob("report.html"))  # nested pages too (reports/propagation/goldshape)


@needs_chromium
@pytest.mark.parametrize("page", COMMITTED, ids=[str(p.parent.relative_to(ROOT / "reports")) for p in COMMITTED])
def test_committed_report_renders(page, tmp_path):
    html = page.read_text()
    assert "id='answer'" in html, (
        f"{page.parent} has no Answer box: written by older report code, regenerate it from its runs"
    )
    dom = probe_dom(html, tmp_path)
    n_img = len(html_images(html))
    assert f'data-probe="{n_img}:{n_img}"' in dom
    check_rendered_page(dom, n_img)


def test_a_gold_reward_arm_draws_no_proxy_curve(tmp_path):
    """issue 30: the gold arm's placeholder proxy (an unused reward model) is not plotted beside the learned arms'."""
    from rlhfsim.report.figures import fig_gold_proxy, palette

    root = make_study(tmp_path)
    edit_configs(root, "high_kl", lambda c: c["loop"].update(reward_source="gold"))
    study = load_study([root])
    pal = palette(study.variants, study.baseline)
    res = fig_gold_proxy(study, pal)
    gold_ax, proxy_ax = res.fig.axes[0], res.fig.axes[1]
    colour = lambda ax: {tuple(np.round(ln.get_color()[:3], 3)) for ln in ax.lines if len(ln.get_xdata())}  # noqa: E731
    gold_rgb = tuple(np.round(pal["high_kl"][:3], 3))
    assert gold_rgb in colour(gold_ax) and gold_rgb not in colour(proxy_ax)


def test_rendered_page_check_reads_no_commit_hash_as_a_number():
    """A commit such as 49e0167 in the reproduction block is not the number 4.9e+168; a real absurd number still fails."""
    dom = "<div data-answer='1'></div><p data-heights='100'>Runs written by: code 02f3e89de6ef (git {}; metric schema 2)</p>"
    check_rendered_page(dom.format("49e0167").replace("'", '"'), 1)
    with pytest.raises(AssertionError):
        check_rendered_page(dom.format("49e0167").replace("'", '"') + "<p>gold 4.9e+168</p>", 1)
