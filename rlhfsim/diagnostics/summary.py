"""summary.json: final and peak figures of a run, read off its metrics rows.

A pure function of ``metrics.jsonl``'s rows (plus the wall time), so a summary can be rebuilt from
the rows alone. Field meanings and ranges are in docs/metrics.md ("summary.json").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.audit import warning_summary
from rlhfsim.diagnostics.overopt import bon_kl, fit_gao, fixed_proxy_rounds, gao_shape
from rlhfsim.diagnostics.stagnation import MAX_LAG, detect_stagnation, lagged_correlations

# what the propagation analysis relates: the reward model of round r (trained in phase 5, diagnosed in
# phase 6) -> the advantages PPO drew from it in round r (phase 7) -> the gold change that round's PPO
# made (eval/gold_delta at r = gold(r) - gold(r-1), lag 0) and the next round's change (lag 1)
PROPAGATION_X = ("collapse/probe_shape_rel", "collapse/shape_rel", "collapse/saturation", "rm/pairwise_acc")
PROPAGATION_Y = ("adv/gold_corr", "adv/sign_agree", "eval/gold_delta")
GAO_MIN_POINTS = 5  # rounds behind a per-run Gao fit (2 parameters; fewer points fit anything)
STAGNATION = {
    "window": 3,
    "level": 0.95,
    "min_slope": 0.0,
    "move_threshold": 1e-3,
}  # interval level; gold per round; nats


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r.get(key) if r.get(key) is not None else np.nan for r in rows], dtype=float)


def gold_cov_matrix(rows: list[dict]) -> np.ndarray | None:
    """[R, MAX_LAG + 1] the rows' ``eval/gold_cov_lag{l}`` (NaN where not logged), or None when no row has any."""
    C = np.stack([_col(rows, f"eval/gold_cov_lag{lag}") for lag in range(MAX_LAG + 1)], axis=1)
    return C if np.isfinite(C).any() else None


def late_gain(rounds: np.ndarray, gold: np.ndarray) -> float:
    """Mean gold over the last two thirds of the trained rounds (the last ceil(2R/3) of 1..R) minus round 0's: uses
    ten rounds of a 15-round run instead of the last one alone, so its seed-to-seed noise is smaller than gold_gain's."""
    R = int(rounds.max()) if rounds.size else 0
    if R < 1 or 0 not in rounds:
        return float("nan")
    late = (rounds > R - int(np.ceil(2 * R / 3))) & np.isfinite(gold)
    return float(gold[late].mean() - gold[rounds == 0][0]) if late.any() else float("nan")


def summarize(rows: list[dict], wall_time: float, steps: list[dict] | None = None) -> dict:
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
        "gold_gain_late": late_gain(rounds, gold),
        "proxy_final": rows[-1].get("eval/proxy"),
        "kl_final": rows[-1].get("eval/kl"),
        "accuracy_closed_initial": rows[0].get("eval/accuracy_closed"),
        "accuracy_closed_final": rows[-1].get("eval/accuracy_closed"),
        "gold_open_final": rows[-1].get("eval/gold_open"),
        "rm_pairwise_acc_final": rows[-1].get("rm/pairwise_acc"),
        "collapse_shape_rel_final": rows[-1].get("collapse/shape_rel"),
        "collapse_probe_shape_rel_final": rows[-1].get("collapse/probe_shape_rel"),
        "wall_time_s": wall_time,
    }
    move = _col(rows, "eval/policy_move")  # KL(policy_r || policy_{r-1}); NaN for round 0
    se = _col(rows, "eval/gold_se")  # per-round noise of eval gold; old runs lack it (residual scatter then)
    mse = _col(rows, "eval/policy_move_se")  # round 0 has none (NaN = no noise term there; it has no move either)
    stag = detect_stagnation(
        gold,
        move,
        rounds=rounds,
        gold_se=se if np.isfinite(se).all() else None,
        move_se=mse if np.isfinite(mse[1:]).all() else None,
        gold_cov=gold_cov_matrix(rows),
        **STAGNATION,
    )
    out["stagnation_round"] = stag["stagnation_round"]
    out["stagnation_first_flat_round"] = stag["first_flat_round"]
    out["overopt_round"] = stag["overopt_round"]
    out["gold_trend_final"] = stag["final_state"]
    out["stagnation_mds"] = stag["mds"]  # gold per round a window calls rising with power 0.8 (median window SE)
    out["stagnation_se_method"] = stag["se_method"]
    out["stagnation_params"] = dict(STAGNATION)
    out.update(
        _means(
            rows,
            (
                "adv/gold_corr",
                "adv/sign_agree",
                "adv/gold_corr_score",
                "adv/sign_agree_score",
                "adv/kl_share",
                "adv/pg_cos",
                "adv/pair_agree",
                "eval/policy_move",
            ),
        )
    )
    out.update(overoptimisation(rows, gold, steps))
    out["propagation"] = propagation(rows)
    out["audit"] = warning_summary(rows)  # which alarm fired first, and how many rounds before the gold peak
    for name, a in out["audit"].get("alarms", {}).items():
        out[f"audit_first_{name}"], out[f"audit_lead_{name}"], out[f"audit_lead_drop_{name}"] = (
            a["first_round"],
            a["lead_rounds"],
            a["lead_drop_rounds"],
        )
    return out


def _means(rows: list[dict], keys) -> dict:
    """Mean over the trained rounds (round > 0) of each key: ``mean/<key>`` (NaN when never logged)."""
    out = {}
    for k in keys:
        v = _col([r for r in rows if r["round"] > 0], k)
        out[f"mean/{k}"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    return out


def overoptimisation(rows: list[dict], gold: np.ndarray, steps: list[dict] | None = None) -> dict:
    """Gao et al. fits of the gold gain against d = sqrt(KL): over rounds (RL) and over n (best-of-n, last round).

    The RL fit uses the rounds that optimised one fixed proxy (:func:`fixed_proxy_rounds`: a frozen reward model,
    or gold) when there are at least ``GAO_MIN_POINTS``; failing that, those rounds' PPO iterations (``steps``, rows
    of policy_steps.jsonl: ``objective/kl`` and ``objective/gold`` of each rollout batch, ``gao_rl_points`` =
    ``iterations``); otherwise all rounds, with ``gao_rl_proxy_fixed`` False (the proxy moved under the curve); no
    fit with fewer points. ``gao_rl_shape`` (:func:`gao_shape`) says whether
    the fitted curve rises then falls inside the observed range; a study reports the share over seeds (``gao_shares``).

    Also what the proxy did after gold peaked: ``proxy_change_after_gold_peak`` = proxy(final) -
    proxy(peak round) (NaN when gold peaks in the last round or at round 0, which has no proxy), and
    ``gold_drop_after_peak`` = gold(final) - gold(peak) (<= 0). With a frozen reward model the proxy is
    one function across those rounds, so a positive change there while gold falls is Goodhart's law.
    """
    out = {}
    d = np.sqrt(np.clip(_col(rows, "eval/kl"), 0, None))
    y = gold - gold[0]
    ok = np.isfinite(d) & np.isfinite(y)
    fixed = fixed_proxy_rounds(rows)
    fixed_rounds = {r["round"] for r, f in zip(rows, fixed) if f and r["round"] > 0}
    it = [
        s
        for s in steps or ()
        if s.get("round") in fixed_rounds and s.get("objective/gold") is not None and s.get("objective/kl") is not None
    ]
    # fit only what optimised one fixed proxy: its rounds, else its PPO iterations; else all rounds, flagged
    if (ok & fixed).sum() >= GAO_MIN_POINTS or len(it) < GAO_MIN_POINTS:
        use = ok & fixed if (ok & fixed).sum() >= GAO_MIN_POINTS else ok
        pd_, py_, points = d[use], y[use], "rounds"
        first, is_fixed = (
            (int(rows[int(np.flatnonzero(use)[0])]["round"]), bool(fixed[use].all())) if use.any() else (None, False)
        )
    else:
        pd_ = np.sqrt(np.clip([s["objective/kl"] for s in it], 0, None))
        py_, points = np.array([s["objective/gold"] for s in it]) - gold[0], "iterations"
        first, is_fixed = min(s["round"] for s in it), True
    if pd_.size >= GAO_MIN_POINTS:
        fit = fit_gao(pd_, py_, form="rl")
        out.update({f"gao_rl_gold_{k}": v for k, v in fit.items()})
        out.update(
            gao_rl_proxy_fixed=is_fixed,
            gao_rl_first_round=first,
            gao_rl_points=points,
            gao_rl_shape=gao_shape(fit, float(pd_.max())),
        )
    proxy = _col(rows, "eval/proxy")
    peak = int(np.nanargmax(gold)) if np.isfinite(gold).any() else 0
    out["gold_drop_after_peak"] = float(gold[-1] - gold[peak])
    out["proxy_change_after_gold_peak"] = float(proxy[-1] - proxy[peak]) if peak < len(rows) - 1 else float("nan")
    last = rows[-1]
    ns = sorted(int(k.removeprefix("bon/gold_n")) for k in last if k.startswith("bon/gold_n"))
    if len(ns) >= 3:
        g = np.array([last[f"bon/gold_n{n}"] for n in ns], dtype=float)
        fit = fit_gao(np.sqrt(bon_kl(np.array(ns))), g - g[0], form="bon")
        out.update({f"gao_bon_gold_{k}": v for k, v in fit.items()})
    return out


def propagation(rows: list[dict]) -> dict:
    """Lagged correlations: reward-model state of round r against advantage fidelity and gold change.

    ``corr/{x}->{y}@lag{L}`` pairs ``x(r)`` with ``y(r + L)`` over the trained rounds, each with ``n``,
    the number of rounds behind it (a few per run: read single-run values with care). ``eval/gold_delta``
    at round r is gold(r) - gold(r-1), the change made by round r's PPO on round r's reward model; at lag 1
    it is the change made in the following round.
    """
    df = pd.DataFrame([r for r in rows if r["round"] > 0])
    if df.empty:
        return {}
    gold = pd.DataFrame(rows).set_index("round")["eval/gold"]
    df["eval/gold_delta"] = df["round"].map(gold.diff())
    xs = [c for c in PROPAGATION_X if c in df]
    ys = [c for c in PROPAGATION_Y if c in df]
    return lagged_correlations(df, xs, ys, lags=(0, 1)) if xs and ys else {}
