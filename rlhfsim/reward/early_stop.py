"""Reward-model early stopping and the data each member sees: held-out slice, bootstrap, data order.

Pure functions and a small state machine; the trainer calls them once per round / epoch.

Stop rules (config `reward.early_stop.mode`), checked after every epoch from `min_epochs` on:
    none      train `reward.epochs` epochs (the maximum in every mode)
    patience  held-out loss (lower is better) or accuracy (higher is better) has not improved by more
              than `min_delta` for `patience` epochs; the weights of the best epoch are kept
    collapse  the held-out shape dependence (``shape_dependence`` of rlhfsim.diagnostics.collapse, 0 = every
              prompt the same standardised profile) falls below `min_shape_dep` or the saturation rises
              above `max_saturation`; the weights of the last epoch that crossed neither are kept
              (the first epoch's if even that one crossed)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

STOP_REASONS = ("max_epochs", "patience", "shape_dep", "saturation", "no_heldout")


def holdout_mask(groups, frac: float, seed: int) -> np.ndarray:
    """``[G]`` bool: which buffer groups are held out. Decided per group by a hash of (seed, round,
    prompt id, prompt text), so a group stays on the same side in every later round (a warm-started
    model never trains on what it is validated on) and the split is reproducible."""
    if frac <= 0:
        return np.zeros(len(groups), dtype=bool)
    keys = [f"{seed}:{g.round}:{g.prompt.id}:{g.prompt.text}" for g in groups]
    u = np.array([zlib.crc32(k.encode()) / 2**32 for k in keys])
    return u < frac


def bootstrap_indices(n: int, members: int, rng: np.random.Generator) -> np.ndarray:
    """``[M, n]`` bootstrap resamples (with replacement) of ``n`` training groups, one per member."""
    return rng.integers(0, n, size=(members, n))


def bootstrap_weights(n: int, members: int, rng: np.random.Generator) -> np.ndarray:
    """``[M, n]`` float counts: how often each of ``n`` groups appears in member m's bootstrap resample
    (the same draws as `bootstrap_indices`, so each row is Multinomial(n, 1/n); about 37% zeros)."""
    idx = bootstrap_indices(n, members, rng)
    return np.stack([np.bincount(i, minlength=n) for i in idx]).astype(np.float64)


def head_orders(
    n: int, heads: int, epochs: int, data: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """What ensemble heads (`reward.ensemble_kind: heads`) see: ``(orders [1, epochs, n], weights [M, n] | None)``.

    Heads share one forward, so they share one order (one shuffle per epoch). ``bootstrap`` gives each head the
    multiplicities of its own bootstrap resample as group weights (`bootstrap_weights`), drawn once per round: a
    minibatch's weighted loss is the loss of that minibatch with each group repeated w times, so over an epoch a head
    sees its resample's groups with their multiplicities (Osband et al. 2016 use such masks), only split into the
    shared minibatches rather than its own. ``same_order``: no weights (heads differ by
    their initial weights only). ``own_order`` cannot apply and is refused (the config maps it away).
    For one head with ``same_order`` the orders are the draws `member_orders` makes for one member.
    """
    if data not in ("same_order", "bootstrap"):
        raise ValueError(
            f"ensemble heads share one data order: ensemble_data {data!r} cannot apply (same_order or bootstrap)"
        )
    weights = bootstrap_weights(n, heads, rng) if data == "bootstrap" else None
    return member_orders(n, 1, epochs, "same_order", rng), weights


def member_orders(n: int, members: int, epochs: int, data: str, rng: np.random.Generator) -> np.ndarray:
    """``[M, epochs, n]`` group indices each member visits, epoch by epoch.

    ``data``: ``own_order`` (each member its own shuffle each epoch), ``same_order`` (one shuffle per
    epoch shared by all members: they differ by init only) or ``bootstrap`` (each member a bootstrap
    resample of the groups, drawn once per round, in its own order each epoch). Draws are made up
    front for the maximum number of epochs, member by member, so early stopping never shifts the
    random stream (and for one member this is exactly one permutation per epoch).
    """
    if data == "same_order":
        perms = np.stack([rng.permutation(n) for _ in range(epochs)])  # [E, n]
        return np.broadcast_to(perms, (members, epochs, n)).copy()
    base = bootstrap_indices(n, members, rng) if data == "bootstrap" else np.broadcast_to(np.arange(n), (members, n))
    return np.stack([np.stack([base[m][rng.permutation(n)] for _ in range(epochs)]) for m in range(members)])


@dataclass
class EarlyStopper:
    """Per-round stop decision from per-epoch held-out measurements (epochs counted from 1)."""

    mode: str = "none"
    monitor: str = "loss"
    patience: int = 1
    min_delta: float = 0.0
    min_epochs: int = 1
    max_epochs: int = 2
    min_shape_dep: float | None = None
    max_saturation: float | None = None
    best_epoch: int = 0
    best: float = float("nan")
    keep_epoch: int = 0  # the epoch whose weights the round ends with
    reason: str = "max_epochs"
    history: list[dict] = field(default_factory=list)

    def _better(self, v: float) -> bool:
        if not np.isfinite(v):
            return False
        if not np.isfinite(self.best):
            return True
        return v < self.best - self.min_delta if self.monitor == "loss" else v > self.best + self.min_delta

    def update(self, epoch: int, heldout: dict) -> bool:
        """Record epoch ``epoch``'s held-out measurements; True when training should stop now.

        ``heldout`` holds ``loss``, ``accuracy``, ``shape_dep``, ``saturation`` (NaN where unmeasured).
        """
        self.history.append({"epoch": epoch, **heldout})
        if self.mode == "patience":
            if self._better(heldout[self.monitor]):
                self.best, self.best_epoch = heldout[self.monitor], epoch
            self.keep_epoch = self.best_epoch or epoch
            if epoch >= self.min_epochs and epoch - (self.best_epoch or 0) >= self.patience:
                self.reason = "patience"
                return True
        elif self.mode == "collapse":
            ci, sat = heldout.get("shape_dep", np.nan), heldout.get("saturation", np.nan)
            crossed = None
            if self.min_shape_dep is not None and np.isfinite(ci) and ci < self.min_shape_dep:
                crossed = "shape_dep"
            elif self.max_saturation is not None and np.isfinite(sat) and sat > self.max_saturation:
                crossed = "saturation"
            if crossed is None:
                self.keep_epoch = epoch
            elif epoch >= self.min_epochs:
                self.keep_epoch = self.keep_epoch or epoch
                self.reason = crossed
                return True
            else:
                self.keep_epoch = epoch  # below min_epochs: nothing earlier to go back to
        else:
            self.keep_epoch = epoch
        if epoch >= self.max_epochs:
            self.reason = "max_epochs"
            return True
        return False
