"""Iterated RLHF's choices between rounds (issue 36; Wolf, Kirk & Musolesi 2025, arXiv 2505.18126): where each
round's policy optimisation starts (loop.policy_start) and which policy anchors its KL penalty (loop.kl_anchor).

    continue     the last policy, optimiser state kept (the loop's behaviour before issue 36; the default)
    sft          the SFT policy and the optimiser's initial value model, optimiser state (AdamW, KL controller) reset
    interpolate  LITI: start_r = (1 - eta) * start_{r-1} + eta * last policy, parameter by parameter (start_1 = SFT),
                 for every model the optimiser trains (policy, value model); optimiser state reset

The math is `interpolate_states` and `mean_states` (pure, in rlhfsim/ops.py); `PolicyStart` holds the state between rounds (the LITI
start point, checkpointed with the round) and applies the choice at the start of phase 7.
"""

from __future__ import annotations

import copy

import torch

from rlhfsim.ops import clone_state, interpolate_states, mean_states  # noqa: F401 (the math; re-exported)

POLICY_STARTS = ("continue", "sft", "interpolate")  # the registry below; loop.policy_start names one
KL_ANCHORS = ("sft", "round_start")


class PolicyStart:
    """The policy's start each round (loop.policy_start) for an optimiser `opt` (its `models()` and state dict).

    Captures, at construction (before any update), every trained model's initial weights (the SFT policy and the
    value model as built) and the optimiser's initial state, so `sft` restores exactly what round 1 started from."""

    def __init__(self, mode: str, eta: float, opt):
        if mode not in STARTS:
            raise ValueError(f"unknown loop.policy_start {mode!r}; valid: {', '.join(STARTS)}")
        self.mode, self.eta = mode, float(eta)
        keep = mode != "continue"  # continue never goes back: no copy of the models held for it
        self.initial = {name: clone_state(m) for name, m in opt.models().items()} if keep else {}
        self.initial_opt = copy.deepcopy(opt.state_dict()) if keep else {}
        self.start: dict | None = None  # LITI: the previous round's start point {model: state}; None = the initial

    def apply(self, opt, round_: int) -> None:
        """Set the optimiser's models (and state) to this round's start; called before the round's first update."""
        STARTS[self.mode](self, opt, round_)

    def _load(self, opt, states: dict) -> None:
        for name, m in opt.models().items():
            m.load_state_dict(states[name])
        done = opt.iterations_done  # a diagnostics cadence (pg_cos_every), not optimiser state: kept
        opt.load_state_dict(copy.deepcopy(self.initial_opt))
        opt.iterations_done = done

    def state_dict(self) -> dict:
        return {"start": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.start = state.get("start")


def _continue(ps: PolicyStart, opt, round_: int) -> None:
    pass


def _sft(ps: PolicyStart, opt, round_: int) -> None:
    ps._load(opt, ps.initial)


def _interpolate(ps: PolicyStart, opt, round_: int) -> None:
    prev = ps.start if ps.start is not None else ps.initial
    last = {name: clone_state(m) for name, m in opt.models().items()}
    ps.start = {name: interpolate_states(prev[name], last[name], ps.eta) for name in last}
    ps._load(opt, ps.start)


STARTS = {"continue": _continue, "sft": _sft, "interpolate": _interpolate}
assert tuple(STARTS) == POLICY_STARTS


class Anchor:
    """The optimiser's KL reference (loop.kl_anchor): the frozen SFT policy itself (`sft`: one module, nothing
    copied), or a copy reset to the policy's weights at each round's start (`round_start`). Evaluations always
    measure KL from the SFT policy (rlhfsim.loop.Simulation.ref), whichever anchor the penalty uses."""

    def __init__(self, mode: str, sft_policy: torch.nn.Module):
        if mode not in KL_ANCHORS:
            raise ValueError(f"unknown loop.kl_anchor {mode!r}; valid: {', '.join(KL_ANCHORS)}")
        self.mode = mode
        self.module = sft_policy if mode == "sft" else copy.deepcopy(sft_policy)

    def reset(self, policy: torch.nn.Module) -> None:
        """At the round's start (after the policy start is applied): round_start copies the policy's weights."""
        if self.mode == "round_start":
            self.module.load_state_dict(policy.state_dict())
