"""The study's answer: paired comparisons of its primary and secondary endpoints, the verdict sentence and
the effect-size (forest) figure.

    comps = comparisons(study)          # tidy: one row per (family, variant, endpoint)
    lines = verdicts(study, comps)      # the Answer box: one sentence per variant on the primary endpoint
    fig_effect_sizes(study, comps)      # delta vs the baseline with paired 95% intervals, per endpoint

Families: the primary endpoint across the variants (Holm over variants when there are several), and the
secondary endpoints x variants (Holm over all of them), as the experiment file declares them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from rlhfsim.report.plots import FigureResult, Section, pyplot
from rlhfsim.report.stats import MIN_P_SEEDS, compare, verdict
from rlhfsim.report.tables import finished

DEFAULT_PRIMARY = {"endpoint": "gold_gain", "better": "higher"}


def endpoints(study) -> tuple[dict, list[dict], bool]:
    """(primary, secondary, declared): the experiment's, or gold_gain when no experiment file declares one."""
    if study.primary:
        return study.primary, list(study.secondary), True
    return DEFAULT_PRIMARY, list(study.secondary), False


def comparisons(study) -> pd.DataFrame:
    primary, secondary, _ = endpoints(study)
    done = finished(study)
    fams = [compare(done, study.variants, study.baseline, [primary], "primary")]
    if secondary:
        fams.append(compare(done, study.variants, study.baseline, secondary, "secondary"))
    return pd.concat(fams, ignore_index=True)


def verdicts(study, comps: pd.DataFrame) -> list[str]:
    """One sentence per non-baseline variant from the primary family."""
    prim = comps[comps["family"] == "primary"]
    if prim.empty:
        return [f"No comparison: only the baseline {study.baseline!r} has finished runs."]
    lines = [verdict(r, study.baseline) for _, r in prim.iterrows()]
    return ([summary_sentence(lines, study.baseline)] if len(lines) > SUMMARY_ABOVE else []) + lines


SUMMARY_ABOVE = 4  # more verdicts than this: one sentence counting them comes first


def summary_sentence(lines: list[str], baseline: str) -> str:
    """How many of the verdicts fall in each class, read off their own wording (stats.verdict)."""
    classes = {
        "better": lambda t: ": better" in t,
        "worse": lambda t: ": worse" in t,
        "equivalent within the margin": lambda t: t.startswith("Equivalent"),
        "inconclusive": lambda t: t.startswith("Inconclusive"),
        "no effect detected": lambda t: t.startswith("No effect detected"),
        "not called": lambda t: t.startswith("Not called"),
    }
    counts = {k: sum(bool(f(t)) for t in lines) for k, f in classes.items()}
    said = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return f"In summary, {len(lines)} arms against {baseline}: {said or 'no verdict'}."


def fig_effect_sizes(study, comps: pd.DataFrame) -> FigureResult:
    """Forest plot: per endpoint a panel, per variant the paired difference to the baseline with its 95% interval."""
    key, title = "effect_sizes", "Effect sizes: difference to the baseline per endpoint, paired by seed"
    c = comps[np.isfinite(comps["diff"].astype(float))] if not comps.empty else comps
    if c.empty:
        return FigureResult(key, title, "", None, "no endpoint has a value in both a variant and the baseline")
    eps = list(dict.fromkeys(c["endpoint"]))
    variants = [v for v in study.variants if v in set(c["variant"])]
    ncol = min(3, len(eps))
    nrow = int(np.ceil(len(eps) / ncol))
    h = max(1.6, 0.32 * len(variants) + 0.9)
    fig, axes = pyplot().subplots(nrow, ncol, figsize=(4.6 * ncol, h * nrow), squeeze=False, sharey=True)
    ys = {v: i for i, v in enumerate(reversed(variants))}
    for ax, ep in zip(axes.ravel(), eps):
        sub = c[c["endpoint"] == ep]
        for _, r in sub.iterrows():
            y = ys[r["variant"]]
            # the interval drawn is the one at the comparison's Holm step level: colour and line use one correction
            lo, hi = (r["lo_adj"], r["hi_adj"]) if np.isfinite(r.get("lo_adj", np.nan)) else (r["lo"], r["hi"])
            sig = np.isfinite(lo) and (lo > 0 or hi < 0) and (r["p_holm"] < 0.05 or r["n"] < MIN_P_SEEDS)
            good = (r["diff"] > 0) == (r["better"] == "higher")
            col = ("#2a7d2a" if good else "#b03a2e") if sig else "#555555"
            if np.isfinite(lo):
                ax.plot([lo, hi], [y, y], color=col, lw=2)
            ax.plot([r["diff"]], [y], "o", color=col, ms=6, mfc=col if sig else "white")
            shows_p = np.isfinite(r["p_holm"]) and r["n"] >= MIN_P_SEEDS  # fewer seeds: the interval only
            note = f"n={int(r['n'])}" + (f", p_Holm={r['p_holm']:.2g}" if shows_p else "")
            note += f", censored {int(r['censored'])}" if r["censored"] else ""
            ax.annotate(
                note,
                (1.0, y),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="#444",
            )
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.xaxis.set_major_locator(MaxNLocator(5))  # small differences print long tick labels: keep them apart
        fam = sub["family"].iloc[0]
        ax.set_title(f"{ep} ({fam}; {sub['better'].iloc[0]} is better)", fontsize=9)
        ax.set_xlabel(f"Δ {ep} vs {study.baseline}", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(eps) :]:
        ax.set_visible(False)
    axes[0, 0].set_yticks(list(ys.values()), list(ys.keys()))
    for row in axes:
        row[0].set_yticks(list(ys.values()), list(ys.keys()))
        for ax in row:
            ax.set_ylim(-0.6, len(variants) - 0.4)
    fig.tight_layout(w_pad=6)
    n = int(c["n"].max())
    cap = (
        f"Each point is the mean over seeds of (variant − {study.baseline}) for the same seed (n = paired seeds, up to {n}); the "
        "line is its paired interval at the level of its Holm step (1 - 0.05/(m - j) for the j-th smallest p of m; paired t below 6 "
        "seeds, expanded-percentile bootstrap from 6), so the line and the colour use one correction. Filled and coloured: the interval excludes 0 and the "
        "Holm-adjusted p < 0.05 (green: in the better direction, red: worse); hollow grey: no difference detected. Holm runs "
        "over the variants for the primary endpoint and over all secondary endpoints x variants. Censored: runs whose value "
        "is only partly observed (e.g. gold still rising in the last round)."
    )
    return FigureResult(key, title, cap, fig)


def seed_section(study):
    """Per seed: the baseline's primary value and each variant's paired difference to it (the values the Answer tests)."""
    from rlhfsim.report.stats import drop_censored

    primary = endpoints(study)[0]
    ep = primary["endpoint"]
    done = drop_censored(finished(study), ep)
    if done.empty or ep not in done or len(study.variants) < 2:
        return None
    wide = done.assign(y=pd.to_numeric(done[ep], errors="coerce")).pivot_table(
        index="seed", columns="variant", values="y"
    )
    if study.baseline not in wide:
        return None
    others = [v for v in study.variants if v != study.baseline and v in wide]
    f = lambda x: f"{x:+.3f}" if np.isfinite(x) else "–"  # noqa: E731
    rows = [
        [str(int(sd)), f(r[study.baseline])] + [f(r[v] - r[study.baseline]) for v in others]
        for sd, r in wide.iterrows()
    ]
    return Section(
        f"Per-seed values of the primary ({ep})",
        ["run seed", f"{study.baseline} (baseline)", *[f"{v} − baseline" for v in others]],
        rows,
        "The paired differences the Answer's test uses, seed by seed ('–': no finished run, or a censored value).",
    )
