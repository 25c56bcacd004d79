"""The report's public plotting helpers: what every report figure shares (the result type, the colour per arm, seed
bands, per-round line panels, one legend per figure). Figure modules import these names; nothing in the report package
imports another module's underscore names (tests/report/test_registry.py checks).

    res = FigureResult(key, title, caption, fig)      # fig None with `skipped` = why nothing was drawn
    pal = palette(study.variants, study.baseline)     # one colour per arm, the baseline grey
    round_panels(study, pal, band, [(column, y label, panel title), ...], (width, height))

matplotlib and seaborn come through rlhfsim.plotting (Agg backend, the theme), which is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rlhfsim.plotting import GOLD_LABEL, ROUND_LABEL, int_rounds, pyplot, seaborn_theme
from rlhfsim.report.bands import metric_bounds, seed_interval
from rlhfsim.report.facets import row_height, row_legends
from rlhfsim.report.select import PROXY_PREFIXES, gold_source_variants, variant_groups

__all__ = [
    "BASELINE_GREY",
    "GOLD_LABEL",
    "R2_ADEQUATE",
    "ROUND_LABEL",
    "FigureResult",
    "Section",
    "band_text",
    "errorbar",
    "has",
    "int_rounds",
    "legend_once",
    "lineplot",
    "palette",
    "pyplot",
    "round_panels",
    "seaborn_theme",
]


@dataclass
class FigureResult:
    key: str  # file stem, e.g. fig1_gold_proxy
    title: str
    caption: str
    fig: object | None  # matplotlib Figure
    skipped: str | None = None  # why there is no figure


@dataclass
class Section:
    """A titled table of the report: header, rows of strings, and a note under it (both back-ends render it)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str


BASELINE_GREY = (0.45, 0.45, 0.45)
R2_ADEQUATE = 0.5  # a fitted curve with R² below this is not drawn as a finding (faded, or left out)


def palette(variants: list[str], baseline: str | None = None, keys: dict[str, str] | None = None) -> dict[str, tuple]:
    """One fixed colour per variant (in study order), shared by every figure; the baseline (if given) is grey.
    With `keys` (select.colour_keys: variant -> level of the colour factor) variants of one level share a colour."""
    sns = seaborn_theme()
    others = [v for v in variants if v != baseline]
    levels = list(dict.fromkeys((keys or {}).get(v, v) for v in others))
    base = sns.color_palette("colorblind", 10) if len(levels) <= 10 else sns.color_palette("husl", len(levels))
    base = [c for c in base if max(c) - min(c) > 0.15] + [c for c in base if max(c) - min(c) <= 0.15]  # greys last
    colour = {lev: tuple(base[i]) for i, lev in enumerate(levels)}
    out = {v: colour[(keys or {}).get(v, v)] for v in others}
    if baseline in variants:
        out = {baseline: BASELINE_GREY, **out}
    return {v: out[v] for v in variants}


def errorbar(band: str, col: str | None = None):
    """seaborn's band: the bootstrap CI of the mean (inside the seeds' values), or mean +- sd clipped to the metric's
    range by definition where it has one (an accuracy's sd band near 1 would otherwise leave [0, 1])."""
    if band == "ci":
        return ("ci", 95)
    bounds = metric_bounds(col) if col else None
    return "sd" if bounds is None else (lambda v: seed_interval(v, "sd", bounds))


def band_text(band: str) -> str:
    return (
        "95% bootstrap CI of the mean over seeds"
        if band == "ci"
        else "±1 standard deviation over seeds, clipped to the metric's range where it has one by definition"
    )


def has(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and pd.to_numeric(df[col], errors="coerce").notna().any()


def lineplot(ax, df, y, study, pal, band, **kw):
    sns = seaborn_theme()
    if str(y).startswith(PROXY_PREFIXES):  # a gold-source arm has no proxy: its reward-model columns are not drawn
        df = df[~df["variant"].isin(gold_source_variants(study))]
    d = df[["variant", "seed", "round", y]].copy()
    d[y] = pd.to_numeric(d[y], errors="coerce")
    d = d.dropna(subset=[y])
    order = [v for v in study.variants if v in set(d["variant"])]
    if d.empty:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        return
    # thin per-seed lines under the mean, so the number of seeds and their spread stay visible
    sns.lineplot(
        data=d,
        x="round",
        y=y,
        hue="variant",
        hue_order=order,
        palette=pal,
        units="seed",
        estimator=None,
        lw=0.6,
        alpha=0.35,
        legend=False,
        ax=ax,
    )
    sns.lineplot(
        data=d,
        x="round",
        y=y,
        hue="variant",
        hue_order=order,
        palette=pal,
        errorbar=errorbar(band, y),
        n_boot=200,
        seed=0,
        marker="o",
        markersize=4,
        ax=ax,
        **kw,
    )


def legend_once(fig, axes, extra_handles=()):
    """One legend for the whole figure above the panels; with several rows of variant groups (panels laid out by
    select.variant_groups), one legend per row right of the row instead, each naming only that row's variants."""
    rows: dict[int, list] = {}
    for ax in axes:
        spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
        rows.setdefault(spec.rowspan.start if spec is not None else 0, []).append(ax)
    if len(rows) > 1:
        row_legends([rows[k] for k in sorted(rows)])
        if extra_handles:
            fig.legend(
                list(extra_handles),
                [h.get_label() for h in extra_handles],
                loc="upper center",
                ncol=len(extra_handles),
                frameon=False,
                bbox_to_anchor=(0.5, 1.0),
            )
        return
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels and not ll.startswith("_"):
                handles.append(hh)
                labels.append(ll)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    for h in extra_handles:
        handles.append(h)
        labels.append(h.get_label())
    if handles:
        fig.legend(
            handles, labels, loc="upper center", ncol=min(len(labels), 4), frameon=False, bbox_to_anchor=(0.5, 1.0)
        )


def round_panels(study, pal, band, panels, size: tuple[float, float], xlabel: str = ROUND_LABEL):
    """One panel per logged metric of `panels` [(column, y label, panel title)], each its per-round mean over seeds
    with bands; a row of panels per variant group (variant_groups). Returns (fig, axes of the first row, the panels
    drawn), or None when none of the columns was logged."""
    m = study.metrics
    panels = [p for p in panels if has(m, p[0])]
    if not panels:
        return None
    groups = variant_groups(study)
    h = row_height(size[1], len(groups))
    fig, grid = pyplot().subplots(
        len(groups), len(panels), figsize=(size[0] * len(panels), h * len(groups)), squeeze=False
    )
    for axes, (label, vs) in zip(grid, groups):
        mg = m[m["variant"].isin(vs)]
        for ax, (col, ylabel, sub) in zip(axes, panels):
            lineplot(ax, mg, col, study, pal, band)
            ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{sub}\n({label})" if label else sub)
            int_rounds(ax)
    return fig, list(grid.ravel()), panels
