"""The iterated-RLHF page (report/iterated.py's analyses): per-round gold-against-KL frontiers, the proxy-gold gap by
round, the end-of-run primary table, the predictions and the in-round tables, and iterated_*.csv. Drawn only for
studies whose runs have inner_eval.jsonl.

    fig_iterated_frontiers(study, pal)       a panel per round (columns) and design factor (rows): inner gold vs sqrt(KL)
    fig_iterated_gap(study, pal, band)       eval/proxy_gold_gap and eval/proxy_gold_w1 by round per arm
    iterated_answer_into(study, ctx, out, comps)   the Answer box's table and prediction line, the sections, the CSVs
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from rlhfsim.report import iterated as IT
from rlhfsim.report.answer import endpoints
from rlhfsim.report.facets import row_height, top_margin
from rlhfsim.report.iterated_claims import arm_roles, predictions, summary_line
from rlhfsim.report.plots import FigureResult, Section, band_text, legend_once, lineplot, pyplot
from rlhfsim.report.select import factor_value, variant_groups
from rlhfsim.report.stats import MIN_P_SEEDS, verdict
from rlhfsim.report.tables import finished

log = logging.getLogger(__name__)
SQRT_KL = "sqrt(KL(policy ‖ SFT)) (√nats)"


def factor_rows(study) -> list[tuple[str, list[str]]]:
    """[(row label, [baseline, arms])]: one row per design factor, holding the arms that change only that factor from
    the baseline (one factor at a time), then the others; without factors, select.variant_groups."""
    factors = {n: k for n, k in (study.factors or {}).items() if isinstance(k, str)}
    if not factors:
        return variant_groups(study)
    base = {n: factor_value(study, study.baseline, k) for n, k in factors.items()}
    rows: dict[str, list[str]] = {}
    for v in study.variants:
        if v == study.baseline:
            continue
        diff = [n for n, k in factors.items() if factor_value(study, v, k) != base[n]]
        rows.setdefault(diff[0] if len(diff) == 1 else "other", []).append(v)
    return [(label, [study.baseline, *vs]) for label, vs in rows.items()] or [("", [study.baseline])]


def _labelled_rows(study) -> list[tuple[str, list[str]]]:
    """factor_rows with each row labelled by its factor and config key, e.g. "start: loop.policy_start"."""
    keys = {n: k for n, k in (study.factors or {}).items() if isinstance(k, str)}
    return [(f"{lab}: {keys[lab]}" if lab in keys else lab, vs) for lab, vs in factor_rows(study)]


# ----------------------------------------------------------------------------- figures


def fig_iterated_frontiers(study, pal, band=None) -> FigureResult:
    key, title = "iterated_frontiers", "Gold against KL inside each round: one frontier per round and arm"
    if not IT.has_inner(study):
        return FigureResult(key, title, "", None, "no run has inner_eval.jsonl (loop.inner_eval.every: 0)")
    inner = IT.inner_frame(study)
    if inner.empty:
        return FigureResult(key, title, "", None, "no finished run with inner evaluations")
    inner = inner.assign(x=np.sqrt(inner["kl"].clip(lower=0)))
    star = IT.matched_frame(inner).groupby("round")["kl_star"].mean()  # mean over seeds of KL*, per round
    rounds = sorted(inner["round"].unique())
    groups = [(lab, [v for v in vs if v in set(inner["variant"])]) for lab, vs in _labelled_rows(study)]
    groups = [g for g in groups if g[1]]
    plt = pyplot()
    fig, grid = plt.subplots(
        len(groups),
        len(rounds),
        figsize=(3.7 * len(rounds) + 1.6, row_height(3.4, len(groups)) * len(groups)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for axes, (label, vs) in zip(grid, groups):
        for ax, rd in zip(axes, rounds):
            cur = inner[inner["round"] == rd]
            for v in vs:
                cv = cur[cur["variant"] == v]
                for _, s in cv.groupby("seed"):  # each seed thin, so n and the spread stay visible
                    ax.plot(s["x"], s["gold"], color=pal.get(v, "grey"), lw=0.6, alpha=0.35)
                mean = cv.groupby("iteration")[["x", "gold"]].mean()
                if len(mean):
                    ax.plot(
                        mean["x"],
                        mean["gold"],
                        color=pal.get(v, "grey"),
                        lw=2.2,
                        marker="o",
                        ms=3,
                        label=f"{v} (baseline)" if v == study.baseline else v,
                    )
            if np.isfinite(star.get(rd, np.nan)):
                ax.axvline(np.sqrt(star[rd]), color="black", lw=0.9, ls=":")
            ax.set_title(f"round {rd}" + (f"\n({label})" if label else ""), fontsize=9)
            ax.tick_params(labelsize=8)
        axes[0].set_ylabel("held-out gold (inner eval)", fontsize=8.5)
    for ax in grid[-1]:
        ax.set_xlabel(SQRT_KL, fontsize=8.5)
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="black", lw=0.9, ls=":", label="matched KL: KL* of the round (mean over seeds)")]
    legend_once(fig, list(grid.ravel()), extra)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (
        "Each round's policy optimisation as a gold-against-KL curve (Gao et al. 2022; Coste et al. 2023): held-out gold "
        "of the inner evaluations (loop.inner_eval: every few policy iterations, a fixed subset of the held-out prompts, one "
        "eval stream per round) against sqrt(KL from the SFT policy), whatever the KL anchor. Thin lines: seeds; bold: the "
        "mean over seeds at each evaluation. Rows: the arms that change one design factor from the baseline (grey), "
        "columns: rounds; axes shared. Each curve starts at the round's policy start (iteration 0 is evaluated): at KL 0 "
        "for a start from SFT, further out for a policy that continues from the last round. Dotted: KL*, the largest KL every arm's round reaches in a seed (mean over seeds), where gold is "
        "compared at matched KL (table below)."
    )
    return FigureResult(key, title, cap, fig)


def fig_iterated_gap(study, pal, band="ci") -> FigureResult:
    key, title = "iterated_gap", "Proxy-gold gap and shape distance by round"
    m = study.metrics
    panels = [
        (c, lab)
        for c, lab in ((IT.GAP, "proxy-gold gap (SFT standard units)"), (IT.W1, "W1, standardised proxy vs gold"))
        if c in m and pd.to_numeric(m[c], errors="coerce").notna().any()
    ]
    if not IT.has_inner(study) or not panels:
        return FigureResult(
            key, title, "", None, "needs inner_eval.jsonl and loop.proxy_gold_gap (eval/proxy_gold_gap)"
        )
    groups = _labelled_rows(study)
    fig, grid = pyplot().subplots(
        len(groups),
        len(panels),
        figsize=(5.2 * len(panels) + 1.6, row_height(3.4, len(groups)) * len(groups)),
        squeeze=False,
        sharex=True,
    )
    for axes, (label, vs) in zip(grid, groups):
        mg = m[m["variant"].isin(vs) & (m["round"] >= 1)]
        for ax, (col, ylabel) in zip(axes, panels):
            lineplot(ax, mg, col, study, pal, band)
            if col == IT.GAP:
                ax.axhline(0, color="grey", lw=0.8, ls=":")
            ax.set(xlabel="round", ylabel=ylabel, title=f"{col}" + (f"\n({label})" if label else ""))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_once(fig, list(grid.ravel()))
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (
        f"Per round, on the full held-out set after the round's policy optimisation: the proxy-gold gap (how many SFT "
        f"standard deviations the proxy rose beyond what gold rose, docs/metrics.md) and the Wasserstein-1 distance between "
        f"the z-scored proxy and gold. Mean over seeds with {band_text(band)}; thin lines: seeds. Over-optimisation "
        "that decreases over rounds shows as a gap falling towards 0."
    )
    return FigureResult(key, title, cap, fig)


# ----------------------------------------------------------------------------- tables


def _f(x, spec: str = "{:+.3f}") -> str:
    return spec.format(x) if x is not None and np.isfinite(x) else "–"


def _verdict_class(text: str) -> str:
    for prefix, name in (
        ("Equivalent", "equivalent within the margin"),
        ("Inconclusive", "inconclusive"),
        ("No effect detected", "no effect detected"),
        ("Not called", "not called"),
    ):
        if text.startswith(prefix):
            return name
    return "better" if ": better" in text else "worse" if ": worse" in text else "no interval (< 2 seeds)"


def primary_table(study, comps: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: the primary's mean and, vs the baseline, the paired 95% interval, the Holm-step interval, Holm
    p, the TOST interval and Holm-adjusted TOST p against the declared margin, and the verdict's class."""

    ep = endpoints(study)[0]["endpoint"]
    done = finished(study)
    prim = comps[comps["family"] == "primary"].set_index("variant") if not comps.empty else pd.DataFrame()
    rows = []
    for v in study.variants:
        vals = (
            pd.to_numeric(done.loc[done["variant"] == v, ep], errors="coerce") if ep in done else pd.Series(dtype=float)
        )
        row = {
            "variant": v,
            "endpoint": ep,
            "runs": int(vals.notna().sum()),
            "mean": float(vals.mean()) if vals.notna().any() else np.nan,
        }
        if v != study.baseline and v in prim.index:
            c = prim.loc[v]
            row.update(
                {
                    k: c[k]
                    for k in (
                        "n",
                        "diff",
                        "lo",
                        "hi",
                        "lo_adj",
                        "hi_adj",
                        "level_adj",
                        "p",
                        "p_holm",
                        "margin",
                        "tost_lo",
                        "tost_hi",
                        "tost_p",
                        "equivalent",
                    )
                }
            )
            row["verdict"] = _verdict_class(verdict({**c.to_dict(), "variant": v}, study.baseline))
        rows.append(row)
    return pd.DataFrame(rows)


def primary_cells(tab: pd.DataFrame, baseline: str) -> tuple[list[str], list[list[str]]]:
    ep = tab["endpoint"].iloc[0] if len(tab) else "primary"
    header = [
        "arm",
        "seeds",
        f"{ep} (mean)",
        f"Δ vs {baseline} [95% paired]",
        "[Holm-step interval], Holm p",
        "TOST interval, TOST p (Holm)",
        "verdict",
    ]
    rows = []
    for _, r in tab.iterrows():
        if r["variant"] == baseline or not np.isfinite(r.get("diff", np.nan)):
            rows.append(
                [
                    f"{r['variant']}{' (baseline)' if r['variant'] == baseline else ''}",
                    str(r["runs"]),
                    _f(r["mean"], "{:.3f}"),
                    "–",
                    "–",
                    "–",
                    "–" if r["variant"] == baseline else "no paired seed",
                ]
            )
            continue
        p = f", {r['p_holm']:.2g}" if r["n"] >= MIN_P_SEEDS and np.isfinite(r["p_holm"]) else ""
        tost = (
            (
                f"[{_f(r['tost_lo'])}, {_f(r['tost_hi'])}]"
                + (f", {r['tost_p']:.2g}" if r["n"] >= MIN_P_SEEDS else "")
                + f" (±{r['margin']:g})"
            )
            if np.isfinite(r.get("margin", np.nan))
            else "no margin declared"
        )
        rows.append(
            [
                r["variant"],
                str(int(r["n"])),
                _f(r["mean"], "{:.3f}"),
                f"{_f(r['diff'])} [{_f(r['lo'])}, {_f(r['hi'])}]",
                f"[{_f(r['lo_adj'])}, {_f(r['hi_adj'])}]{p}",
                tost,
                r["verdict"],
            ]
        )
    return header, rows


def _by_round_rows(
    study, tab: pd.DataFrame, q: str, values: pd.DataFrame, col: str, rounds: list[int]
) -> list[list[str]]:
    """One row per arm: per round the mean over seeds, and for an arm its Δ vs the baseline with the Holm-step interval."""
    rows = []
    t = tab[tab["quantity"] == q].set_index(["variant", "round"]) if not tab.empty else pd.DataFrame()
    for v in study.variants:
        cells = [f"{v}{' (baseline)' if v == study.baseline else ''}"]
        for rd in rounds:
            x = pd.to_numeric(values.loc[(values["variant"] == v) & (values["round"] == rd), col], errors="coerce")
            cell = _f(x.mean(), "{:.3f}") + (f" (n={int(x.notna().sum())})" if x.notna().any() else "")
            if (v, rd) in t.index and np.isfinite(t.loc[(v, rd), "diff"]):
                c = t.loc[(v, rd)]
                p = f", p_Holm {c['p_holm']:.2g}" if c["n"] >= MIN_P_SEEDS and np.isfinite(c["p_holm"]) else ""
                cell += f"; Δ {_f(c['diff'])} [{_f(c['lo_adj'])}, {_f(c['hi_adj'])}]{p}"
            cells.append(cell)
        rows.append(cells)
    return rows


def sections(
    study,
    rounds: pd.DataFrame,
    runs: pd.DataFrame,
    matched: pd.DataFrame,
    by_round: pd.DataFrame,
    preds: pd.DataFrame | None,
) -> list:

    rds = sorted(rounds["round"].unique()) if not rounds.empty else []
    holm = (
        f"Δ: the arm minus {study.baseline}, paired by seed, with its interval at its Holm step level; Holm runs once over "
        f"every by-round contrast of the gap, W1 and matched-KL gold ({len(by_round)} contrasts; iterated_by_round.csv has the "
        "unadjusted 95% intervals too). p-values are printed only from 5 paired seeds up."
    )
    out = []
    if preds is not None and len(preds):
        out.append(
            Section(
                "Predictions P1-P5 against the measured quantities",
                ["prediction", "claim", "measured", "value [95% interval]", "n", "outcome", "detail"],
                [
                    [
                        r["prediction"],
                        r["claim"],
                        r["measured"],
                        (_f(r["value"], "{:+.4g}") + f" [{_f(r['lo'], '{:+.4g}')}, {_f(r['hi'], '{:+.4g}')}]")
                        if np.isfinite(r["lo"])
                        else _f(r["value"], "{:.4g}"),  # a count or a ratio: no interval, no sign
                        str(r["n"]),
                        r["outcome"],
                        r["detail"],
                    ]
                    for _, r in preds.iterrows()
                ],
                "Each prediction of the experiment file (written before the study ran), split into the parts it "
                "states, each with the quantity that decides it. Intervals: paired 95% (report/stats.py), unadjusted; "
                "holds = the interval lies on the predicted side, fails = on the other side, not shown = it covers "
                "the bound. P5's equivalence parts use the primary's Holm-adjusted TOST. iterated_predictions.csv.",
            )
        )
    for q, col, src, title in (
        ("proxy_gold_gap", IT.GAP, rounds, "Proxy-gold gap by round"),
        ("proxy_gold_w1", IT.W1, rounds, "Proxy-gold shape distance (W1) by round"),
    ):
        if col in src and pd.to_numeric(src[col], errors="coerce").notna().any():
            out.append(
                Section(
                    title,
                    ["arm", *[f"round {r}" for r in rds]],
                    _by_round_rows(study, by_round, q, src, col, rds),
                    f"Mean over seeds of {col} (docs/metrics.md) after each round; " + holm,
                )
            )
    if not matched.empty:
        ks = matched.groupby("round")["kl_star"].mean()
        rows = [["KL* (nats, mean over seeds)", *[_f(ks.get(r, np.nan), "{:.4f}") for r in rds]]]
        rows += _by_round_rows(study, by_round, "gold_at_matched_kl", matched, "gold", rds)
        out_of = matched["gold"].isna().groupby(matched["variant"]).sum()  # seed-rounds without a value at KL*
        beyond = ", ".join(f"{v} {n}" for v, n in out_of.items() if n)
        out.append(
            Section(
                "Gold at matched KL inside each round",
                ["arm", *[f"round {r}" for r in rds]],
                rows,
                "Per seed and round, KL* is the largest KL from SFT that every arm's inner curve reaches; each arm's "
                "inner gold is read where its curve first reaches KL*, linear between the evaluations around it. "
                + (
                    f"Curves that start beyond KL* (a policy continuing from the last round starts at its KL) have "
                    f"no value: nothing is extrapolated: seed-rounds without one: {beyond}. "
                    if beyond
                    else ""
                )
                + holm,
            )
        )
    if not runs.empty:
        g = rounds.pivot_table(index="variant", columns="round", values="gain")
        plat = lambda rs: ", ".join("none" if pd.isna(x) else str(int(x)) for x in rs)  # noqa: E731
        rows = [
            [
                v,
                *[_f(g.loc[v, r] if v in g.index and r in g.columns else np.nan, "{:+.4f}") for r in rds],
                plat(runs.loc[runs["variant"] == v, "plateau_round"]),
                f"{int(runs.loc[runs['variant'] == v, 'plateau_round'].notna().sum())} of {int((runs['variant'] == v).sum())}",
            ]
            for v in study.variants
        ]
        out.append(
            Section(
                "Gold gain per round and the plateau round",
                ["arm", *[f"gain r{r}" for r in rds], "plateau round by seed", "seeds plateaued"],
                rows,
                f"Gain: end-of-round eval/gold minus the previous round's (round 1: minus SFT's), mean over seeds. "
                f"Plateau round: the first round whose gain is below {IT.PLATEAU_GAIN}, per seed (none: no such round).",
            )
        )
        rows = []
        for v in study.variants:
            rv, gv = runs[runs["variant"] == v], rounds[rounds["variant"] == v]
            nr = rv["never_recovered_round"].notna()
            rows.append(
                [
                    v,
                    f"{int((rv['overopt_rounds'] != '').sum())} of {len(rv)}",
                    "; ".join(f"s{int(s)}: {o or '–'}" for s, o in zip(rv["seed"], rv["overopt_rounds"])),
                    _f(gv["inner_fall"].mean(), "{:.4f}"),
                    f"{int(nr.sum())} of {len(rv)}"
                    + (f" ({int((nr & rv['censored']).sum())} in the last round)" if nr.any() else ""),
                    ", ".join(
                        f"s{int(s)}: r{int(r)}" for s, r in zip(rv.loc[nr, "seed"], rv.loc[nr, "never_recovered_round"])
                    )
                    or "–",
                ]
            )
        out.append(
            Section(
                "Over-optimisation inside rounds, and recovery",
                [
                    "arm",
                    "seeds over-optimising",
                    "over-optimised rounds by seed",
                    "mean fall after the in-round peak",
                    "seeds never recovering",
                    "never-recovered round by seed",
                ],
                rows,
                f"An over-optimised round: its inner gold falls more than {IT.OVEROPT_FALL} below its in-round peak. "
                "Never recovering: no later round's final inner gold (same held-out subset as the peak) is above that "
                "peak; an over-optimised last round counts (the declared rule) and is flagged, as nothing after it "
                "is observed. The inner subset is small (loop.inner_eval.prompts x completions), so a 0.01 fall "
                "is near its noise.",
            )
        )
    return out


def iterated_answer_into(study, ctx: dict, out, comps: pd.DataFrame) -> list:
    """For a study with inner evaluations: the primary table and prediction line in the Answer box, the sections
    (first on the page) and iterated_*.csv; [] otherwise."""

    if not IT.has_inner(study):
        return []
    inner = IT.inner_frame(study)
    rounds = IT.round_frame(study, inner)
    runs = IT.run_frame(rounds, IT.gold_round0(study))
    matched = IT.matched_frame(inner)
    by_round = IT.round_contrasts(study, rounds, matched)
    prim = primary_table(study, comps)
    preds = predictions(study, comps, rounds, runs) if arm_roles(study) else None
    files = {
        "iterated_rounds.csv": rounds,
        "iterated_runs.csv": runs,
        "iterated_matched_kl.csv": matched,
        "iterated_by_round.csv": by_round,
        "iterated_primary.csv": prim,
    }
    if preds is not None:
        files["iterated_predictions.csv"] = preds
        ctx["answer"]["verdicts"] = list(ctx["answer"].get("verdicts", [])) + [summary_line(preds)]
    for name, df in files.items():
        df.to_csv(out / name, index=False)
    if not ctx["answer"].get("table") and len(study.variants) > 1:
        ctx["answer"]["table"] = primary_cells(prim, study.baseline)
    ctx["sections"] = sections(study, rounds, runs, matched, by_round, preds) + list(ctx.get("sections", []))
    log.info("iterated study %s: %d inner evaluations, %d run-rounds", study.name, len(inner), len(rounds))
    return [out / n for n in files]
