"""Phase-diagram studies (experiments/phase_diagram.yaml, issue 31): the dial effect per ranking source x optimiser,
placed at each source's measured ranking quality.

    p = phase_design(study)               # None unless the experiment lists the phase_diagram headline and its factors
    frame = run_frame(study, p)           # one row per finished run of a complete seed, with the per-run extras
    cells = cell_table(frame, p, "gold_gain_late")   # per (source, line): per-seed dial effect, t interval, Holm p
    slopes = rho_slopes(frame, p)         # per line: per-seed OLS slope of the dial effect on measured rho, t test

The dial effect of a seed in a cell is its per-seed OLS slope of the endpoint on the dose (with doses 0 and 1: the
dial-1 arm minus the dial-0 arm of that seed). Measured ranking quality (rho) of a source in a seed: the mean over
trained rounds of rm/within_prompt_spearman of that line's lowest-dose arm (docs/metrics.md: the reward model, or
noisy_gold's proxy, against gold within held-out prompts); a source whose arms optimise gold itself
(loop.reward_source: gold) has rho 1 by definition (its rm/* columns describe a reward model it never uses).
Intervals are paired 95% t intervals over seeds; Holm runs over the cells of one endpoint family, and the interval
printed beside a Holm p is at that cell's Holm step level (one correction for both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from rlhfsim.diagnostics.dose_response import per_seed_slopes
from rlhfsim.experiment.design import PHASE_X
from rlhfsim.report.dose import DoseDesign, design, dose_frame
from rlhfsim.report.stats import MIN_P_SEEDS, holm, holm_alphas

RHO = "rm/within_prompt_spearman"
TYPED = {"closed_gain_late": "eval/gold_closed", "open_gain_late": "eval/gold_open"}  # per-type late gold gain
FIDELITY = ("mean/adv/gold_corr_score", "mean/adv/sign_agree_score")  # score-only advantage fidelity
MATCHED = "gold_at_matched_kl"
ALPHA = 0.05


@dataclass
class PhaseDesign:
    dose: DoseDesign
    source: str  # the x factor (its levels are ranking sources)
    line: str  # the other factor: a line per level (e.g. optimizer)
    cells: dict[str, tuple[str, str]]  # dose group -> (source level, line level)
    sources: list[str]  # in the factor's declared order
    lines: list[str]
    gold_sources: set[str]  # sources that are gold itself: rho 1


def phase_design(study) -> PhaseDesign | None:
    if "phase_diagram" not in (study.headline or []):
        return None
    d = design(study)
    factors = dict(study.factors or {})
    if d is None or PHASE_X not in factors:
        return None
    others = [n for n in factors if n not in (d.dose, PHASE_X)]
    if len(others) != 1:
        return None
    line = others[0]
    cells = {g: (lv[PHASE_X], lv[line]) for g, lv in d.levels.items()}
    spec = factors[PHASE_X]
    declared = list(spec.get("levels", [])) if isinstance(spec, dict) else []
    seen = list(dict.fromkeys(s for s, _ in cells.values()))
    sources = [s for s in declared if s in seen] + [s for s in seen if s not in declared]
    lines = list(dict.fromkeys(ln for _, ln in cells.values()))
    gold = set()
    for v, (g, _) in d.arms.items():
        runs = [r for r in study.runs if r.variant == v and r.config is not None]
        if runs and all((r.config.get("loop") or {}).get("reward_source") == "gold" for r in runs):
            gold.add(cells[g][0])
    return PhaseDesign(d, PHASE_X, line, cells, sources, lines, gold)


# ----------------------------------------------------------------------------- per-run quantities


def late_gain(rounds: np.ndarray, y: np.ndarray) -> float:
    """Mean of y over the last two thirds of the trained rounds (1..R) minus round 0's (the endpoint gold_gain_late's rule)."""
    s = pd.Series(np.asarray(y, float), index=np.asarray(rounds, int)).dropna()
    trained = sorted(r for r in s.index if r >= 1)
    if 0 not in s.index or not trained:
        return float("nan")
    return float(s.loc[trained[len(trained) // 3 :]].mean() - s.loc[0])


def gold_at_kl(kl: np.ndarray, gold: np.ndarray, target: float) -> float:
    """Gold where a run's KL (rounds in order) first reaches `target`, linear between the two rounds around that
    crossing; NaN when the run never reaches it."""
    kl, gold = np.asarray(kl, float), np.asarray(gold, float)
    ok = np.isfinite(kl) & np.isfinite(gold)
    kl, gold = kl[ok], gold[ok]
    hit = np.flatnonzero(kl >= target)
    if not np.isfinite(target) or hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0 or kl[i] == kl[i - 1]:
        return float(gold[i])
    t = (target - kl[i - 1]) / (kl[i] - kl[i - 1])
    return float(gold[i - 1] + t * (gold[i] - gold[i - 1]))


def matched_kl(
    traj0: tuple[np.ndarray, np.ndarray], traj1: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float, float]:
    """(KL*, gold of arm 0 at KL*, gold of arm 1 at KL*), KL* the largest KL both (kl, gold) trajectories reach."""
    k = min(np.nanmax(traj0[0]), np.nanmax(traj1[0])) if len(traj0[0]) and len(traj1[0]) else float("nan")
    return float(k), gold_at_kl(*traj0, k), gold_at_kl(*traj1, k)


def run_frame(study, p: PhaseDesign) -> pd.DataFrame:
    """dose_frame's rows (finished runs of complete seeds, dose arms only) with source, line, rho, per-type late gains
    and the gold at the KL the seed's lowest- and highest-dose arms of a cell both reach."""
    f = dose_frame(study, p.dose)
    f = f[~f["control"]].copy()
    f["source"] = [p.cells[g][0] for g in f["group"]]
    f["line"] = [p.cells[g][1] for g in f["group"]]
    m = study.metrics
    by_run = {run: sub.sort_values("round") for run, sub in m.groupby("run")} if not m.empty else {}
    num = lambda sub, col: (
        pd.to_numeric(sub[col], errors="coerce").to_numpy(float) if col in sub else np.full(len(sub), np.nan)
    )  # noqa: E731
    rho, typed = [], {k: [] for k in TYPED}
    for run in f["run"]:
        sub = by_run.get(run, pd.DataFrame(columns=["round"]))
        trained = sub[sub["round"] >= 1]
        r = num(trained, RHO)
        rho.append(float(np.nanmean(r)) if np.isfinite(r).any() else np.nan)
        for k, col in TYPED.items():
            typed[k].append(late_gain(sub["round"].to_numpy(), num(sub, col)))
    f["rho_run"] = rho
    for k, v in typed.items():
        f[k] = v
    f[MATCHED] = np.nan
    lo_dose, hi_dose = min(p.dose.doses), max(p.dose.doses)
    for (_, _, _), cell in f.groupby(["source", "line", "seed"]):
        a, b = cell[cell["dose"] == lo_dose], cell[cell["dose"] == hi_dose]
        if a.empty or b.empty:
            continue
        ta, tb = (by_run.get(x["run"].iloc[0]) for x in (a, b))
        if ta is None or tb is None or "eval/kl" not in ta or "eval/kl" not in tb:
            continue
        _, ga, gb = matched_kl((num(ta, "eval/kl"), num(ta, "eval/gold")), (num(tb, "eval/kl"), num(tb, "eval/gold")))
        f.loc[a.index, MATCHED], f.loc[b.index, MATCHED] = ga, gb
    # a source's measured rho in a seed: that line's lowest-dose arm (gold itself: 1)
    base = f[f["dose"] == lo_dose].set_index(["source", "line", "seed"])["rho_run"]
    f["rho"] = [
        1.0 if s in p.gold_sources else base.get((s, ln, sd), np.nan)
        for s, ln, sd in zip(f["source"], f["line"], f["seed"])
    ]
    return f


# ----------------------------------------------------------------------------- effects


def seed_effects(frame: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    """One row per (source, line, seed): the per-seed slope of `endpoint` on the dose (d1 - d0 for doses 0, 1) and rho."""
    rows = []
    if endpoint not in frame:
        return pd.DataFrame(columns=["source", "line", "seed", "effect", "rho"])
    for (s, ln), cell in frame.groupby(["source", "line"], sort=False):
        wide = cell.assign(y=pd.to_numeric(cell[endpoint], errors="coerce")).pivot_table(
            index="seed", columns="dose", values="y"
        )
        eff = per_seed_slopes(wide.columns.to_numpy(float), wide.to_numpy())
        rho = cell.groupby("seed")["rho"].first().reindex(wide.index)
        rows += [
            {"source": s, "line": ln, "seed": int(sd), "effect": float(e), "rho": float(r)}
            for sd, e, r in zip(wide.index, eff, rho)
        ]
    return pd.DataFrame(rows, columns=["source", "line", "seed", "effect", "rho"])


def t_summary(x, alpha: float = ALPHA) -> dict:
    """n, mean, sd, (1 - alpha) one-sample t interval and two-sided p of the mean of x (NaN dropped)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out = {"n": n, "mean": float(x.mean()) if n else np.nan, "sd": np.nan, "lo": np.nan, "hi": np.nan, "p": np.nan}
    if n < 2:
        return out
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / np.sqrt(n)
    if sd <= 1e-12 * max(abs(out["mean"]), 1e-300):  # no spread (a constructed case): the mean is known exactly
        sd = 0.0
    p = float(stats.ttest_1samp(x, 0.0).pvalue) if sd > 0 else (0.0 if out["mean"] != 0 else 1.0)
    out.update(sd=sd, lo=out["mean"] - half, hi=out["mean"] + half, p=p)
    return out


CELL_COLUMNS = [
    "endpoint",
    "source",
    "line",
    "rho",
    "n",
    "at_low_dose",
    "at_high_dose",
    "effect",
    "sd",
    "lo",
    "hi",
    "p",
    "p_holm",
    "level_adj",
    "lo_adj",
    "hi_adj",
]


def cell_table(frame: pd.DataFrame, p: PhaseDesign, endpoints) -> pd.DataFrame:
    """Per endpoint x cell: the mean per-seed dial effect with its 95% t interval and p; Holm over every row of the
    table (pass one endpoint family at a time), with the interval at each row's Holm step level beside it."""
    rows = []
    lo_dose, hi_dose = min(p.dose.doses), max(p.dose.doses)
    for ep in [endpoints] if isinstance(endpoints, str) else list(endpoints):
        eff = seed_effects(frame, ep)
        for s in p.sources:
            for ln in p.lines:
                e = eff[(eff["source"] == s) & (eff["line"] == ln)]
                cell = frame[(frame["source"] == s) & (frame["line"] == ln)]
                # called within this iteration, so the loop variables are the current ones
                y = lambda x: (
                    float(pd.to_numeric(cell[cell["dose"] == x][ep], errors="coerce").mean()) if ep in cell else np.nan  # noqa: B023
                )
                t = t_summary(e["effect"])
                rows.append(
                    {
                        "endpoint": ep,
                        "source": s,
                        "line": ln,
                        "rho": float(e["rho"].mean()) if len(e) else np.nan,
                        "n": t["n"],
                        "at_low_dose": y(lo_dose),
                        "at_high_dose": y(hi_dose),
                        "effect": t["mean"],
                        "sd": t["sd"],
                        "lo": t["lo"],
                        "hi": t["hi"],
                        "p": t["p"],
                    }
                )
    tab = pd.DataFrame(rows, columns=CELL_COLUMNS[: CELL_COLUMNS.index("p_holm")])
    if tab.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    pv = tab["p"].to_numpy(float)
    tab["p_holm"] = holm(pv)
    tab["level_adj"] = 1 - holm_alphas(pv, ALPHA)
    tab["lo_adj"], tab["hi_adj"] = tab["lo"], tab["hi"]
    for i, r in tab.iterrows():
        if np.isfinite(r["level_adj"]) and r["n"] >= 2 and r["sd"] > 0:
            half = float(stats.t.ppf(0.5 + r["level_adj"] / 2, r["n"] - 1)) * r["sd"] / np.sqrt(r["n"])
            tab.loc[i, ["lo_adj", "hi_adj"]] = r["effect"] - half, r["effect"] + half
    return tab[CELL_COLUMNS]


def rho_slopes(frame: pd.DataFrame, p: PhaseDesign, endpoint: str) -> pd.DataFrame:
    """Per line: per seed, the OLS slope of the dial effect on measured rho across the sources; one-sample t across
    seeds, Holm over the lines. A seed needs every source's effect and rho."""
    eff = seed_effects(frame, endpoint)
    rows = []
    for ln in p.lines:
        e = eff[eff["line"] == ln]
        x = e.pivot_table(index="seed", columns="source", values="rho").reindex(columns=p.sources)
        y = e.pivot_table(index="seed", columns="source", values="effect").reindex(columns=p.sources)
        b = []
        for sd in y.index:
            xs, ys = x.loc[sd].to_numpy(float), y.loc[sd].to_numpy(float)
            b.append(
                np.polyfit(xs, ys, 1)[0]
                if np.isfinite(xs).all() and np.isfinite(ys).all() and np.ptp(xs) > 0
                else np.nan
            )
        t = t_summary(b)
        rows.append(
            {
                "endpoint": endpoint,
                "line": ln,
                "n": t["n"],
                "slope": t["mean"],
                "sd": t["sd"],
                "lo": t["lo"],
                "hi": t["hi"],
                "p": t["p"],
            }
        )
    tab = pd.DataFrame(rows, columns=["endpoint", "line", "n", "slope", "sd", "lo", "hi", "p"])
    tab["p_holm"] = holm(tab["p"].to_numpy(float)) if not tab.empty else []
    return tab


def band_sentence(cells: pd.DataFrame, line: str, margin: float | None) -> str:
    """Where the line's 95% intervals leave the +-margin band (and where its Holm-step interval excludes 0), sources in
    falling measured rho."""
    c = cells[(cells["line"] == line) & np.isfinite(cells["effect"].astype(float))].sort_values("rho", ascending=False)
    if c.empty:
        return f"{line}: no cell with an effect yet."
    fmt = lambda r: f"{r['source']} (rho {r['rho']:.2f}: {r['effect']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}])"  # noqa: E731
    bare = c[~np.isfinite(c["lo"].astype(float))]
    if len(bare):  # no interval (fewer than 2 seeds): the effects, never a band verdict
        rest = ", ".join(f"{r['source']} (rho {r['rho']:.2f}) {r['effect']:+.3f}" for _, r in bare.iterrows())
        if len(bare) == len(c):
            return f"{line}: no interval yet (fewer than 2 complete seeds); the dial effects: {rest}."
        c = c[np.isfinite(c["lo"].astype(float))]
    out = [f"{line}:"]
    if margin is not None:  # disjoint: wholly beyond the band, reaching outside it, inside it
        beyond = (c["hi"] < -margin) | (c["lo"] > margin)
        inside = (c["lo"] >= -margin) & (c["hi"] <= margin)
        parts = [
            f"{what} {', '.join(fmt(r) for _, r in c[mask].iterrows())}"
            for what, mask in (("wholly beyond it at", beyond), ("reaching outside it at", ~beyond & ~inside))
            if mask.any()
        ]
        out.append(
            f"against the ±{margin:g} band, the 95% interval is "
            + ("; ".join(parts) if parts else "outside it at no source")
            + (f"; inside it at {', '.join(c[inside]['source'])}" if inside.any() else "")
            + "."
        )
    sig = c[(c["p_holm"] < ALPHA) & ((c["lo_adj"] > 0) | (c["hi_adj"] < 0))]
    if sig.empty:
        out.append("The effect differs from 0 at no source (Holm over the cells).")
    else:
        first = sig.iloc[0]
        hp = f", Holm p {first['p_holm']:.2g}" if first["n"] >= MIN_P_SEEDS else ""
        out.append(
            f"It differs from 0 (Holm p < {ALPHA:g}) at {', '.join(sig['source'])}; first, going down from rho 1, at "
            f"{first['source']} (rho {first['rho']:.2f}{hp})."
        )
    if len(bare):
        out.append(f"No interval yet at {', '.join(bare['source'])}.")
    return " ".join(out)
