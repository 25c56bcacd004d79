"""Reward-model training each round: utilities per prompt type, member data orders, early stopping.

The objective and data layout are in rlhfsim.reward.listwise, the engines that step the parameters in
rlhfsim.reward.engines (members one after another, stacked) and rlhfsim.reward.heads (shared trunk).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from rlhfsim.diagnostics.collapse import collapse_metrics, shape_dependence
from rlhfsim.reward import regularise, schedule
from rlhfsim.reward.early_stop import EarlyStopper, head_orders, holdout_mask, member_orders
from rlhfsim.reward.engines import Engine, LoopEngine, StackedEngine
from rlhfsim.reward.heads import HeadsEngine
from rlhfsim.reward.listwise import GroupTensors, group_layout, listwise_loss, pairwise_loss, to_reward_scale
from rlhfsim.reward.stacked import Stack

__all__ = [
    "Engine",
    "GroupTensors",
    "HeadsEngine",
    "LoopEngine",
    "StackedEngine",
    "group_layout",
    "listwise_loss",
    "make_engine",
    "pairwise_loss",
    "to_reward_scale",
    "train_reward_models",
    "training_utilities",
    "type_weights",
    "utilities_for",
]

log = logging.getLogger(__name__)


def utilities_for(cfg, type_names: list[str]) -> list:
    """One Utility per prompt type: the prompt-aware map where it names the type, else the shared utility."""
    aware = cfg.prompt_aware or {}
    return [(aware[t] if t in aware else cfg.utility).build() for t in type_names]


def type_weights(utilities: list, mode: str) -> list[float]:
    """Per-type factors on the utilities (config ``reward.type_weighting``).

    ``raw``: 1 for every type (the paper: raw utilities averaged over all labelled pairs). ``range``: type t's
    utility is divided by its range over the reward interval, ``U_t(1) - U_t(0)`` (its mean slope on [0, 1]),
    and multiplied by the geometric mean of those ranges: every type then pulls with the same average
    strength (``-1/(x+0.1)`` has range 9.09 against 1 for ``x``, so raw averaging lets open prompts dominate),
    and a single shared utility is left exactly as it is. A positive factor per type leaves each prompt's
    optimum unchanged; only the balance between types moves.
    """
    if mode == "raw":
        return [1.0] * len(utilities)
    if mode != "range":
        raise ValueError(f"unknown reward.type_weighting {mode!r}; valid: raw, range")
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ranges = np.array([float(U(ends)[1] - U(ends)[0]) for U in utilities])
    if (ranges <= 0).any() or not np.isfinite(ranges).all():
        raise ValueError(f"utilities must rise on [0, 1] to be weighted by range; got ranges {ranges.tolist()}")
    gm = float(np.exp(np.log(ranges).mean()))
    return [gm / r if not np.isclose(gm, r, rtol=1e-12) else 1.0 for r in ranges]


def training_utilities(cfg, type_names: list[str]) -> list:
    """The utilities the reward model trains on: per-type weighting (``reward.type_weighting``), then the margin."""
    us = utilities_for(cfg, type_names)
    us = regularise.scaled(us, type_weights(us, cfg.type_weighting))
    return regularise.with_margin(us, cfg.margin)


def make_engine(rms, cfg, data: GroupTensors, weights: np.ndarray | None = None) -> Engine:
    """Heads for a shared-trunk ensemble (`weights` [M, n]: their bootstrap group weights); stacked when there
    are several members and the architecture stacks; else the loop."""
    steps = schedule.total_steps(len(data), cfg.batch_groups, cfg.epochs)
    if rms.heads:
        return HeadsEngine(rms, cfg, weights, steps)
    if len(rms.members) > 1 and cfg.stacked:
        stack = Stack.build(rms.members, requires_grad=True, probe=(data.ids, data.mask))
        if stack is not None:
            return StackedEngine(rms, cfg, steps, stack)
    return LoopEngine(rms, cfg, steps)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x[np.isfinite(x)].mean()) if np.isfinite(x).any() else float("nan")


def heldout_eval(engine: Engine, data: GroupTensors, type_names: list[str], utilities, bounded: bool) -> dict:
    """Held-out loss and pairwise accuracy (mean over members), and the shape dependence and saturation
    of the members' mean rewards on the held-out groups (rlhfsim.diagnostics.collapse; no gold used)."""
    logits = engine.score(data)  # [M, H, K]
    with torch.no_grad():
        per = [listwise_loss(lg, data.prefs, data.type_idx, utilities, bounded)[1] for lg in logits]
    valid = (data.index >= 0).cpu().numpy()
    L = np.where(valid, logits.mean(0).cpu().numpy(), np.nan)  # [H, K], NaN on padding
    types = [type_names[i] for i in data.type_idx.tolist()]
    cm = collapse_metrics(L, types, bounded=bounded)
    return {
        "loss": float(np.mean([s["rm/loss"] for s in per])),
        "accuracy": float(np.mean([s["rm/train_acc"] for s in per])),
        "shape_dep": shape_dependence(1 / (1 + np.exp(-L)) if bounded else L),
        "saturation": cm["collapse/saturation"],
    }


def train_reward_models(rms, groups, cfg, type_names: list[str], rng: np.random.Generator) -> dict:
    """Train every member of `rms` on `groups` for up to cfg.epochs (early stopping: cfg.early_stop).

    Members differ by init seed and, per `cfg.ensemble_data`, by data order or a bootstrap resample;
    they train stacked (one vmapped forward for all members) where the architecture allows. Heads of a
    shared trunk (rlhfsim.reward.heads) share one order and differ by init and bootstrap weights.
    Returns the round's `rm/*` training stats (docs/metrics.md).
    """
    es = cfg.early_stop
    if not groups:
        return {"rm/loss": float("nan"), "rm/train_acc": float("nan"), "rm/pairs": 0, "rm/groups": 0, "rm/epochs": 0}
    held = holdout_mask(groups, es.holdout, rms.seed) if es.mode != "none" else np.zeros(len(groups), dtype=bool)
    no_heldout = es.mode != "none" and (held.all() or not held.any())
    if no_heldout:  # too few groups to split: train on everything for the maximum number of epochs
        held[:] = False
    utilities = training_utilities(cfg, type_names)
    data = GroupTensors(rms.tokenizer, [g for g, h in zip(groups, held) if not h], type_names, rms.device)
    hdata = (
        GroupTensors(rms.tokenizer, [g for g, h in zip(groups, held) if h], type_names, rms.device)
        if held.any()
        else None
    )
    M, n = rms.n_members, len(data)
    if rms.heads:  # one shared order [1, E, n] and per-head bootstrap weights [M, n] (or None)
        orders, weights = head_orders(n, M, cfg.epochs, cfg.ensemble_data, rng)
    else:
        orders, weights = member_orders(n, M, cfg.epochs, cfg.ensemble_data, rng), None  # [M, E, n]
    orders = torch.as_tensor(orders, device=rms.device)
    engine = make_engine(rms, cfg, data, weights)
    mode = es.mode if hdata is not None else "none"
    stopper = EarlyStopper(
        mode, es.monitor, es.patience, es.min_delta, es.min_epochs, cfg.epochs, es.min_shape_dep, es.max_saturation
    )
    snaps: dict[int, object] = {}
    for epoch in range(1, cfg.epochs + 1):
        stats: list[dict] = []
        for s in range(0, n, cfg.batch_groups):
            stats += engine.step(data, orders[:, epoch - 1, s : s + cfg.batch_groups], utilities, rms.bounded)
        h = heldout_eval(engine, hdata, type_names, utilities, rms.bounded) if mode != "none" else {}
        stop = stopper.update(epoch, h)
        log.debug("reward epoch %d: held-out %s", epoch, h)
        if mode != "none":  # keep only the weights a stop could go back to
            snaps = {e: v for e, v in snaps.items() if e == stopper.keep_epoch}
            snaps[epoch] = engine.snapshot()
        if stop:
            break
    if stopper.keep_epoch != epoch:
        engine.restore(snaps[stopper.keep_epoch])
    engine.finish()
    out = {
        "rm/loss": float(np.mean([s["rm/loss"] for s in stats])),  # the last trained epoch, mean over members
        "rm/train_acc": float(np.mean([s["rm/train_acc"] for s in stats])),
        **{
            f"rm/{t}_train_acc": _nanmean([s.get(f"rm/train_acc_type{i}", np.nan) for s in stats])
            for i, t in enumerate(type_names)
        },
        "rm/pairs": int(data.prefs.sum().item()),
        "rm/groups": n,
        "rm/epochs": epoch,
        "rm/stacked": int(engine.stacked),
    }
    if es.mode != "none":
        kept = stopper.history[stopper.keep_epoch - 1] if mode != "none" else {}
        out.update(
            {
                "rm/heldout_groups": 0 if hdata is None else len(hdata),
                "rm/heldout_loss": kept.get("loss", float("nan")),
                "rm/heldout_acc": kept.get("accuracy", float("nan")),
                "rm/heldout_shape_dep": kept.get("shape_dep", float("nan")),
                "rm/heldout_saturation": kept.get("saturation", float("nan")),
                "rm/kept_epoch": stopper.keep_epoch,
                "rm/early_stopped": int(stopper.reason != "max_epochs" and not no_heldout),
                "rm/stop_reason": "no_heldout" if no_heldout else stopper.reason,
            }
        )
    return out
