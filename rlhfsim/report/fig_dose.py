"""The dose-response figure: per group (e.g. optimiser) a column; rows dose -> advantage fidelity -> gold gain (and
the collapse of the reward the optimiser saw, where runs log it). Seeds thin, the mean with its 95% t interval bold,
controls (arms off the dose) as labelled horizontal reference lines with their interval as a band."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from rlhfsim.report import dose as DR
from rlhfsim.report.plots import FigureResult, pyplot, seaborn_theme

ROW_LABELS = {
    "mean/adv/gold_corr": "advantage fidelity\n(corr. with gold advantage)",
    "gold_gain": "gold gain\n(final − SFT)",
    "mean/surgery/shape_rel": "collapse of the reward\nthe optimiser saw",
}
CONTROL_STYLES = ("#7a3b9a", "#c0392b", "#1f7a4d", "#8c6d1f")


def _mean_ci(y: np.ndarray) -> tuple[float, float, float]:
    y = y[np.isfinite(y)]
    if y.size == 0:
        return np.nan, np.nan, np.nan
    m = float(y.mean())
    if y.size < 2:
        return m, np.nan, np.nan
    h = float(stats.t.ppf(0.975, y.size - 1) * y.std(ddof=1) / np.sqrt(y.size))
    return m, m - h, m + h


def rows_for(frame: pd.DataFrame, primary: str) -> list[str]:
    """Endpoints drawn, top to bottom along the causal chain: the collapse the optimiser saw (where logged), fidelity, the primary."""
    out = [
        e for e in (DR.FIDELITY[0], primary) if e in frame and pd.to_numeric(frame[e], errors="coerce").notna().any()
    ]
    proxy = next(
        (f"mean/{c}" for c in DR.PROXY_COLLAPSE if f"mean/{c}" in frame and frame[f"mean/{c}"].notna().any()), None
    )
    return ([proxy] if proxy else []) + out


def fig_dose_response(
    study,
    pal=None,
    band=None,
    primary: str = "gold_gain",
    margin: float | None = None,
    where: dict | None = None,
) -> FigureResult:
    key, title = "dose_response", "Dose-response: dose -> advantage fidelity -> gold gain"
    d = DR.design(study)
    if d is not None:
        title = f"Dose-response: {d.dose} -> advantage fidelity -> {primary}" + (f", per {d.group}" if d.group else "")
    if d is None:
        return FigureResult(key, title, "", None, "the experiment names no dose factor")
    frame = DR.dose_frame(study, d)
    if frame.empty:
        return FigureResult(
            key, title, "", None, "no complete seed yet (a seed enters when every variant has finished)"
        )
    eps = rows_for(frame, primary)
    tab = DR.slope_table(study, d, primary).set_index(["endpoint", "group"])
    seaborn_theme()
    groups = d.groups
    fig, axes = pyplot().subplots(
        len(eps),
        len(groups),
        figsize=(3.4 * len(groups) + 0.6, 2.5 * len(eps) + 0.7),
        squeeze=False,
        sharex=True,
        sharey="row",
    )
    seeds = sorted(frame["seed"].unique())
    handles = {}
    for i, ep in enumerate(eps):
        y_all = pd.to_numeric(frame[ep], errors="coerce")
        arms = frame[~frame["control"]].assign(y=y_all)
        lo_ax, hi_ax = np.nanmin(arms["y"]), np.nanmax(arms["y"])
        span = max(hi_ax - lo_ax, 1e-6)
        for j, g in enumerate(groups):
            ax = axes[i, j]
            sub = arms[arms["group"] == g]
            for sd in seeds:  # seeds as thin lines
                s = sub[sub["seed"] == sd].sort_values("dose")
                (h,) = ax.plot(s["dose"], s["y"], color="#4c72b0", lw=0.8, alpha=0.45, marker=".", ms=3)
                handles.setdefault("one seed", h)
            m = [_mean_ci(sub[sub["dose"] == x]["y"].to_numpy(float)) for x in d.doses]
            mean, lo, hi = (np.array(c) for c in zip(*m))
            (h,) = ax.plot(d.doses, mean, color="#17365d", lw=2.6, marker="o", ms=6, zorder=5)
            handles.setdefault("mean over seeds, 95% t interval", h)
            if np.isfinite(lo).any():
                ax.errorbar(
                    d.doses,
                    mean,
                    yerr=[mean - lo, hi - mean],
                    fmt="none",
                    ecolor="#17365d",
                    elinewidth=2,
                    capsize=4,
                    zorder=5,
                )
            if (
                ep == primary and margin and np.isfinite(mean[0])
            ):  # where a dial effect within the declared margin keeps the arms
                xs = np.asarray(d.doses, float)
                h = ax.fill_between(
                    xs,
                    mean[0] - margin * (xs - xs[0]),
                    mean[0] + margin * (xs - xs[0]),
                    color="#2a7d2a",
                    alpha=0.13,
                    lw=0,
                    zorder=1,
                )
                handles.setdefault(f"equivalence band: ±{margin:g} per unit {d.dose}", h)
            sides, drawn = _controls(
                ax, frame.assign(y=y_all), d.controls, lo_ax - 0.6 * span, hi_ax + 0.6 * span, handles
            )
            r = tab.loc[(ep, g)] if (ep, g) in tab.index else None
            ci = f" [{r['lo_t']:+.3f}, {r['hi_t']:+.3f}]" if r is not None and np.isfinite(r["lo_t"]) else ""
            ax.set_title(
                f"{g}\nslope {r['slope']:+.3f}{ci}, n={int(r['n'])}"
                if r is not None and np.isfinite(r["slope"])
                else g,
                fontsize=10.5,
            )
            if j == 0:
                ax.set_ylabel(ROW_LABELS.get(ep, ep), fontsize=11)
            if i == len(eps) - 1:
                ax.set_xlabel(
                    f"{d.dose} ({d.key}; 1 = fully collapsed)" if d.key == "surgery.dial" else f"{d.dose} ({d.key})",
                    fontsize=10.5,
                )
            ax.set_xticks(d.doses)
            ax.tick_params(labelsize=10)
        # room for the off-scale notes at the panel edges, so they never sit on the data (rows share y)
        # y from the seeds' values and the drawn controls: a wide interval (few seeds) is cut at the edge, not the data squashed
        y0, y1 = min([lo_ax, *drawn]), max([hi_ax, *drawn])
        y0, y1 = y0 - 0.08 * max(y1 - y0, 1e-6), y1 + 0.08 * max(y1 - y0, 1e-6)
        axes[i, 0].set_ylim(y0 - 0.16 * (y1 - y0) * (False in sides), y1 + 0.16 * (y1 - y0) * (True in sides))
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="lower center",
        ncol=min(4, len(handles)),
        fontsize=10.5,
        frameon=False,
        bbox_to_anchor=(0.5, -0.01),
    )
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) > 4), 1, 1))
    logged = eps[0].removeprefix("mean/") in DR.PROXY_COLLAPSE
    cap = (
        f"{len(seeds)} complete seed(s) (every variant finished): each thin line is one seed across the {d.dose} arms of a "
        f"{d.group or 'group'} (arms of a seed share the SFT policy and prompts); bold: the mean over seeds with its 95% t interval. "
        f"Panel titles: the mean per-seed OLS slope per unit {d.dose} with its 95% t interval (the Answer box tests "
        + (
            f"the slope of {', '.join(d.groups_where(where))} only, the declared primary's restriction"
            if where
            else f"their mean across {d.group or 'groups'}"
        )
        + f"). Horizontal lines: controls off the dose ({', '.join(d.controls) or 'none'}), mean over the same seeds "
        "with their 95% interval as a band (left out when wider than the arms' range), drawn in every column for reference; a control far outside the arms' range is "
        "printed at the panel edge instead. The y range follows the seeds' values: an interval reaching past it (few seeds) is cut at the edge. "
        + (
            f"Green: the equivalence band of the primary, the declared margin ±{margin:g} per unit {d.dose} around the lowest dose's "
            "mean (a dose-response inside it is one the study calls equivalent to none). "
            if margin
            else ""
        )
        + (
            f"Top row: {eps[0]}, the mean over trained rounds of the collapse of the rewards after surgery (higher = more "
            "collapsed). "
            if logged
            else f"The collapse of the reward the optimiser saw (after surgery) is not logged by these runs: "
            f"the {d.dose} sets it by construction (0 = the reward model's own profile, 1 = one shared profile)."
        )
    )
    return FigureResult(key, title, cap, fig)


def _controls(
    ax, frame: pd.DataFrame, controls: list[str], lo: float, hi: float, handles: dict
) -> tuple[set[bool], list[float]]:
    """Each control's mean (line) and 95% interval (band); off-scale ones as an edge note so the arms stay readable."""
    edge, drawn = [], []
    for k, c in enumerate(controls):
        y = frame[frame["variant"] == c]["y"].to_numpy(float)
        m, clo, chi = _mean_ci(y)
        if not np.isfinite(m):
            continue
        col = CONTROL_STYLES[k % len(CONTROL_STYLES)]
        if lo <= m <= hi:
            h = ax.axhline(m, color=col, lw=1.4, ls="--", zorder=2)
            drawn.append(m)
            if (
                np.isfinite(clo) and chi - clo <= (hi - lo) / 2.2
            ):  # a band wider than the arms' range would only veil the panel
                ax.axhspan(max(clo, lo), min(chi, hi), color=col, alpha=0.10, lw=0, zorder=1)
            handles.setdefault(f"control: {c} (no dose)", h)
        else:
            edge.append((m > hi, f"{c} (control) {m:.3f} {'above' if m > hi else 'below'}", col))
    for above, txt, col in edge:
        n = [e[0] for e in edge[: edge.index((above, txt, col))]].count(above)  # stack notes on one side
        ax.annotate(
            txt + (" ↑" if above else " ↓"),
            xy=(0.98, (0.97 - 0.08 * n) if above else (0.03 + 0.08 * n)),
            xycoords="axes fraction",
            ha="right",
            va="top" if above else "bottom",
            fontsize=9,
            color=col,
        )
    return {above for above, _, _ in edge}, drawn
