"""Divergence guards: non-finite losses, rewards or logprobs, or exploding rewards, end the run or skip the round.

The loop calls `guard.check(phase, round, values)` after each phase; a bad value raises `Diverged` naming the
round, the phase and the quantity. `guard.round(...)` wraps a round: on `Diverged` it appends a diagnostic
row to metrics.jsonl (the round's metrics so far plus `guard/*`), then either marks the run diverged and
re-raises (`guards.on_divergence: stop`; the CLI exits with code 3) or undoes the round's updates and lets
the loop go on (`skip_round`). Files of earlier rounds are never touched.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from contextlib import contextmanager

from rlhfsim.loop_config import GuardsConfig  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

# what each phase must keep finite; logprobs enter through entropies and KLs. The policy phase watches what the
# optimiser declares (PolicyOptimizer.watched), and those must all be there: a missing one is an error, not a skip.
WATCHED = {
    "setup": ("sft/final_loss",),
    "reward": ("rm/loss",),
    "diagnose": ("collapse/logit_absmax",),
    "evaluate": ("eval/proxy", "eval/kl", "eval/entropy"),
}
REQUIRED = ("policy", "evaluate")  # phases that always measure every watched quantity
# reward-valued quantities, also held to guards.max_abs_reward (reward explosion)
REWARD_VALUED = ("collapse/logit_absmax", "objective/scores", "eval/proxy")
# which learning rate to lower when a phase diverges
LR_HINT = {
    "setup": "policy.sft_lr (and delete the cached SFT checkpoint under policy.cache_dir)",
    "reward": "reward.lr",
    "diagnose": "reward.lr",
    "policy": "optimizer.lr",
    "evaluate": "optimizer.lr",
}


class MissingWatched(RuntimeError):
    """A guarded quantity was not measured where it must be: the guard would be blind, so the run stops."""


class Diverged(RuntimeError):
    """A guarded quantity went non-finite or beyond its bound."""

    def __init__(self, round_: int, phase: str, quantity: str, value: float, bound: float | None = None):
        self.round, self.phase, self.quantity, self.value, self.bound = round_, phase, quantity, value, bound
        what = (
            f"|{quantity}| = {abs(value):.4g} exceeds guards.max_abs_reward = {bound:g}"
            if bound is not None
            else f"{quantity} = {value}"
        )
        super().__init__(
            f"run diverged in round {round_}, phase {phase}: {what}. Lower {LR_HINT.get(phase, 'the learning rate')}"
            + (", raise guards.max_abs_reward if rewards of this size are expected" if bound is not None else "")
            + ", or set guards.on_divergence: skip_round to skip such rounds"
        )

    def info(self) -> dict:
        return {
            "round": self.round,
            "phase": self.phase,
            "quantity": self.quantity,
            "value": _show(self.value),
            "bound": self.bound,
        }

    def row(self) -> dict:
        """The guard/* columns of the diagnostic metrics row (the value as text: JSON has no NaN or inf)."""
        return {
            "guard/diverged": 1,
            "guard/phase": self.phase,
            "guard/quantity": self.quantity,
            "guard/value": _show(self.value),
            "guard/bound": self.bound,
            "guard/message": str(self),
        }


def _show(v: float) -> str | float:
    return v if math.isfinite(v) else str(v)


def check(cfg, phase: str, round_: int, values: dict, watched: tuple[str, ...] | None = None) -> None:
    """Raise Diverged on the first watched quantity of `phase` that is non-finite or beyond the reward bound.
    `watched` overrides WATCHED[phase] (the optimiser's own names); in REQUIRED phases a missing one raises MissingWatched."""
    keys = WATCHED[phase] if watched is None else watched
    for key in keys:
        v = values.get(key)
        if v is None:
            if phase in REQUIRED:
                raise MissingWatched(
                    f"round {round_}, phase {phase}: watched metric {key!r} is missing (got {sorted(values)}); "
                    "the divergence guard cannot check it, so the run stops"
                )
            continue  # not measured here (e.g. no SFT when loaded from cache without stats, no reward training on gold)
        v = float(v)
        if not math.isfinite(v):
            raise Diverged(round_, phase, key, v)
        if key in REWARD_VALUED and abs(v) > cfg.max_abs_reward:
            raise Diverged(round_, phase, key, v, cfg.max_abs_reward)


class Guard:
    """Divergence handling for one run: checks, the diagnostic row, and stop or skip_round."""

    def __init__(self, cfg, sim, run_dir, save_checkpoints: bool):
        self.cfg, self.sim, self.run, self.save_checkpoints = cfg, sim, run_dir, save_checkpoints

    def check(self, phase: str, round_: int, values: dict) -> None:
        """The phase's watched values, then the weights it trained (NaN weights would crash the next sampling)."""
        import torch  # here, so the CLI can import Diverged without torch

        check(self.cfg, phase, round_, values, self.sim.opt.watched if phase == "policy" else None)
        for name, module in self._trained(phase).items():
            if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
                raise Diverged(round_, phase, f"{name} weights", float("nan"))

    def _trained(self, phase: str) -> dict:
        sim = self.sim
        if phase == "setup":
            return {"policy": sim.policy}
        if phase == "reward":
            return {f"rm{m}": rm for m, rm in enumerate(sim.rms.members)}
        if phase == "policy":
            return sim.opt.models()
        return {}

    def setup(self, sft_stats: dict) -> None:
        """Guard the SFT warm start before anything samples from it; divergence here always stops (no round to skip)."""
        with self.round(0, {"round": 0, **sft_stats}, [], can_skip=False):
            self.check("setup", 0, sft_stats)

    @contextmanager
    def round(self, round_: int, row: dict, steps: list, can_skip: bool = True):
        snap = self._snapshot() if can_skip and self.cfg.on_divergence == "skip_round" else None
        try:
            yield
        except Diverged as e:
            row.update(e.row())
            self.run.log_steps(steps)  # the PPO iterations up to the bad one: where it went wrong
            if snap is None:
                row["guard/skipped"] = 0
                self.run.log_round(row)
                self.run.set_status("diverged", divergence=e.info(), guards=self.cfg.model_dump(mode="json"))
                self.run.close()
                log.error("%s", e)
                raise
            row["guard/skipped"] = 1
            self._restore(snap)
            self.run.log_round(row)
            if self.save_checkpoints:  # the skipped round is a complete round: resume continues after it
                self.run.save_checkpoint(round_, *self.sim.state(round_))
            log.warning("%s; round %d skipped, its updates undone", e, round_)

    def _snapshot(self) -> dict:
        """Models, optimiser, KL controller and buffer as the round starts (RNG streams are left to move on)."""
        models, state = self.sim.state(0)
        return {
            "models": {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in models.items()},
            "optimizer": copy.deepcopy(state["optimizer"]),
            "buffer": state["buffer"],
            "iterated": copy.deepcopy(state["iterated"]),
        }

    def _restore(self, snap: dict) -> None:
        self.sim.load_iterated(copy.deepcopy(snap["iterated"]))  # first: drops a reward-model snapshot the round added
        for k, m in self.sim.state(0)[0].items():
            m.load_state_dict(snap["models"][k])
        self.sim.opt.load_state_dict(copy.deepcopy(snap["optimizer"]))
        self.sim.buffer.load_state_dict(json.loads(snap["buffer"]))
