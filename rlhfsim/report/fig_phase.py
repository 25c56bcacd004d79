"""The phase diagram page (report/phase.py's analysis): the headline figure, the Answer box, the tables and CSVs.

fig_phase_diagram(study)            x = measured within-prompt Spearman of the source with gold, y = dial effect
phase_answer_into(study, ctx, out)  the Answer box, the sections below it and phase_*.csv; [] unless a phase study
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.report import phase as PH
from rlhfsim.report.plots import FigureResult, Section, pyplot, seaborn_theme
from rlhfsim.report.stats import MIN_P_SEEDS, SMALL_NOTE

FAMILIES = {
    "primary": None,
    "closed vs open": tuple(PH.TYPED),
    "matched KL": (PH.MATCHED,),
    "advantage fidelity": PH.FIDELITY,
}
LINE_STYLES = ("-", "--", ":", "-.")


def _primary(study) -> dict:
    from rlhfsim.report.answer import endpoints

    return endpoints(study)[0]


def line_colours(lines: list[str]) -> dict[str, tuple]:
    """One colour per line level (e.g. optimiser), fixed by its order: the same on every phase figure."""
    base = seaborn_theme().color_palette("colorblind", 10)
    return {ln: tuple(base[i % 10]) for i, ln in enumerate(lines)}


def fig_phase_diagram(study, pal=None, band=None) -> FigureResult:
    key, title = (
        "phase_diagram",
        "Phase diagram: the dial's effect on gold against the ranking source's measured quality",
    )
    p = PH.phase_design(study)
    if p is None:
        return FigureResult(
            key, title, "", None, "the experiment does not declare a phase design (dose, source and one more factor)"
        )
    prim = _primary(study)
    ep, margin = prim["endpoint"], prim.get("margin")
    frame = PH.run_frame(study, p)
    cells = PH.cell_table(frame, p, ep)
    eff = PH.seed_effects(frame, ep)
    if cells["n"].fillna(0).max() < 1:
        return FigureResult(key, title, "", None, "no complete seed yet (every arm finished in a seed)")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.0))
    col = line_colours(p.lines)
    dodge = {ln: (i - (len(p.lines) - 1) / 2) * 0.012 for i, ln in enumerate(p.lines)}
    if margin:
        ax.axhspan(-margin, margin, color="#2a7d2a", alpha=0.12, lw=0, label=f"±{margin:g} equivalence band (declared)")
    ax.axhline(0, color="grey", lw=0.9)
    for i, ln in enumerate(p.lines):
        e = eff[eff["line"] == ln]
        ax.scatter(e["rho"] + dodge[ln], e["effect"], s=12, alpha=0.3, color=col[ln], lw=0)
        c = cells[cells["line"] == ln].dropna(subset=["rho", "effect"]).sort_values("rho")
        x = c["rho"].to_numpy(float) + dodge[ln]
        ax.plot(
            x,
            c["effect"],
            color=col[ln],
            ls=LINE_STYLES[i % 4],
            lw=2,
            marker="o",
            ms=7,
            label=f"{ln}: mean, 95% paired t interval",
        )
        ok = np.isfinite(c["lo"].to_numpy(float))
        ax.errorbar(
            x[ok],
            c["effect"][ok],
            yerr=[(c["effect"] - c["lo"])[ok], (c["hi"] - c["effect"])[ok]],
            fmt="none",
            ecolor=col[ln],
            elinewidth=2,
            capsize=4,
        )
    for s in p.sources:  # name each source once, above its highest point
        c = cells[cells["source"] == s].dropna(subset=["rho"])
        if len(c):
            top = np.nanmax(np.r_[c["hi"].to_numpy(float), c["effect"].to_numpy(float)])
            ax.annotate(
                s,
                (float(c["rho"].mean()), top),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=9,
                color="#333",
            )
    ax.set_xlabel(
        "measured ranking quality of the source: within-prompt Spearman with gold\n(mean over rounds, dial-0 arm, held-out samples)"
    )
    ax.set_ylabel(f"dial effect on {ep}\n(dial {max(p.dose.doses):g} − dial {min(p.dose.doses):g}, per seed)")
    ax.legend(loc="best", fontsize=8.5, frameon=True)
    fig.tight_layout()
    n = int(cells["n"].max())
    cap = (
        f"Each faint point is one seed's dial effect in one cell (its dial-{max(p.dose.doses):g} run minus its dial-{min(p.dose.doses):g} "
        f"run, the arms of a seed paired), at that seed's measured ranking quality; lines join each {p.line}'s mean over seeds "
        f"(up to {n} complete seeds) with its 95% paired t interval (unadjusted; the table gives Holm p and Holm-step intervals). "
        f"x: mean over rounds of {PH.RHO} of the {p.line}'s dial-{min(p.dose.doses):g} arm; "
        + (
            f"{', '.join(sorted(p.gold_sources))} is gold itself and sits at 1 by definition. "
            if p.gold_sources
            else ""
        )
        + (
            f"Shaded: the ±{margin:g} equivalence band declared before the run; where an interval leaves it, collapse may cost "
            "more than the margin. "
            if margin
            else ""
        )
        + f"{p.line.capitalize()} lines are dodged by ±0.006 in x so their intervals do not overlap."
    )
    return FigureResult(key, title, cap, fig)


# ----------------------------------------------------------------------------- answer, sections, CSVs


def _n(x: float, fmt: str = "{:+.3f}") -> str:
    return fmt.format(x) if x is not None and np.isfinite(x) else "n/a"


def _ci(r, adj: bool = False) -> str:
    lo, hi = (r["lo_adj"], r["hi_adj"]) if adj else (r["lo"], r["hi"])
    return f"{_n(r['effect'])} [{_n(lo)}, {_n(hi)}]" if np.isfinite(lo) else _n(r["effect"])


def _band(r, margin: float | None) -> str:
    if margin is None or not np.isfinite(r["lo"]):
        return ""
    if r["hi"] < -margin or r["lo"] > margin:
        return "beyond the band"
    return "inside the band" if r["lo"] >= -margin and r["hi"] <= margin else "leaves the band"


def _p(x: float) -> str:
    return f"{x:.2g}" if np.isfinite(x) else "n/a"


def cell_rows(cells: pd.DataFrame, margin: float | None = None) -> tuple[list[str], list[list[str]]]:
    header = [
        "endpoint",
        "source",
        "line",
        "measured rho",
        "n",
        "dial low",
        "dial high",
        "dial effect [95% t]",
        "[Holm-step interval], p (Holm p)",
    ] + (["vs band"] if margin else [])
    rows = [
        [
            r["endpoint"],
            r["source"],
            r["line"],
            _n(r["rho"], "{:.2f}"),
            str(int(r["n"])),
            _n(r["at_low_dose"]),
            _n(r["at_high_dose"]),
            _ci(r),
            f"[{_n(r['lo_adj'])}, {_n(r['hi_adj'])}]"
            + (f", p {_p(r['p'])} ({_p(r['p_holm'])})" if r["n"] >= MIN_P_SEEDS else ""),
        ]
        + ([_band(r, margin)] if margin else [])
        for _, r in cells.iterrows()
    ]
    return header, rows


def phase_answer_into(study, ctx: dict, out) -> list:
    """A phase study: the Answer box (primary verdict, one sentence per line), the sections, and the CSVs."""
    from rlhfsim.report import dose as DR

    p = PH.phase_design(study)
    if p is None:
        return []
    prim = _primary(study)
    ep, margin = prim["endpoint"], prim.get("margin")
    frame = PH.run_frame(study, p)
    fams = {name: PH.cell_table(frame, p, eps or ep) for name, eps in FAMILIES.items()}
    allc = pd.concat([t.assign(family=name) for name, t in fams.items()], ignore_index=True)
    allc.to_csv(out / "phase_cells.csv", index=False)
    slopes = PH.rho_slopes(frame, p, ep)
    slopes.to_csv(out / "phase_rho_slopes.csv", index=False)
    seeds = PH.seed_effects(frame, ep)
    seeds.to_csv(out / "phase_seed_effects.csv", index=False)
    box = DR.dose_answer(study, p.dose, DR.slope_table(study, p.dose, ep), prim)
    cells = fams["primary"]
    where = prim.get("where") or {}
    scope = (
        f"Primary ({', '.join(f'{k} = {v}' for k, v in where.items())}, mean over {p.line}): "
        if where
        else f"Primary (mean over every source and {p.line}): "
    )
    lines = [scope + box["verdicts"][0]] + [PH.band_sentence(cells, ln, margin) for ln in p.lines] + box["verdicts"][1:]
    d0, d1 = min(p.dose.doses), max(p.dose.doses)
    what = (
        f"Primary: {ep}, the dial effect (per seed: the dial-{d1:g} run minus the dial-{d0:g} run; the OLS slope per unit "
        f"{p.dose.dose} is that difference for doses 0 and 1) "
        + (f"at {', '.join(f'{k} = {v}' for k, v in where.items())} only, " if where else "")
        + f"averaged per seed over the {p.line} levels, two-sided one-sample t test over complete seeds"
        + (f", TOST at ±{margin:g} (declared margin)" if margin else "")
        + "; the MDE is a power statement from this study's "
        f"per-seed SD. Sentences per {p.line}: each source's unadjusted 95% paired t interval against the band, and where "
        f"the effect differs from 0 after Holm over the {len(cells)} cells (the Holm-step interval excludes 0). Measured rho: "
        f"mean over rounds of {PH.RHO} of the dial-{d0:g} arm"
        + (f"; {', '.join(sorted(p.gold_sources))} is gold (rho 1)" if p.gold_sources else "")
        + "."
    )
    if 0 < cells["n"].max() < MIN_P_SEEDS:
        what += f" With {int(cells['n'].max())} complete seed(s): {SMALL_NOTE}."
    ctx["answer"].update(verdicts=lines, what=what, table=cell_rows(cells, margin))
    fmt_note = (
        f"Per cell (source x {p.line}): mean over seeds of the endpoint at the lowest and highest dial, the mean per-seed dial "
        "effect with its 95% paired t interval, and beside it the interval at the cell's Holm step level with p and Holm p "
        "(Holm over every row of this table). "
    )
    secs = [
        Section(
            "Closed vs open prompts: the dial effect on each type's late gold gain",
            *cell_rows(fams["closed vs open"]),
            fmt_note
            + "Late gain: mean held-out gold of the type over the last two thirds of rounds minus SFT's (eval/gold_closed, "
            "eval/gold_open). The reward-collapse paper predicts harm where gold is polarised: closed prompts.",
        ),
        Section(
            "Gold at matched KL",
            *cell_rows(fams["matched KL"]),
            fmt_note
            + "Per seed and cell, both arms' held-out gold where each first reaches KL*, the largest KL (eval/kl) both "
            "reach, linear between the rounds around the crossing; the effect is gold(dial high) - gold(dial low) there, so a "
            "dial that only moves the policy further or less far does not count.",
        ),
        Section(
            "Score-only advantage fidelity by cell",
            *cell_rows(fams["advantage fidelity"]),
            fmt_note
            + "mean/adv/gold_corr_score, mean/adv/sign_agree_score: the advantage built from the optimiser's reward "
            "alone vs from gold on the same rollouts, mean over trained rounds (docs/metrics.md); the manipulation check of the "
            "collapse -> advantage link.",
        ),
        Section(
            f"Dependence on measured ranking quality, per {p.line}",
            [p.line, "n seeds", "slope of the dial effect on rho [95% t]", "p (Holm)"],
            [
                [
                    r["line"],
                    str(int(r["n"])),
                    f"{_n(r['slope'])} [{_n(r['lo'])}, {_n(r['hi'])}]",
                    f"{_p(r['p'])} ({_p(r['p_holm'])})" if r["n"] >= MIN_P_SEEDS else "–",
                ]
                for _, r in slopes.iterrows()
            ],
            f"Per seed and {p.line}, the OLS slope of the dial effect on {ep} on the sources' measured rho (a seed needs every "
            f"source); one-sample t across seeds, Holm over the {p.line} levels. Negative: the dial costs more where the ranking "
            "is better.",
        ),
        _seed_section(seeds, p, where, ep),
    ]
    ctx["sections"] = secs + list(ctx.get("sections", []))
    return [out / "phase_cells.csv", out / "phase_rho_slopes.csv", out / "phase_seed_effects.csv"]


def _seed_section(seeds: pd.DataFrame, p, where: dict, ep: str):
    src = str(where.get(p.source, p.sources[0])) if where else p.sources[0]
    s = (
        seeds[seeds["source"] == src]
        .pivot_table(index="seed", columns="line", values="effect")
        .reindex(columns=p.lines)
    )
    rows = [[str(sd)] + [_n(x) for x in r] + [_n(float(np.mean(r)))] for sd, r in zip(s.index, s.to_numpy(float))]
    return Section(
        f"Per-seed dial effect at {p.source} = {src} (the primary's values)",
        ["seed", *p.lines, f"mean over {p.line}"],
        rows,
        f"Each seed's dial effect on {ep} per {p.line}; the primary tests the last column across seeds.",
    )
