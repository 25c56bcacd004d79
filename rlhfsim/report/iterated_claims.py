"""The iterated-RLHF study's predictions (experiments/iterated_rlhf.yaml, P1-P5, written before the study ran), each
checked against the measured quantity it needs.

    roles = arm_roles(study)                      {"continue": variant, ...}: each arm found by the one setting it changes
    tab = predictions(study, comps, rounds, runs) one row per checkable claim: the quantity, its value with a paired 95%
                                                  interval, n, and the outcome
    summary_line(tab)                             "P1 holds; P2 not shown; ..." for the Answer box

Outcomes: "holds" (the interval lies on the predicted side of its bound, or the stated count is met), "fails" (it lies on
the other side, or the count is not met), "not shown" (the interval covers the bound), "cannot test" (an arm or a
quantity the claim needs is not in the runs), "descriptive" (the file says "may": shown, not tested). Intervals are
the paired ones of report/stats.py (paired t below 6 seeds, expanded bootstrap from 6), unadjusted: the table checks
declared directions one by one; the Holm-corrected primary is the Answer box's. The two equivalence claims (P5) read
the primary family's TOST, Holm-adjusted, with its interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.dose_response import per_seed_slopes
from rlhfsim.report.iterated import GAP, pitman_morgan
from rlhfsim.report.phase import t_summary
from rlhfsim.report.select import factor_value
from rlhfsim.report.stats import paired_effect
from rlhfsim.report.tables import finished

# the arms the predictions name: role -> (the one config key it changes from the reference, its value there)
ROLES = {
    "data_last": ("loop.buffer", "fresh"),
    "data_sample": ("loop.buffer", "equal_share"),
    "data_once": ("loop.buffer", "prompt_once"),
    "reward_mean": ("reward.across_rounds", "mean"),
    "reward_min": ("reward.across_rounds", "min"),
    "reward_wavg": ("reward.across_rounds", "weight_average"),
    "continue": ("loop.policy_start", "continue"),
    "liti": ("loop.policy_start", "interpolate"),
}
ROLE_KEYS = tuple(dict.fromkeys(k for k, _ in ROLES.values()))
PLATEAU_BY = 4  # P2: "gains plateau by round 3 or 4"
ALPHA = 0.05
FINAL_GAP = f"final/{GAP}"
COLUMNS = ["prediction", "claim", "measured", "value", "lo", "hi", "n", "outcome", "detail"]


def arm_roles(study) -> dict[str, str]:
    """{role: variant} for the variants that differ from the baseline in exactly one of ROLE_KEYS, at a ROLES value."""
    base = {k: factor_value(study, study.baseline, k) for k in ROLE_KEYS}
    out: dict[str, str] = {}
    for v in study.variants:
        if v == study.baseline:
            continue
        vals = {k: factor_value(study, v, k) for k in ROLE_KEYS}
        diff = [k for k in ROLE_KEYS if vals[k] != base[k]]
        if len(diff) == 1:
            role = next((r for r, (k, x) in ROLES.items() if k == diff[0] and vals[k] == x), None)
            if role is not None:
                out.setdefault(role, v)
    return out


def _by_seed(df: pd.DataFrame, variant: str, col: str) -> pd.Series:
    """Values of `col` of one variant's rows, indexed by seed (empty when the column is absent)."""
    if col not in df or df.empty:
        return pd.Series(dtype=float)
    d = df[df["variant"] == variant]
    return pd.to_numeric(d.set_index("seed")[col], errors="coerce")


def _side(lo: float, hi: float, sign: int, bound: float = 0.0) -> str:
    """Does the interval [lo, hi] lie above (sign +1) or below (sign -1) `bound`, on the other side, or cover it?"""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not shown"
    if (lo > bound) if sign > 0 else (hi < bound):
        return "holds"
    if (hi < bound) if sign > 0 else (lo > bound):
        return "fails"
    return "not shown"


def _row(pred: str, claim: str, measured: str, eff: dict | None = None, outcome: str = "", detail: str = "") -> dict:
    eff = eff or {}
    return {
        "prediction": pred,
        "claim": claim,
        "measured": measured,
        "value": eff.get("diff", np.nan),
        "lo": eff.get("lo", np.nan),
        "hi": eff.get("hi", np.nan),
        "n": int(eff.get("n", 0) or 0),
        "outcome": outcome,
        "detail": detail,
    }


def _missing(pred: str, claim: str, measured: str, what: str) -> dict:
    return _row(pred, claim, measured, outcome="cannot test", detail=what)


def _paired(pred, claim, measured, a: pd.Series, b: pd.Series, sign: int, bound: float = 0.0) -> dict:
    eff = paired_effect(a, b)
    return _row(pred, claim, measured, eff, _side(eff["lo"], eff["hi"], sign, bound))


def predictions(study, comps: pd.DataFrame, rounds: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """P1-P5 of experiments/iterated_rlhf.yaml against the runs (see the module docstring for the outcomes)."""
    roles, base = arm_roles(study), study.baseline
    done = finished(study)
    margin = (study.primary or {}).get("margin")
    ep = (study.primary or {}).get("endpoint", "gold_final")
    rows = []
    arm = lambda role: roles.get(role)  # noqa: E731

    # P1: the reference's proxy-gold gap falls from round 1 to the last round
    gaps = rounds[(rounds["variant"] == base)].dropna(subset=[GAP]) if GAP in rounds else pd.DataFrame()
    claim = f"over-optimisation decreases over rounds: {base}'s proxy-gold gap falls from round 1 to the last round"
    if gaps.empty or gaps["round"].nunique() < 2:
        rows.append(_missing("P1", claim, GAP, f"{GAP} is logged in fewer than 2 rounds of {base}"))
    else:
        r1, rl = int(gaps["round"].min()), int(gaps["round"].max())
        at = lambda r: gaps[gaps["round"] == r].set_index("seed")[GAP]  # noqa: E731
        rows.append(_paired("P1", claim, f"{GAP} of {base}, round {rl} minus round {r1}, per seed", at(rl), at(r1), -1))

    # P2: the reference's per-round gold gain shrinks; gains plateau by round 3 or 4
    ref = rounds[rounds["variant"] == base]
    claim = f"gains diminish: {base}'s per-round gold gain shrinks over rounds"
    g = ref.pivot_table(index="seed", columns="round", values="gain") if not ref.empty else pd.DataFrame()
    if g.shape[1] < 2:
        rows.append(_missing("P2", claim, "eval/gold gain per round", f"fewer than 2 rounds of {base} with a gain"))
    else:
        t = t_summary(per_seed_slopes(g.columns.to_numpy(float), g.to_numpy(float)))
        per = ", ".join(f"r{int(c)} {g[c].mean():+.4f}" for c in g.columns)
        rows.append(
            _row(
                "P2",
                claim,
                "per-seed OLS slope of the end-of-round gold gain on the round (gold per round), one-sample t",
                {"diff": t["mean"], "lo": t["lo"], "hi": t["hi"], "n": t["n"]},
                _side(t["lo"], t["hi"], -1),
                f"mean gain per round: {per}",
            )
        )
    rr = runs[runs["variant"] == base]
    claim = f"gains plateau by round {PLATEAU_BY - 1} or {PLATEAU_BY} in {base} (at least half of its seeds)"
    if rr.empty:
        rows.append(_missing("P2", claim, "plateau round", f"no finished run of {base}"))
    else:
        pr = pd.to_numeric(rr["plateau_round"], errors="coerce")
        k, n = int((pr <= PLATEAU_BY).sum()), len(pr)
        listing = ", ".join("none" if not np.isfinite(x) else str(int(x)) for x in pr)
        rows.append(
            _row(
                "P2",
                claim,
                f"seeds whose plateau round (first gain < 0.005) is <= {PLATEAU_BY}",
                {"diff": k / n, "n": n},
                "holds" if 2 * k >= n else "fails",
                f"{k} of {n} seeds; plateau rounds by seed: {listing}",
            )
        )

    # P3: continue and LITI reach higher KL, vary more in gold, and some of their seeds never recover
    for role in ("continue", "liti"):
        v = arm(role)
        claim = f"{role} reaches a higher KL than {base}"
        if v is None:
            rows.append(_missing("P3", claim, "kl_final", f"no {role} arm ({ROLES[role][0]}: {ROLES[role][1]})"))
            continue
        rows.append(
            _paired(
                "P3",
                claim,
                f"kl_final, {v} minus {base}",
                _by_seed(done, v, "kl_final"),
                _by_seed(done, base, "kl_final"),
                +1,
            )
        )
        a, b = _by_seed(done, v, ep), _by_seed(done, base, ep)
        j = a.index.intersection(b.index)
        pm = pitman_morgan(a.reindex(j).to_numpy(), b.reindex(j).to_numpy())
        out = (
            "not shown" if not (np.isfinite(pm["p"]) and pm["p"] < ALPHA) else ("holds" if pm["ratio"] > 1 else "fails")
        )
        rows.append(
            _row(
                "P3",
                f"{role}'s gold is more variable across seeds than {base}'s",
                f"SD of {ep} over seeds, {v} / {base}",
                {"diff": pm["ratio"], "n": pm["n"]},
                out,
                f"Pitman-Morgan test of equal paired variances: p = {pm['p']:.3g}"
                if np.isfinite(pm["p"])
                else "needs 3 paired seeds",
            )
        )
    claim = f"some continue or LITI seeds over-optimise and never recover; no {base} seed does"
    if arm("continue") is None or arm("liti") is None:
        rows.append(_missing("P3", claim, "never-recovered seeds", "needs both the continue and the LITI arm"))
    else:
        cnt = {}
        for v in (arm("continue"), arm("liti"), base):
            rv = runs[runs["variant"] == v]
            nr = rv["never_recovered_round"].notna()
            cnt[v] = (int(nr.sum()), int((nr & rv["censored"]).sum()), len(rv))
        k = cnt[arm("continue")][0] + cnt[arm("liti")][0]
        detail = "; ".join(f"{v}: {a} of {n} seeds ({c} in their last round)" for v, (a, c, n) in cnt.items())
        rows.append(
            _row(
                "P3",
                claim,
                "seeds with a never-recovered over-optimised round",
                {"diff": k, "n": sum(x[2] for x in cnt.values())},
                "holds" if k >= 1 and cnt[base][0] == 0 else "fails",
                detail,
            )
        )

    # P4: concatenation >= equal-share sample > last round only in gold; last round only has the largest gap
    ref_g = _by_seed(done, base, ep)
    bound = float(margin) if margin else 0.0
    v = arm("data_sample")
    claim = f"{base} (concatenated) >= the equal-share sample in {ep}" + (
        f" (not worse by more than the ±{bound:g} margin)" if margin else ""
    )
    if v is None:
        rows.append(_missing("P4", claim, ep, "no equal-share sample arm (loop.buffer: equal_share)"))
    else:
        eff = paired_effect(ref_g, _by_seed(done, v, ep))
        out = "holds" if eff["lo"] > -bound else ("fails" if eff["hi"] < 0 else "not shown")
        rows.append(_row("P4", claim, f"{ep}, {base} minus {v}", eff, out if np.isfinite(eff["lo"]) else "not shown"))
    s, last = arm("data_sample"), arm("data_last")
    claim = f"the equal-share sample > last round only in {ep}"
    if s is None or last is None:
        rows.append(_missing("P4", claim, ep, "needs the equal-share sample and the last-round-only arm"))
    else:
        rows.append(
            _paired("P4", claim, f"{ep}, {s} minus {last}", _by_seed(done, s, ep), _by_seed(done, last, ep), +1)
        )
    claim = "last round only has the largest proxy-gold gap of the data arms"
    if last is None or FINAL_GAP not in done:
        rows.append(
            _missing(
                "P4",
                claim,
                FINAL_GAP,
                "no last-round-only arm (loop.buffer: fresh)" if last is None else f"{GAP} not logged",
            )
        )
    for other in [
        x
        for x in (base, arm("data_sample"), arm("data_once"))
        if x is not None and last is not None and FINAL_GAP in done
    ]:
        rows.append(
            _paired(
                "P4",
                f"{claim} (vs {other})",
                f"{FINAL_GAP}, {last} minus {other}",
                _by_seed(done, last, FINAL_GAP),
                _by_seed(done, other, FINAL_GAP),
                +1,
            )
        )

    # P5: mean and weight-average within the margin of last; the minimum has the smallest gap and may cost gold
    prim = comps[comps["family"] == "primary"].set_index("variant") if not comps.empty else pd.DataFrame()
    for role in ("reward_mean", "reward_wavg"):
        v = arm(role)
        claim = f"{role} is within the margin of {base} in {ep}"
        if v is None or v not in prim.index or not margin:
            why = f"no {role} arm" if v is None or v not in prim.index else "no equivalence margin declared"
            rows.append(_missing("P5", claim, f"{ep}: TOST", why))
            continue
        c = prim.loc[v]
        out = (
            "holds"
            if bool(c["equivalent"])
            else ("fails" if c["lo_adj"] > bound or c["hi_adj"] < -bound else "not shown")
        )
        rows.append(
            _row(
                "P5",
                claim,
                f"{ep}, {v} minus {base}; interval: the TOST (1 - 2 alpha) interval at its Holm step",
                {"diff": c["diff"], "lo": c["tost_lo"], "hi": c["tost_hi"], "n": c["n"]},
                out,
                f"TOST p = {c['tost_p']:.3g} after Holm; margin ±{bound:g}",
            )
        )
    mn = arm("reward_min")
    claim = "the minimum is the most conservative: the smallest proxy-gold gap of the reward arms"
    if mn is None or FINAL_GAP not in done:
        rows.append(
            _missing(
                "P5",
                claim,
                FINAL_GAP,
                "no minimum arm (reward.across_rounds: min)" if mn is None else f"{GAP} not logged",
            )
        )
    for other in [
        x
        for x in (base, arm("reward_mean"), arm("reward_wavg"))
        if x is not None and mn is not None and FINAL_GAP in done
    ]:
        rows.append(
            _paired(
                "P5",
                f"{claim} (vs {other})",
                f"{FINAL_GAP}, {mn} minus {other}",
                _by_seed(done, mn, FINAL_GAP),
                _by_seed(done, other, FINAL_GAP),
                -1,
            )
        )
    if mn is not None:
        eff = paired_effect(_by_seed(done, mn, ep), ref_g)
        rows.append(_row("P5", "the minimum may cost gold", f"{ep}, {mn} minus {base}", eff, "descriptive"))
    return pd.DataFrame(rows, columns=COLUMNS)


def overall(tab: pd.DataFrame) -> dict[str, str]:
    """{prediction: outcome over its tested rows}: fails if any fails, holds if all hold, cannot test if any row cannot
    be tested (and none fails), else not shown."""
    out = {}
    for p, g in tab.groupby("prediction", sort=False):
        o = set(g.loc[g["outcome"] != "descriptive", "outcome"])
        out[p] = (
            "fails"
            if "fails" in o
            else "holds"
            if o == {"holds"}
            else "cannot test"
            if "cannot test" in o
            else "not shown"
            if o
            else "descriptive"
        )
    return out


def summary_line(tab: pd.DataFrame) -> str:
    parts = "; ".join(f"{p} {o}" for p, o in overall(tab).items())
    return (
        f"Predictions declared before the run (experiments/iterated_rlhf.yaml): {parts} (a prediction holds only when "
        "every measured part of it holds; the table below gives each part with its interval)."
    )
