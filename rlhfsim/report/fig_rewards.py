"""Per-completion reward figures from rewards/round_XXX.parquet: distributions (fig4) and sorted within-prompt
profiles (fig5), faceted by the experiment's design factors (select.variant_groups) so no panel has more than
MAX_COLOURS variants besides the baseline, and no figure is taller than the page shows (facets.row_height)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from rlhfsim.report.facets import row_height, row_legends
from rlhfsim.report.plots import FigureResult, int_rounds, pyplot, seaborn_theme
from rlhfsim.report.select import factor_value, variant_groups


def scale_proxy(df: pd.DataFrame) -> pd.Series:
    """Proxy on [0,1] per run and round: kept if it already lies in [0,1] (bounded rewards), else min-max scaled."""

    def f(x: pd.Series) -> pd.Series:
        x = pd.to_numeric(x, errors="coerce")
        fin = x[np.isfinite(x)]
        if fin.empty:
            return x
        if fin.min() >= 0 and fin.max() <= 1:
            return x
        lo, hi = fin.min(), fin.max()
        return (x - lo) / (hi - lo) if hi > lo else x * 0 + 0.5

    return df.groupby(["run", "round"], group_keys=False)["proxy"].apply(f)


def _groups(study, present: set) -> list[tuple[str, list[str]]]:
    out = [(label, [v for v in vs if v in present]) for label, vs in variant_groups(study)]
    return [(label, vs) for label, vs in out if vs]


def fig_distributions(study, pal, rewards: pd.DataFrame, rounds: list[int]) -> FigureResult:
    """Columns: measure (proxy, gold) x prompt type; rows: variant groups; boxes per round, coloured by variant."""
    plt = pyplot()
    key, title = "fig4_reward_distributions", "Reward distributions per prompt type"
    if rewards.empty or "prompt_type" not in rewards:
        return FigureResult(key, title, "", None, "no rewards/round_XXX.parquet for the chosen rounds")
    sns = seaborn_theme()
    df = rewards.copy()
    df["proxy (0-1 scaled)"] = scale_proxy(df) if "proxy" in df else np.nan
    long = df.melt(
        id_vars=["variant", "seed", "round", "prompt_type"],
        value_vars=["proxy (0-1 scaled)", "gold"],
        var_name="measure",
        value_name="reward",
    )
    long = long.dropna(subset=["reward"])
    types = sorted(long["prompt_type"].dropna().unique())
    measures = [m for m in ["proxy (0-1 scaled)", "gold"] if (long["measure"] == m).any()]
    if not types or not measures:
        return FigureResult(key, title, "", None, "rewards parquet files have no finite proxy or gold values")
    groups = _groups(study, set(long["variant"]))
    cols = [(m, t) for m in measures for t in types]
    h = row_height(3.8, len(groups))
    fig, grid = plt.subplots(
        len(groups), len(cols), figsize=(4.4 * len(cols), h * len(groups)), squeeze=False, sharey=True
    )
    for i, (label, vs) in enumerate(groups):
        for j, (meas, t) in enumerate(cols):
            ax = grid[i][j]
            sub = long[(long["measure"] == meas) & (long["prompt_type"] == t) & long["variant"].isin(vs)]
            if sub.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # seaborn 0.13 on matplotlib >= 3.11 (vert=)
                    warnings.simplefilter("ignore", PendingDeprecationWarning)
                    sns.boxplot(
                        data=sub,
                        x="round",
                        y="reward",
                        hue="variant",
                        hue_order=vs,
                        palette=pal,
                        order=rounds,
                        fliersize=1.5,
                        linewidth=0.8,
                        ax=ax,
                    )
            sub_title = f"{t} prompts: {meas.split(' ')[0]}"
            ax.set_title(f"{sub_title}\n({label})" if label else sub_title, fontsize=9.5)
            ax.set(
                xlabel="round" if i == len(groups) - 1 else "",
                ylim=(-0.05, 1.05),
                ylabel=("proxy reward (0-1, scaled per run)" if meas != "gold" else "gold reward (0-1)")
                if j == 0
                else "",
            )
    row_legends(grid)
    fig.tight_layout()
    cap = (
        f"Per-completion rewards on the held-out prompts at rounds {', '.join(map(str, rounds))}, pooled over seeds. "
        "Proxy is shown on [0,1]: bounded rewards as they are, logits min-max scaled per run and round. Collapse shows as open "
        "and closed proxy distributions of the same shape although their gold distributions differ"
        + (" (closed gold is 0 or 1)." if "closed" in types else ".")
    )
    if len(groups) > 1:
        cap += " One row per group of variants (the experiment's design factors), each beside the baseline."
    return FigureResult(key, title, cap, fig)


def fig_profiles(study, pal, rewards: pd.DataFrame, rounds: list[int]) -> FigureResult:
    """Sorted within-prompt reward profiles (the look of Song et al.'s reward-vs-response-index figure): a panel per
    variant (rows: variant groups), colour = round (light to dark), line style = prompt type."""
    plt = pyplot()
    key, title = "fig5_sorted_profiles", "Sorted within-prompt reward profiles (collapse)"
    if rewards.empty or "proxy" not in rewards or not pd.to_numeric(rewards["proxy"], errors="coerce").notna().any():
        return FigureResult(key, title, "", None, "no proxy rewards in the parquet files of the chosen rounds")
    sns = seaborn_theme()
    df = rewards.copy()
    df["p01"] = scale_proxy(df)
    df = df.dropna(subset=["p01"])
    rounds = [r for r in rounds if (df["round"] == r).any()]
    if not rounds:
        return FigureResult(key, title, "", None, "no proxy rewards at the chosen rounds")
    df["rank"] = df.groupby(["run", "round", "prompt_id"])["p01"].rank(method="first", ascending=True).astype(int)
    groups = _groups(study, set(df["variant"]))
    types = sorted(df["prompt_type"].dropna().unique())
    styles = ["-", "--", ":", "-."]
    shades = sns.color_palette("crest", len(rounds)) if len(rounds) > 1 else [(0.1, 0.3, 0.5)]
    ncol = max(len(vs) for _, vs in groups)
    h = row_height(3.3, len(groups))
    fig, grid = plt.subplots(len(groups), ncol, figsize=(3.5 * ncol + 1.5, h * len(groups)), squeeze=False, sharey=True)
    for i, (label, vs) in enumerate(groups):
        for j in range(ncol):
            ax = grid[i][j]
            if j >= len(vs):
                ax.set_visible(False)
                continue
            v = vs[j]
            for rd, shade in zip(rounds, shades):
                for k, t in enumerate(types):
                    st = df[(df["round"] == rd) & (df["variant"] == v) & (df["prompt_type"] == t)]
                    if not st.empty:
                        sns.lineplot(
                            data=st,
                            x="rank",
                            y="p01",
                            color=shade,
                            linestyle=styles[k % len(styles)],
                            errorbar="sd",
                            ax=ax,
                            legend=False,
                            err_kws={"alpha": 0.12},
                        )
            ax.set_title(
                f"{v}{' (baseline)' if v == study.baseline else ''}",
                fontsize=9.5,
                color=tuple(pal.get(v, (0, 0, 0))) if v != study.baseline else "black",
            )
            ax.set(
                xlabel="response index (sorted by proxy)" if i == len(groups) - 1 else "",
                ylabel="proxy reward (0-1 scaled)" if j == 0 else "",
                ylim=(-0.05, 1.05),
            )
            int_rounds(ax)
        if label:
            grid[i][0].annotate(label, (0, 1.16), xycoords="axes fraction", fontsize=9.5, fontweight="bold")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="black", ls=styles[k % len(styles)], label=f"{t} prompts") for k, t in enumerate(types)
    ] + [Line2D([], [], color=c, lw=2.5, label=f"round {rd}") for rd, c in zip(rounds, shades)]
    grid[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8.5)
    fig.tight_layout()
    cap = (
        "Each prompt's completions sorted by proxy reward (lowest first); lines are the mean over prompts and seeds, bands ±1 sd "
        "(clipped by the [0, 1] axis). One panel per variant; colour is the round (light = early, dark = late), line style "
        "the prompt type." + (" Collapse: open and closed profiles coincide." if len(types) > 1 else "")
    )
    if len(groups) > 1:
        cap += " One row per group of variants (the experiment's design factors), each beside the baseline."
    if any(
        factor_value(study, v, "reward.prompt_aware") for _, vs in groups for v in vs
    ):  # only a study with such a variant is told
        cap += " A prompt-aware utility should keep closed profiles step-like (0 or 1) and open profiles spread."
    return FigureResult(key, title, cap, fig)
