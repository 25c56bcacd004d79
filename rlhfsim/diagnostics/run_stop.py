"""Run-level early stopping: end a run once the policy has stagnated (config `loop.stop_on_stagnation`)."""

from __future__ import annotations

import numpy as np

from rlhfsim.diagnostics.stagnation import detect_stagnation


def stagnation_stop(rows: list[dict], loop_cfg) -> dict | None:
    """``{"round", "stagnation_round", "reason"}`` when the metrics rows so far show stagnation, else None.

    Uses :func:`detect_stagnation` over rounds >= 1 (round 0 has no policy movement) with
    ``loop.stagnation_window`` and ``loop.stagnation_slope``; needs at least one full window.
    """
    rows = [r for r in rows if r.get("round", 0) >= 1]
    if len(rows) < loop_cfg.stagnation_window:
        return None
    col = lambda k: np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float)  # noqa: E731
    rounds = np.array([r["round"] for r in rows])
    st = detect_stagnation(col("eval/gold"), col("eval/policy_move"), rounds=rounds, window=loop_cfg.stagnation_window,
                           slope_threshold=loop_cfg.stagnation_slope)
    if st["stagnation_round"] is None:
        return None
    return {
        "round": int(rounds.max()),
        "stagnation_round": st["stagnation_round"],
        "reason": f"stagnation: gold slope < {loop_cfg.stagnation_slope} per round over {loop_cfg.stagnation_window} rounds "
                  f"from round {st['stagnation_round']} while the policy kept moving",
    }
