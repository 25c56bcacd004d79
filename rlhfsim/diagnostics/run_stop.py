"""Run-level early stopping: end a run once gold stops rising or falls (config `loop.stop_on_stagnation`)."""

from __future__ import annotations

import numpy as np

from rlhfsim.diagnostics.stagnation import detect_stagnation
from rlhfsim.diagnostics.summary import gold_cov_matrix


def stagnation_stop(rows: list[dict], loop_cfg) -> dict | None:
    """``{"round", "stagnation_round", "kind", "reason"}`` when the metrics rows so far show stagnation or
    over-optimisation, else None.

    Uses :func:`detect_stagnation` over rounds >= 1 (round 0 has no policy movement) with
    ``loop.stagnation_window``, ``loop.stagnation_slope``, ``loop.stagnation_level`` and each round's
    ``eval/gold_cov_lag{l}`` (the exact paired window SE; ``eval/gold_se`` where they are missing); needs at least one
    full window. ``kind`` is ``stagnation`` (flat, no later rise) or
    ``overoptimisation`` (the latest window's gold falls while the policy moves).
    """
    rows = [r for r in rows if r.get("round", 0) >= 1]
    if len(rows) < loop_cfg.stagnation_window:
        return None
    col = lambda k: np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float)  # noqa: E731
    rounds = np.array([r["round"] for r in rows])
    se, mse = col("eval/gold_se"), col("eval/policy_move_se")
    st = detect_stagnation(
        col("eval/gold"),
        col("eval/policy_move"),
        rounds=rounds,
        window=loop_cfg.stagnation_window,
        gold_se=se if np.isfinite(se).all() else None,
        level=loop_cfg.stagnation_level,
        min_slope=loop_cfg.stagnation_slope,
        move_se=mse if np.isfinite(mse).all() else None,
        gold_cov=gold_cov_matrix(rows),
    )
    w = f"{loop_cfg.stagnation_window} rounds at level {loop_cfg.stagnation_level}"
    if st["final_state"] == "falling" and st["overopt_round"] is not None:
        return {
            "round": int(rounds.max()),
            "stagnation_round": st["overopt_round"],
            "kind": "overoptimisation",
            "reason": f"over-optimisation: gold falling (slope interval below -{loop_cfg.stagnation_slope} over {w}) "
            f"from round {st['overopt_round']} while the policy kept moving",
        }
    if st["stagnation_round"] is None:
        return None
    return {
        "round": int(rounds.max()),
        "stagnation_round": st["stagnation_round"],
        "kind": "stagnation",
        "reason": f"stagnation: gold slope interval covers 0 (within +-{loop_cfg.stagnation_slope}) over {w} "
        f"from round {st['stagnation_round']} while the policy kept moving",
    }
