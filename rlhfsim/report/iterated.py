"""Iterated-RLHF studies (issue 36, experiments/iterated_rlhf.yaml): the analyses that read each run's
inner_eval.jsonl (held-out gold, proxy and KL from the SFT policy every N policy iterations inside a round) beside
metrics.jsonl (end-of-round gold, eval/proxy_gold_gap, eval/proxy_gold_w1).

    has_inner(study)                      any run with inner_eval.jsonl: the page gets this module's figures and tables
    inner = inner_frame(study)            one row per inner evaluation: variant, seed, run, round, iteration, gold, proxy, kl
    rounds = round_frame(study, inner)    one row per (run, round >= 1): end-of-round gold and gain, gap, W1, the round's
                                          inner curve (peak, fall after it, last value, KL range), over-optimised or not
    runs = run_frame(rounds)              one row per run: plateau round, over-optimised rounds, never-recovered round
    mk = matched_frame(inner)             one row per (variant, seed, round): KL* and the arm's inner gold there
    tab = round_contrasts(study, rounds, mk)   every arm vs the baseline per round and quantity (stats.compare, one Holm)

Definitions, fixed in the experiment file before the study ran:
- plateau round: the first round whose end-of-round gold (eval/gold) gain over the previous round is below
  PLATEAU_GAIN (0.005); None (shown "none") when no round's is.
- over-optimised round: its inner curve's gold falls by more than OVEROPT_FALL (0.01) below the curve's in-round peak
  at some evaluation after the peak. Never recovered: a later round's final gold is never above that peak. "Final gold"
  of a later round is its last inner evaluation, on the same held-out subset as the peak (eval/gold is on the full
  held-out set, whose mean differs). An over-optimised last round satisfies the rule with nothing to observe after
  it: counted (the declared rule), and flagged `censored`.
- gold at matched KL: per seed and round, KL* = the largest KL from SFT that every arm's inner curve of that round
  reaches (the smallest of the arms' largest KLs); each arm's gold where its curve first reaches KL*, linear between the
  two evaluations around the crossing. A curve whose first evaluation already lies beyond KL* (e.g. a policy that
  continues from the last round, whose first evaluation at iteration 0 is already at its previous KL) has no value
  there: nothing is extrapolated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from rlhfsim.report.phase import gold_at_kl
from rlhfsim.report.rundir import read_jsonl
from rlhfsim.report.stats import compare

log = logging.getLogger(__name__)

INNER_FILE = "inner_eval.jsonl"
PLATEAU_GAIN = 0.005  # gold: a round's end-of-round gain below this is a plateau
OVEROPT_FALL = 0.01  # gold: a fall below the in-round peak larger than this is over-optimisation
GAP, W1 = "eval/proxy_gold_gap", "eval/proxy_gold_w1"
# per-round quantities compared with the baseline: name -> (column of round_frame / matched_frame, better)
BY_ROUND = {"proxy_gold_gap": (GAP, "lower"), "proxy_gold_w1": (W1, "lower"), "gold_at_matched_kl": ("gold", "higher")}
INNER_COLUMNS = ["variant", "seed", "run", "round", "iteration", "gold", "proxy", "kl"]


# ----------------------------------------------------------------------------- pure math


def curve_at_kl(kl: np.ndarray, gold: np.ndarray, target: float) -> float:
    """One round's inner curve, kl [T] and gold [T] in iteration order -> gold where the curve first reaches `target`
    KL, linear between the two evaluations around the crossing. NaN when the curve never reaches it or starts beyond it
    (its first evaluation's KL > target: nothing is extrapolated)."""
    kl, gold = np.asarray(kl, float), np.asarray(gold, float)
    first = kl[np.isfinite(kl) & np.isfinite(gold)][:1]  # the first evaluation's KL, [0] or [1]
    if not np.isfinite(target) or first.size == 0 or first[0] > target:
        return float("nan")
    return gold_at_kl(kl, gold, target)  # the rounds' crossing rule (report/phase.py), on the iterations


def matched_gold(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, dict[str, float]]:
    """{arm: (kl [T_a], gold [T_a])} of one seed and round -> (KL*, {arm: gold at KL*}), KL* the smallest of the arms'
    largest KLs (the largest KL every arm reaches)."""
    tops = [float(np.nanmax(k)) for k, _ in curves.values() if np.isfinite(np.asarray(k, float)).any()]
    if len(tops) < len(curves) or not tops:
        return float("nan"), {a: float("nan") for a in curves}
    star = min(tops)
    return star, {a: curve_at_kl(k, g, star) for a, (k, g) in curves.items()}


def round_gains(gold: np.ndarray) -> np.ndarray:
    """End-of-round gold of rounds 0..R [R+1] -> each round's gain over the previous one [R] (round 1: over SFT)."""
    g = np.asarray(gold, float)
    return g[1:] - g[:-1]


def plateau_round(rounds: Sequence[int], gold: Sequence[float], threshold: float = PLATEAU_GAIN) -> int | None:
    """rounds [K] (consecutive, ascending, 0 = SFT) and their end-of-round gold [K] -> the first round r >= 1 whose gain
    gold[r] - gold[r-1] is below `threshold`; None when none is (a gain that cannot be computed is skipped)."""
    s = pd.Series(np.asarray(gold, float), index=np.asarray(rounds, int)).sort_index()
    for r in s.index:
        if r >= 1 and r - 1 in s.index and np.isfinite(s[r]) and np.isfinite(s[r - 1]) and s[r] - s[r - 1] < threshold:
            return int(r)
    return None


def peak_and_fall(gold: np.ndarray) -> tuple[float, float]:
    """One round's inner gold [T] in iteration order -> (peak, largest fall below the peak at a later evaluation; 0
    when the peak is the last evaluation). NaN, NaN for no finite value."""
    g = np.asarray(gold, float)
    g = g[np.isfinite(g)]
    if g.size == 0:
        return float("nan"), float("nan")
    i = int(np.argmax(g))  # the first evaluation at the peak
    return float(g[i]), float(g[i] - g[i:].min())


def never_recovered(
    rounds: Sequence[int],
    peaks: Sequence[float],
    falls: Sequence[float],
    finals: Sequence[float],
    tol: float = OVEROPT_FALL,
) -> int | None:
    """Per round of one run (rounds [K] ascending, in-round peak [K], fall after it [K], final inner gold [K]) -> the
    first over-optimised round (fall > tol) after which no later round's final gold is above its peak; None if none."""
    peaks, falls, finals = (np.asarray(x, float) for x in (peaks, falls, finals))
    for k, r in enumerate(rounds):
        if np.isfinite(falls[k]) and falls[k] > tol:
            later = finals[k + 1 :]
            if not (later[np.isfinite(later)] > peaks[k]).any():
                return int(r)
    return None


def pitman_morgan(x: np.ndarray, y: np.ndarray) -> dict:
    """Paired comparison of spread: x [n], y [n] values of two arms by seed -> {n, ratio: sd(x) / sd(y), p}; p is the
    Pitman-Morgan test of equal variances for paired samples (Pearson r of x + y with x - y, t with n - 2 df)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    out = {"n": n, "ratio": float("nan"), "p": float("nan")}
    if n < 3 or y.std(ddof=1) == 0:
        return out
    out["ratio"] = float(x.std(ddof=1) / y.std(ddof=1))
    s, d = x + y, x - y  # cov(s, d) = var x - var y
    if s.std() == 0 or d.std() == 0:
        out["p"] = 1.0 if out["ratio"] == 1 else 0.0
        return out
    r = float(np.clip(np.corrcoef(s, d)[0, 1], -1, 1))
    if abs(r) >= 1 - 1e-12:
        out["p"] = 0.0
        return out
    t = r * np.sqrt((n - 2) / (1 - r * r))
    out["p"] = float(2 * sps.t.sf(abs(t), n - 2))
    return out


# ----------------------------------------------------------------------------- frames


def _done(study) -> list:
    return [r for r in study.runs if r.status in ("finished", "partial")]


def has_inner(study) -> bool:
    """Does any run of the study have inner_eval.jsonl (loop.inner_eval.every > 0)?"""
    return any((r.path / INNER_FILE).is_file() for r in study.runs)


def inner_frame(study) -> pd.DataFrame:
    """One row per inner evaluation of the finished runs; runs of an iterated study without the file are noted."""
    frames = []
    for r in _done(study):
        f = r.path / INNER_FILE
        if not f.is_file():
            study.note(f"{r.label} ({r.path}): no {INNER_FILE}: left out of the in-round analyses")
            continue
        rows = [
            x
            for x in read_jsonl(f)
            if isinstance(x.get("round"), (int, float)) and isinstance(x.get("iteration"), (int, float))
        ]
        if not rows:
            study.note(f"{r.label} ({r.path}): {INNER_FILE} has no complete rows")
            continue
        df = pd.DataFrame(rows).reindex(columns=["round", "iteration", "gold", "proxy", "kl"])
        df = df.apply(pd.to_numeric, errors="coerce").drop_duplicates(["round", "iteration"], keep="last")
        df.insert(0, "run", str(r.path))
        df.insert(0, "seed", r.seed)
        df.insert(0, "variant", r.variant)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=INNER_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["round"], out["iteration"] = out["round"].astype(int), out["iteration"].astype(int)
    return out.sort_values(["variant", "seed", "round", "iteration"]).reset_index(drop=True)[INNER_COLUMNS]


ROUND_COLUMNS = [
    "variant",
    "seed",
    "run",
    "round",
    "gold",
    "gain",
    GAP,
    W1,
    "kl",
    "inner_n",
    "inner_peak",
    "inner_peak_kl",
    "inner_fall",
    "inner_final",
    "inner_kl_min",
    "inner_kl_max",
    "overopt",
]


def round_frame(study, inner: pd.DataFrame) -> pd.DataFrame:
    """One row per (finished run, round >= 1): end-of-round eval/gold, its gain over the previous round, the gap and W1
    (NaN where not logged), end-of-round eval/kl, and the round's inner curve summarised (NaN without one)."""
    rows = []
    by_run = dict(tuple(inner.groupby("run"))) if not inner.empty else {}
    for r in _done(study):
        m = r.metrics
        if m is None or m.empty:
            continue
        m = m.sort_values("round").set_index("round")
        col = lambda c, m=m: pd.to_numeric(m[c], errors="coerce") if c in m else pd.Series(np.nan, index=m.index)  # noqa: E731
        gold, gap, w1, kl = col("eval/gold"), col(GAP), col(W1), col("eval/kl")
        ir = by_run.get(str(r.path), pd.DataFrame(columns=INNER_COLUMNS))
        for rd in m.index:
            if rd < 1:
                continue
            cur = ir[ir["round"] == rd].sort_values("iteration")
            g, k = cur["gold"].to_numpy(float), cur["kl"].to_numpy(float)  # [T]
            peak, fall = peak_and_fall(g)
            fin = g[np.isfinite(g)]
            at = int(np.nanargmax(g)) if np.isfinite(g).any() else None
            rows.append(
                {
                    "variant": r.variant,
                    "seed": r.seed,
                    "run": str(r.path),
                    "round": int(rd),
                    "gold": gold[rd],
                    "gain": gold[rd] - gold[rd - 1] if rd - 1 in gold.index else np.nan,
                    GAP: gap[rd],
                    W1: w1[rd],
                    "kl": kl[rd],
                    "inner_n": int(len(cur)),
                    "inner_peak": peak,
                    "inner_peak_kl": float(k[at]) if at is not None else np.nan,
                    "inner_fall": fall,
                    "inner_final": float(fin[-1]) if fin.size else np.nan,
                    "inner_kl_min": float(np.nanmin(k)) if np.isfinite(k).any() else np.nan,
                    "inner_kl_max": float(np.nanmax(k)) if np.isfinite(k).any() else np.nan,
                    "overopt": bool(np.isfinite(fall) and fall > OVEROPT_FALL),
                }
            )
    return pd.DataFrame(rows, columns=ROUND_COLUMNS)


RUN_COLUMNS = [
    "variant",
    "seed",
    "run",
    "rounds",
    "plateau_round",
    "overopt_rounds",
    "never_recovered_round",
    "censored",
    "gap_first",
    "gap_last",
    "gap_change",
]


def run_frame(rounds: pd.DataFrame, gold0: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per run of round_frame: the plateau round (None: none), the over-optimised rounds ("1, 3"), the
    never-recovered round and whether it is the run's last (censored), and the gap's change from round 1 to the last
    round with a gap. gold0: {run: round-0 eval/gold}, needed for round 1's gain in the plateau rule."""
    rows = []
    for (v, sd, run), g in rounds.groupby(["variant", "seed", "run"], sort=False):
        g = g.sort_values("round")
        rs = g["round"].to_numpy(int)
        g0 = (gold0 or {}).get(run, np.nan)
        plat = plateau_round([0, *rs], [g0, *g["gold"].to_numpy(float)])
        nr = never_recovered(rs, g["inner_peak"], g["inner_fall"], g["inner_final"])
        gaps = g.dropna(subset=[GAP])
        first = float(gaps[GAP].iloc[0]) if len(gaps) else np.nan
        last = float(gaps[GAP].iloc[-1]) if len(gaps) else np.nan
        rows.append(
            {
                "variant": v,
                "seed": sd,
                "run": run,
                "rounds": int(rs.max()),
                "plateau_round": plat,
                "overopt_rounds": ", ".join(str(int(x)) for x in g.loc[g["overopt"], "round"]),
                "never_recovered_round": nr,
                "censored": bool(nr is not None and nr == int(rs.max())),
                "gap_first": first,
                "gap_last": last,
                "gap_change": last - first if len(gaps) > 1 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


MATCHED_COLUMNS = ["variant", "seed", "round", "kl_star", "gold", "kl_min", "kl_max", "arms"]


def matched_frame(inner: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, round): KL* over the arms that have that round's inner curve, and each arm's gold at KL*."""
    rows = []
    for (sd, rd), cell in inner.groupby(["seed", "round"]):
        curves = {
            v: (c.sort_values("iteration")["kl"].to_numpy(float), c.sort_values("iteration")["gold"].to_numpy(float))
            for v, c in cell.groupby("variant", sort=False)
        }
        star, at = matched_gold(curves)
        for v, (k, _) in curves.items():
            rows.append(
                {
                    "variant": v,
                    "seed": sd,
                    "round": int(rd),
                    "kl_star": star,
                    "gold": at[v],
                    "kl_min": float(np.nanmin(k)),
                    "kl_max": float(np.nanmax(k)),
                    "arms": len(curves),
                }
            )
    return pd.DataFrame(rows, columns=MATCHED_COLUMNS)


def gold_round0(study) -> dict[str, float]:
    """{run path: round-0 (SFT) eval/gold}."""
    out = {}
    for r in _done(study):
        m = r.metrics
        if m is not None and "eval/gold" in m and (m["round"] == 0).any():
            out[str(r.path)] = float(pd.to_numeric(m.loc[m["round"] == 0, "eval/gold"], errors="coerce").iloc[-1])
    return out


def round_contrasts(study, rounds: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """Every arm minus the baseline, paired by seed, per round and per-round quantity (BY_ROUND), through
    stats.compare as one family: one Holm over all of them, Holm-step intervals beside. Adds `quantity`, `round`."""
    wide = pd.DataFrame(columns=["variant", "seed"])
    eps = []
    for q, (col, better) in BY_ROUND.items():
        src = matched if q == "gold_at_matched_kl" else rounds
        if src.empty or col not in src or not pd.to_numeric(src[col], errors="coerce").notna().any():
            continue
        w = src.pivot_table(
            index=["variant", "seed"], columns="round", values=col, aggfunc="mean"
        )  # [arm x seed, round]
        w.columns = [f"{q}@round{int(c)}" for c in w.columns]
        eps += [{"endpoint": c, "better": better} for c in w.columns]
        wide = w.reset_index() if wide.empty else wide.merge(w.reset_index(), on=["variant", "seed"], how="outer")
    if not eps:
        return pd.DataFrame()
    tab = compare(wide, study.variants, study.baseline, eps, "by round")
    tab.insert(2, "quantity", [e.split("@")[0] for e in tab["endpoint"]])
    tab.insert(3, "round", [int(e.split("@round")[1]) for e in tab["endpoint"]])
    return tab
