"""summary.json: final and peak figures of a run, read off its metrics rows."""

from __future__ import annotations

import numpy as np

import pandas as pd

from rlhfsim.diagnostics.audit import warning_summary
from rlhfsim.diagnostics.overopt import bon_kl, fit_gao
from rlhfsim.diagnostics.stagnation import detect_stagnation, lagged_correlations

# what the propagation analysis relates: reward-model state of round r -> signal of round r -> gold change r -> r+1
PROPAGATION_X = ("collapse/index", "collapse/index_gap", "collapse/saturation", "rm/pairwise_acc")
PROPAGATION_Y = ("adv/gold_corr", "adv/sign_agree", "eval/gold_delta")


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r.get(key) if r.get(key) is not None else np.nan for r in rows], dtype=float)


def summarize(rows: list[dict], wall_time: float) -> dict:
    """Initial (SFT), final and peak gold; final proxy, KL and closed accuracy; stagnation; wall time."""
    if not rows:
        return {"rounds_completed": 0, "wall_time_s": wall_time}
    rounds = np.array([r["round"] for r in rows])
    gold = _col(rows, "eval/gold")
    peak = int(np.nanargmax(gold)) if np.isfinite(gold).any() else 0
    out = {
        "rounds_completed": int(rounds.max()),
        "gold_initial": float(gold[0]),
        "gold_final": float(gold[-1]),
        "gold_peak": float(gold[peak]),
        "gold_peak_round": int(rounds[peak]),
        "gold_gain": float(gold[-1] - gold[0]),
        "proxy_final": rows[-1].get("eval/proxy"),
        "kl_final": rows[-1].get("eval/kl"),
        "accuracy_closed_initial": rows[0].get("eval/accuracy_closed"),
        "accuracy_closed_final": rows[-1].get("eval/accuracy_closed"),
        "gold_open_final": rows[-1].get("eval/gold_open"),
        "rm_pairwise_acc_final": rows[-1].get("rm/pairwise_acc"),
        "collapse_index_final": rows[-1].get("collapse/index"),
        "wall_time_s": wall_time,
    }
    move = _col(rows, "eval/policy_move")  # KL(policy_r || policy_{r-1}); NaN for round 0
    stag = detect_stagnation(gold, move, rounds=rounds)
    out["stagnation_round"] = stag.get("stagnation_round")
    out.update(overoptimisation(rows, gold))
    out["propagation"] = propagation(rows)
    out["audit"] = warning_summary(rows)  # which alarm fired first, and how many rounds before the gold peak
    for name, a in out["audit"].get("alarms", {}).items():
        out[f"audit_first_{name}"], out[f"audit_lead_{name}"], out[f"audit_lead_drop_{name}"] = a["first_round"], a["lead_rounds"], a["lead_drop_rounds"]
    return out


def overoptimisation(rows: list[dict], gold: np.ndarray) -> dict:
    """Gao et al. fits of gold and proxy gain against d = sqrt(KL) over rounds (RL) and over n (best-of-n, last round)."""
    out = {}
    d = np.sqrt(np.clip(_col(rows, "eval/kl"), 0, None))
    for name, y in (("gold", gold - gold[0]), ("proxy", _col(rows, "eval/proxy"))):
        if name == "proxy":  # round 0 has no proxy: measure the gain from round 1's proxy at round 1's d
            y = y - np.nan_to_num(y[1], nan=0.0) if len(y) > 1 else y
        ok = np.isfinite(d) & np.isfinite(y)
        if ok.sum() >= 3:
            fit = fit_gao(d[ok], y[ok], form="rl")
            out.update({f"gao_rl_{name}_{k}": v for k, v in fit.items()})
    last = rows[-1]
    ns = sorted(int(k.removeprefix("bon/gold_n")) for k in last if k.startswith("bon/gold_n"))
    if len(ns) >= 3:
        g = np.array([last[f"bon/gold_n{n}"] for n in ns], dtype=float)
        fit = fit_gao(np.sqrt(bon_kl(np.array(ns))), g - g[0], form="bon")
        out.update({f"gao_bon_gold_{k}": v for k, v in fit.items()})
    return out


def propagation(rows: list[dict]) -> dict:
    """Lagged correlations: collapse/saturation of round r against advantage fidelity at r and gold change r -> r+1."""
    df = pd.DataFrame([r for r in rows if r["round"] > 0])
    if df.empty:
        return {}
    gold = pd.DataFrame(rows).set_index("round")["eval/gold"]
    df["eval/gold_delta"] = df["round"].map(gold.diff())
    xs = [c for c in PROPAGATION_X if c in df]
    ys = [c for c in PROPAGATION_Y if c in df]
    return lagged_correlations(df, xs, ys, lags=(0, 1)) if xs and ys else {}
