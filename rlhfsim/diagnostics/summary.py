"""summary.json: final and peak figures of a run, read off its metrics rows."""

from __future__ import annotations

import numpy as np

from rlhfsim.diagnostics.stagnation import detect_stagnation


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
    move = _col(rows, "eval/policy_move") if any("eval/policy_move" in r for r in rows) else _col(rows, "eval/kl")
    stag = detect_stagnation(gold, move, rounds=rounds)
    out["stagnation_round"] = stag.get("stagnation_round")
    return out
