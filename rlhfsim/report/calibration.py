"""Reward-quality calibration (experiments/rm_quality.yaml): how good is each ranking source against gold, and how
much of the gold ceiling's gain does the optimiser get from it?

    calibration_table(study)   one row per variant: source, seeds, pairwise accuracy and within-prompt Spearman
                               against gold (overall and per prompt type) at round 1 and at the last round, the gold
                               gain and its share of the ceiling's (paired by seed), and the round cost
    fig_calibration(study)     the headline: proxy gain share against measured within-prompt Spearman

Drawn when the experiment lists `calibration` among its headline figures. The ceiling is the arm whose runs
optimise gold (loop.reward_source: gold); the cost reference is the study's baseline. The gain is `gold_gain_late`:
mean held-out gold over the last two thirds of rounds minus the SFT policy's (round 0), less noisy than the final
round alone. Measured ranking quality is the phase-6 diagnosis: the source (after round r's training) against gold
on held-out samples of the policy (at round 1: the SFT policy's), rlhfsim.diagnostics.collapse/advantage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.report.plots import FigureResult, Section, pyplot, seaborn_theme

TYPES = (
    "",
    "closed_",
    "open_",
)  # overall, then per type; metric names rm/<t>pairwise_acc, rm/<t>within_prompt_spearman
N_BOOT = 10_000


def _source(run) -> str:
    cfg = run.config or {}
    return str(cfg.get("loop", {}).get("reward_source", "learned"))


def late_gain(m: pd.DataFrame) -> float:
    """Mean eval/gold over the last two thirds of rounds (1..R) minus round 0's, for one run's metrics."""
    g = m.set_index("round")["eval/gold"].astype(float)
    rounds = sorted(r for r in g.index if r >= 1)
    if 0 not in g.index or not rounds:
        return float("nan")
    late = rounds[len(rounds) // 3 :]
    return float(g.loc[late].mean() - g.loc[0])


def per_run(study) -> pd.DataFrame:
    """One row per run: variant, seed, source, gain, round cost, and the agreement metrics at round 1 and last."""
    rows = []
    for r in study.runs:
        m = r.metrics
        if m is None or m.empty or "eval/gold" not in m:
            continue
        row = {
            "variant": r.variant,
            "seed": r.seed,
            "source": _source(r),
            "gain": late_gain(m),
            "last_round": int(m["round"].max()),
        }
        trained = m[m["round"] >= 1]
        row["round_seconds"] = float(trained["time/round"].mean()) if "time/round" in trained else np.nan
        for when, sub in (("r1", m[m["round"] == 1]), ("last", m[m["round"] == m["round"].max()])):
            for t in TYPES:
                for name in ("pairwise_acc", "within_prompt_spearman"):
                    col = f"rm/{t}{name}"
                    row[f"{t}{name}_{when}"] = float(sub[col].iloc[0]) if col in sub and len(sub) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def share_interval(gain: pd.Series, ceiling: pd.Series, seed: int = 0) -> tuple[float, float, float]:
    """mean(gain) / mean(ceiling gain) over the seeds both have, with a paired seed-bootstrap 95% interval."""
    both = pd.concat([gain, ceiling], axis=1, keys=["g", "c"]).dropna()
    if both.empty or both["c"].mean() <= 0:
        return np.nan, np.nan, np.nan
    g, c = both["g"].to_numpy(), both["c"].to_numpy()
    idx = np.random.default_rng(seed).integers(0, len(g), size=(N_BOOT, len(g)))
    den = c[idx].mean(1)
    ratios = np.where(den > 0, g[idx].mean(1) / np.where(den > 0, den, 1), np.nan)
    lo, hi = np.nanpercentile(ratios, [2.5, 97.5]) if len(g) > 1 else (np.nan, np.nan)
    return float(g.mean() / c.mean()), float(lo), float(hi)


def calibration_table(study) -> pd.DataFrame:
    """One row per variant, in study order (module docstring)."""
    runs = per_run(study)
    if runs.empty:
        return pd.DataFrame()
    ceiling = next((v for v in study.variants if (runs[runs["variant"] == v]["source"] == "gold").any()), None)
    cg = runs[runs["variant"] == ceiling].set_index("seed")["gain"] if ceiling else pd.Series(dtype=float)
    base_cost = runs[runs["variant"] == study.baseline]["round_seconds"].mean()
    out = []
    for v in study.variants:
        sub = runs[runs["variant"] == v]
        if sub.empty:
            continue
        share, lo, hi = share_interval(sub.set_index("seed")["gain"], cg) if ceiling else (np.nan,) * 3
        row = {
            "variant": v,
            "source": sub["source"].iloc[0],
            "seeds": len(sub),
            "gold_gain_late": sub["gain"].mean(),
            "gain_share": share,
            "gain_share_lo": lo,
            "gain_share_hi": hi,
            "round_seconds": sub["round_seconds"].mean(),
            "round_cost_vs_baseline": sub["round_seconds"].mean() / base_cost,
        }
        for c in sub.columns:
            if c.endswith(("_r1", "_last")):
                row[c] = sub[c].mean()
        out.append(row)
    return pd.DataFrame(out)


def write_calibration(study, out_dir) -> list:
    """calibration.csv beside the report, when the experiment asks for the calibration headline."""
    if "calibration" not in study.headline:
        return []
    tab = calibration_table(study)
    path = out_dir / "calibration.csv"
    tab.to_csv(path, index=False)
    return [path]


def fig_calibration(study, pal=None, band=None) -> FigureResult:
    key, title = (
        "calibration",
        "How much of the gold ceiling's gain each ranking source gives, against its measured ranking quality",
    )
    if "calibration" not in study.headline:
        return FigureResult(key, title, "", None, "the experiment does not ask for the calibration headline")
    runs = per_run(study)
    tab = calibration_table(study)
    if runs.empty or tab["gain_share"].isna().all():
        return FigureResult(key, title, "", None, "no gold-source (ceiling) arm with finished runs")
    seaborn_theme()
    fig, axes = pyplot().subplots(1, 2, figsize=(12, 4.8))
    colours = pal or {}
    ceiling = runs[runs["source"] == "gold"].set_index("seed")["gain"]
    for ax, when, label in ((axes[0], "r1", "round 1"), (axes[1], "last", "last round")):
        for v in tab["variant"]:
            sub = runs[runs["variant"] == v].set_index("seed")
            if (sub["source"] == "gold").all():
                continue
            x = sub[f"within_prompt_spearman_{when}"]
            y = sub["gain"] / ceiling.mean() if len(ceiling) else sub["gain"] * np.nan
            col = colours.get(v, "#4c72b0")
            ax.scatter(x, y, s=14, alpha=0.45, color=col)
            r = tab[tab["variant"] == v].iloc[0]
            xm = float(x.mean())
            ax.errorbar(
                [xm],
                [r["gain_share"]],
                yerr=[[r["gain_share"] - r["gain_share_lo"]], [r["gain_share_hi"] - r["gain_share"]]],
                fmt="o",
                ms=8,
                color=col,
                ecolor=col,
                capsize=4,
                zorder=5,
            )
            ax.annotate(v, (xm, r["gain_share"]), xytext=(5, 5), textcoords="offset points", fontsize=9)
        ax.axhline(1.0, color="#1f7a4d", ls="--", lw=1.2)
        ax.axhline(0.6, color="#c0392b", ls=":", lw=1.2)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel(f"within-prompt Spearman of the source with gold\n({label}, held-out samples of the policy)")
        ax.set_title(f"ranking quality measured at {label}", fontsize=11)
        ax.set_ylabel("gold gain as a share of the gold ceiling's")
    fig.tight_layout()
    cap = (
        "Each small dot is one seed (its late gold gain over the mean ceiling gain), each large dot an arm's mean share "
        "with its paired seed-bootstrap 95% interval (ratio of means over the seeds both arms have). Green dashed: the gold "
        "ceiling (share 1); red dotted: the realistic preset's target share 0.6. Left: ranking quality measured after "
        "round 1's training on the SFT policy's samples; right: at the last round on the current policy's. Gain: mean "
        "held-out gold over the last two thirds of rounds minus SFT's."
    )
    return FigureResult(key, title, cap, fig)


def _f(x: float, fmt: str = "{:.2f}") -> str:
    return fmt.format(x) if np.isfinite(x) else ""


def calibration_section(study):
    """The calibration table as a report section (only when the experiment asks for the calibration headline)."""
    if "calibration" not in study.headline:
        return None
    tab = calibration_table(study)
    if tab.empty:
        return None
    header = [
        "variant",
        "source",
        "seeds",
        "acc r1 (closed / open)",
        "acc last (closed / open)",
        "Spearman r1 (closed / open)",
        "Spearman last (closed / open)",
        "late gold gain",
        "share of ceiling [95%]",
        "round s (x baseline)",
    ]
    rows = []
    for _, r in tab.iterrows():
        # called within this iteration, so the loop variable is the current one
        trio = lambda name, when: (
            f"{_f(r[f'{name}_{when}'])} ({_f(r[f'closed_{name}_{when}'])} / {_f(r[f'open_{name}_{when}'])})"  # noqa: B023
        )
        rows.append(
            [
                r["variant"],
                r["source"],
                str(r["seeds"]),
                trio("pairwise_acc", "r1"),
                trio("pairwise_acc", "last"),
                trio("within_prompt_spearman", "r1"),
                trio("within_prompt_spearman", "last"),
                _f(r["gold_gain_late"], "{:+.3f}"),
                f"{_f(r['gain_share'])} [{_f(r['gain_share_lo'])}, {_f(r['gain_share_hi'])}]",
                f"{_f(r['round_seconds'], '{:.1f}')} ({_f(r['round_cost_vs_baseline'])}x)",
            ]
        )
    note = (
        "Agreement with gold of the ranking source the optimiser saw, on held-out samples of the policy: at round 1 after "
        "round 1's reward training, on the SFT policy's samples; at the last round on the current policy's (pairwise "
        "accuracy: share of gold-ordered pairs the source orders the same way, 0.5 = chance; within-prompt Spearman: mean "
        "over prompts). A gold-source arm is the ceiling (its rm/* columns describe an untrained reward model it never uses). "
        "Late gold gain: mean held-out gold over the last two thirds of rounds minus SFT's; share: ratio of mean gains over "
        "the seeds both arms have, paired seed-bootstrap 95% interval. Round seconds: mean time/round, runs sharing the "
        "machine (sweep --jobs), relative to the baseline arm."
    )
    return Section("Ranking quality against gold, and the share of the gold ceiling's gain", header, rows, note)
