"""Seconds per round of a real config (the quickstart by default), and how that time grows with
prompts x completions per round (N): a linear fit t = a + b N, its R^2, and a quadratic term.

The SFT warm start is trained (or loaded) once before any timing and is excluded: it is cached by
config hash, so it is a one-off cost, reported separately as `sft_s`.
"""

from __future__ import annotations

import tempfile

import numpy as np

from rlhfsim.config import load_config
from rlhfsim.loop import resolve_device, run
from rlhfsim.models.policy import warm_start_policy
from rlhfsim.tracking import read_jsonl
from rlhfsim.world import build_world

PHASES = ("generate", "annotate", "reward", "diagnose_rm", "policy", "evaluate")


def warm_sft(cfg) -> tuple[float, bool]:
    """Train (or load) the SFT policy the runs below will find in the cache; (seconds, was it cached)."""
    import time

    t0 = time.perf_counter()
    _, stats = warm_start_policy(build_world(cfg.world), cfg, resolve_device(cfg.device))
    return time.perf_counter() - t0, bool(stats.get("sft/cached"))


def round_times(cfg) -> list[dict]:
    """Run `cfg` into a throw-away directory; its metrics rows of rounds >= 1 (time/round and phase times)."""
    with tempfile.TemporaryDirectory() as out:
        run(cfg, out=out)
        rows = read_jsonl(f"{out}/metrics.jsonl")
    return [r for r in rows if r.get("round", 0) >= 1]


def linear_fit(n: np.ndarray, t: np.ndarray) -> dict:
    """t ~ a + b n (least squares) with R^2, plus the quadratic fit's n^2 term and its share of t at max n.

    n, t: [S] sizes and seconds. `superlinear` is true when the n^2 term carries more than 10% of the
    predicted time at the largest size and the quadratic fit explains at least half of the linear residual;
    None (no verdict) when the linear fit's R^2 is below 0.5, i.e. noise swamps any trend.
    """
    A = np.stack([np.ones_like(n), n], 1)
    coef, *_ = np.linalg.lstsq(A, t, rcond=None)
    resid = t - A @ coef
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    out = {"intercept_s": float(coef[0]), "slope_s_per_item": float(coef[1]), "r2": r2}
    if len(n) >= 4:  # with 3 points the quadratic interpolates exactly: no test at all
        Q = np.stack([np.ones_like(n), n, n**2], 1)
        q, *_ = np.linalg.lstsq(Q, t, rcond=None)
        q_resid = float(((t - Q @ q) ** 2).sum())
        share = float(q[2] * n.max() ** 2 / max(1e-12, float(Q[np.argmax(n)] @ q)))
        better = q_resid < 0.5 * float((resid**2).sum())
        out.update(
            {
                "quadratic_coef": float(q[2]),
                "quadratic_share_at_max": share,
                # a line that explains almost nothing (R^2 < 0.5) means noise dominates: no verdict
                "superlinear": None if r2 < 0.5 else bool(q[2] > 0 and share > 0.1 and better),
            }
        )
    return out


def bench_rounds(config: str, overrides: list[str], rounds: int, sizes: list[tuple[int, int]]) -> dict:
    """Per-round seconds of `config` (reduced to `rounds`), then the N = prompts x completions scaling."""
    base = list(overrides) + [f"loop.rounds={rounds}", "output.n_samples=0"]
    cfg = load_config(config, base)
    sft_s, cached = warm_sft(cfg)
    # one extra round first, dropped: the first round of a process pays one-off warm-up costs
    rows = round_times(load_config(config, list(overrides) + [f"loop.rounds={rounds + 1}", "output.n_samples=0"]))[1:]
    per_round = [r["time/round"] for r in rows]
    out = {
        "config": config,
        "overrides": list(overrides),
        "rounds": rounds,
        "sft_s": sft_s,
        "sft_was_cached": cached,
        "round_s": float(np.median(per_round)),
        "round_s_each": per_round,
        "phases_s": {p: float(np.median([r.get(f"time/{p}", 0.0) for r in rows])) for p in PHASES},
        "prompts_x_completions": cfg.loop.prompts_per_round * cfg.loop.completions_per_prompt,
    }
    if sizes:
        points = []
        for prompts, k in sizes:
            c = load_config(config, base + [f"loop.prompts_per_round={prompts}", f"loop.completions_per_prompt={k}"])
            rs = round_times(c)
            # the phases whose work is proportional to N (PPO and evaluation have fixed batch sizes)
            n_dep = [sum(r.get(f"time/{p}", 0.0) for p in ("generate", "annotate", "reward")) for r in rs]
            points.append(
                {
                    "prompts": prompts,
                    "completions": k,
                    "n": prompts * k,
                    "round_s": float(np.median([r["time/round"] for r in rs])),
                    "n_dependent_s": float(np.median(n_dep)),
                }
            )
        n = np.array([p["n"] for p in points], dtype=float)
        out["scaling"] = {
            "points": points,
            "round_fit": linear_fit(n, np.array([p["round_s"] for p in points])),
            "n_dependent_fit": linear_fit(n, np.array([p["n_dependent_s"] for p in points])),
        }
    return out
