"""Seaborn figures of a Study. Each builder returns a FigureResult: a figure, or None with the reason it was left out.

Every figure uses the same variant -> colour mapping (`palette`), labelled axes with units, and bands
over seeds (standard deviation by default). The shared helpers are public in report/plots.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.overopt import fit_gao, gao_rl
from rlhfsim.report.facets import row_height, top_margin
from rlhfsim.report.plots import (  # noqa: F401 (FigureResult, palette: re-exported for the figures' callers)
    GOLD_LABEL,
    R2_ADEQUATE,
    ROUND_LABEL,
    FigureResult,
    band_text,
    has,
    int_rounds,
    legend_once,
    lineplot,
    palette,
    pyplot,
    round_panels,
)
from rlhfsim.report.select import config_values, variant_groups

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- 1. gold, proxy, KL over rounds


def fig_gold_proxy(study, pal, band="sd") -> FigureResult:
    plt = pyplot()
    from matplotlib.lines import Line2D

    key, title = "fig1_gold_proxy_kl", "Gold and proxy reward over rounds"
    m = study.metrics
    if m.empty or not has(m, "eval/gold"):
        return FigureResult(key, title, "", None, "no run logged eval/gold")
    panels = [
        ("eval/gold", GOLD_LABEL, "gold (true) reward"),
        ("eval/proxy", "proxy reward (reward-model scale)", "proxy (learned) reward"),
        ("eval/kl", "KL(policy ‖ SFT) per completion (nats)", "KL to the reference"),
    ]
    panels = [
        p for p in panels if p[0] == "eval/gold" or has(m, p[0])
    ]  # e.g. no proxy panel when every arm optimises gold
    groups = variant_groups(study)
    fig, grid = plt.subplots(
        len(groups), len(panels), figsize=(5 * len(panels), row_height(4.6, len(groups)) * len(groups)), squeeze=False
    )
    for axes, (label, vs) in zip(grid, groups):
        for ax, (col, ylabel, sub) in zip(axes, panels):
            lineplot(ax, m[m["variant"].isin(vs)], col, study, pal, band)
            ax.set(xlabel=ROUND_LABEL, ylabel=ylabel, title=f"{sub}\n({label})" if label else sub)
            int_rounds(ax)
    axes = list(grid.ravel())
    # peak and stagnation markers per run, on the gold panel of the run's row
    s = study.summary
    row_of = {v: i for i, (_, vs) in enumerate(groups) for v in vs[1:]} | {study.baseline: 0}
    for _, row in s.iterrows():
        ax = grid[row_of.get(row["variant"], 0), 0]
        colour = pal.get(row["variant"], "grey")
        pr, pg = row.get("gold_peak_round"), row.get("gold_peak")
        if pd.notna(pr) and pd.notna(pg):
            ax.scatter([pr], [pg], marker="*", s=170, color=colour, edgecolor="black", linewidth=0.7, zorder=5)
        st = row.get("stagnation_round")
        if pd.notna(st):
            runm = m[(m["run"] == row["run"]) & (m["round"] == st)]
            if not runm.empty and pd.notna(runm["eval/gold"].iloc[0]):
                ax.scatter(
                    [st],
                    [runm["eval/gold"].iloc[0]],
                    marker="v",
                    s=80,
                    color=colour,
                    edgecolor="black",
                    linewidth=0.7,
                    zorder=5,
                )
    stalled = "stagnation_round" in s and s["stagnation_round"].notna().any()
    extra = [
        Line2D(
            [],
            [],
            marker="*",
            ls="",
            color="grey",
            markeredgecolor="black",
            markersize=12,
            label="peak gold (per seed)",
        )
    ]
    if stalled:
        extra.append(
            Line2D(
                [],
                [],
                marker="v",
                ls="",
                color="grey",
                markeredgecolor="black",
                markersize=8,
                label="stagnation onset (per seed)",
            )
        )
    legend_once(fig, axes, extra)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = f"Mean over seeds with bands of {band_text(band)}, on the fixed held-out prompts. Stars mark each seed's peak gold"
    cap += (
        "; triangles the round from which gold stopped rising while the policy kept moving (stagnation). "
        if stalled
        else " (no seed stagnated). "
    )
    utilities = len(config_values(study, "reward.utility")) > 1 or len(config_values(study, "reward.prompt_aware")) > 1
    if any(p[0] == "eval/proxy" for p in panels):
        cap += (
            "Proxy is on each reward model's own scale"
            + (" (not comparable across utilities)" if utilities else "")
            + "; "
        )
    cap += "KL is the k1 estimate per completion." if any(p[0] == "eval/kl" for p in panels) else ""
    return FigureResult(key, title, cap, fig)


# ----------------------------------------------------------------------------- 2. per prompt type


def fig_by_type(study, pal, band="sd") -> FigureResult:
    key, title = "fig2_by_prompt_type", "Gold by prompt type: open-ended quality and closed-ended accuracy"
    drawn = round_panels(
        study,
        pal,
        band,
        [
            ("eval/gold_open", GOLD_LABEL, "open prompts: gold"),
            ("eval/accuracy_closed", "share of right answers (0-1)", "closed prompts: accuracy"),
            ("eval/proxy_open", "proxy reward (reward-model scale)", "open prompts: proxy"),
            ("eval/proxy_closed", "proxy reward (reward-model scale)", "closed prompts: proxy"),
        ],
        (4.2, 4.4),
    )
    if drawn is None:
        return FigureResult(key, title, "", None, "no per-type metrics (eval/gold_open, eval/accuracy_closed) logged")
    fig, axes, drawn_panels = drawn
    legend_once(fig, axes)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = f"Per prompt type, mean over seeds ({band_text(band)})."
    if {"eval/accuracy_closed", "eval/proxy_closed"} <= {p[0] for p in drawn_panels}:
        cap += " A proxy that rises while closed accuracy falls is the cross-task exploit (closed prompts answered with open-prompt words)."
    return FigureResult(key, title, cap, fig)


# ----------------------------------------------------------------------------- 3. gold vs sqrt(KL) with the Gao fit


def fig_gao(study, pal, band="sd") -> FigureResult:
    """Per variant (a panel each): gold gain and proxy gain on one sqrt(KL) axis, seeds as thin lines, the pooled
    Gao fit of the gold gain drawn only over the observed d and faded when R^2 is low."""
    plt = pyplot()
    key, title = (
        "fig3_gold_vs_sqrt_kl",
        "Gold and proxy gain against sqrt(KL) per variant, with the fitted Gao et al. curve",
    )
    m = study.metrics
    if m.empty or not has(m, "eval/gold") or not has(m, "eval/sqrt_kl"):
        return FigureResult(key, title, "", None, "needs eval/gold and eval/sqrt_kl (or eval/kl) per round")
    cols = ["eval/gold", "eval/sqrt_kl"] + (["eval/proxy"] if "eval/proxy" in m else [])
    d = m[["variant", "seed", "run", "round", *cols]].copy()
    for c in cols:
        d[c] = pd.to_numeric(d[c], errors="coerce")
    d = d.sort_values("round")
    d["gain"] = d["eval/gold"] - d["run"].map(d.groupby("run")["eval/gold"].first())
    if "eval/proxy" in d:  # proxy gain over the first round that has a proxy (round 0, the SFT round, has none)
        d["proxy_gain"] = d["eval/proxy"] - d["run"].map(
            d.dropna(subset=["eval/proxy"]).groupby("run")["eval/proxy"].first()
        )
    d = d.dropna(subset=["gain", "eval/sqrt_kl"])
    if d.empty:
        return FigureResult(key, title, "", None, "no finite (sqrt KL, gold) points")
    order = [v for v in study.variants if v in set(d["variant"])]
    ncol = min(3, len(order))
    nrow = int(np.ceil(len(order) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 3.4 * nrow), squeeze=False, sharex=True)
    fits = []
    for ax, v in zip(axes.ravel(), order):
        dv = d[d["variant"] == v]
        for _, ds in dv.groupby("seed"):
            ax.plot(ds["eval/sqrt_kl"], ds["gain"], color=pal[v], lw=0.8, alpha=0.6, marker="o", ms=2.5)
            if "proxy_gain" in ds and ds["proxy_gain"].notna().any():
                ax.plot(ds["eval/sqrt_kl"], ds["proxy_gain"], color="black", lw=0.7, alpha=0.45, ls=":")
        f = fit_gao(dv["eval/sqrt_kl"].to_numpy(), dv["gain"].to_numpy(), form="rl")
        fits.append((v, f))
        lo_d, hi_d = float(dv["eval/sqrt_kl"].min()), float(dv["eval/sqrt_kl"].max())
        text = f"fit n/a (n={f.get('n', 0)})"
        if np.isfinite(f.get("alpha", np.nan)) and hi_d > lo_d:
            xs = np.linspace(max(lo_d, 1e-6), hi_d, 100)  # only where there are data
            r2 = float(f.get("r2", np.nan))
            weak = not (np.isfinite(r2) and r2 >= R2_ADEQUATE)
            ax.plot(
                xs,
                gao_rl(xs, f["alpha"], f["beta"]),
                color=pal[v],
                lw=1.2 if weak else 2.4,
                alpha=0.35 if weak else 1.0,
                ls="--" if weak else "-",
            )
            peak = float(f["d_peak"]) if f.get("d_peak") is not None else np.nan
            where = (
                f"peak d={peak:.2f}"
                if np.isfinite(peak) and lo_d <= peak <= hi_d
                else "peak beyond data"
                if f["beta"] > 0
                else "no peak (β ≤ 0)"
            )
            text = f"α={f['alpha']:.2g} β={f['beta']:.2g} R²={r2:.2f}, {where}"
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{v}{' (baseline)' if v == study.baseline else ''}\n{text}", fontsize=8.5)
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(order) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("sqrt(KL(policy ‖ SFT)) (√nats)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("gain over the first round", fontsize=8)
    fig.tight_layout()
    cap = (
        "One panel per variant. Coloured thin lines: each seed's gold gain (gold minus its round-0 gold) against "
        "sqrt(KL) round by round; black dotted: the same seed's proxy gain over its first scored round (reward-model "
        "scale; a retrained reward model changes that scale between rounds). Thick line: least-squares fit of "
        "R(d) = d(α − β log d) (Gao, Schulman & Hilton 2022) to the gold gain pooled over seeds, drawn only over the "
        'observed d, dashed and faded where R² < 0.5. A fitted peak outside the observed d is printed as "beyond data".'
    )
    res = FigureResult(key, title, cap, fig)
    res.fits = fits  # type: ignore[attr-defined]
    return res


# 4-5. reward distributions from the parquet files: report/fig_rewards.py


# ----------------------------------------------------------------------------- 6. collapse metrics


def fig_collapse(study, pal, band="sd") -> FigureResult:
    key, title = "fig6_collapse", "Reward-model collapse and agreement with gold over rounds"
    m = study.metrics
    drawn = round_panels(
        study,
        pal,
        band,
        [
            ("collapse/probe_shape", "profile shape similarity (1 = collapsed)", "collapse (fixed probe set)"),
            ("collapse/probe_shape_rel", "share of gold's prompt dependence lost", "collapse relative to gold"),
            ("rm/pairwise_acc", "pairwise accuracy vs gold (0-1)", "RM pairwise accuracy (held-out)"),
        ],
        (5, 4.4),
    )
    if drawn is None:
        return FigureResult(key, title, "", None, "no collapse/* or rm/pairwise_acc metrics logged")
    fig, axes, panels = drawn
    for (_, vs), row in zip(variant_groups(study), np.reshape(axes, (-1, len(panels)))):
        for ax, (col, _, _) in zip(row, panels):
            if col == "collapse/probe_shape" and has(m, "collapse/probe_shape_gold"):
                lineplot(
                    ax,
                    m[m["variant"].isin(vs)],
                    "collapse/probe_shape_gold",
                    study,
                    pal,
                    band,
                    linestyle="--",
                    legend=False,
                )
    from matplotlib.lines import Line2D

    extra = [
        Line2D([], [], color="grey", ls="-", label="reward model"),
        Line2D([], [], color="grey", ls="--", label="gold, same samples"),
    ]
    legend_once(fig, axes, extra if has(m, "collapse/probe_shape_gold") else ())
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cols = {p[0] for p in panels}
    cap = f"Mean over seeds ({band_text(band)})."
    if "collapse/probe_shape" in cols:
        cap += (
            " Collapse: 1 - the mean squared W2 distance of each prompt's standardised sorted reward profile from their "
            "barycentre, on a fixed probe set (higher = more collapsed)"
            + ("; gold on the same completions dashed." if has(m, "collapse/probe_shape_gold") else ".")
        )
    if "collapse/probe_shape_rel" in cols:
        cap += " Relative to gold: 0 = as prompt-dependent as gold, 1 = collapsed."
    if "rm/pairwise_acc" in cols:
        cap += " Pairwise accuracy is missing (not 0) in rounds where no held-out pair differs in gold."
    return FigureResult(key, title, cap, fig)


# ----------------------------------------------------------------------------- 7. advantage fidelity


def fig_advantage(study, pal, band="sd") -> FigureResult:
    key, title = "fig7_advantage_fidelity", "Advantage fidelity: proxy against gold advantages over rounds"
    drawn = round_panels(
        study,
        pal,
        band,
        [
            ("adv/gold_corr", "corr(proxy adv., gold adv.) (−1 to 1)", "per-token advantage correlation"),
            ("adv/sign_agree", "same-sign share (0-1)", "per-token sign agreement"),
            ("adv/gold_corr_seq", "corr per sequence (−1 to 1)", "per-sequence advantage correlation"),
        ],
        (5, 4.4),
        xlabel="round",
    )
    if drawn is None:
        return FigureResult(
            key, title, "", None, "no adv/* metrics in metrics.jsonl (advantage fidelity not logged by these runs)"
        )
    fig, axes, _ = drawn
    legend_once(fig, axes)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (
        f"GAE run twice on the same PPO rollouts, with the proxy score and with the gold score; averaged over the round's PPO "
        f"iterations, mean over seeds ({band_text(band)}). Falling agreement means PPO is pushed away from gold."
    )
    return FigureResult(key, title, cap, fig)
