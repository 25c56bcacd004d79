"""Every round's reward model, kept, and the reward over them (reward.across_rounds; issue 36, after Wolf, Kirk &
Musolesi 2025): the optimiser can see the last model (the default: no snapshots are kept), the mean or the minimum
of all rounds' rewards, or one model whose parameters are the mean of the rounds' parameters.

`RoundRewards` keeps each round's trained weights (a snapshot per round, in memory and in the round's checkpoint)
and scoring copies of the reward model: one per round for mean/min, one averaged model for weight_average. The
Proxy (rlhfsim.reward.proxy) reads their values as members [R, N] and aggregates them with the ensemble
aggregators (mean; min = wco on per-round standardised values). Needs one member per round (ensemble_size 1).
"""

from __future__ import annotations

import copy

import numpy as np

from rlhfsim.ops import clone_state, mean_states

ACROSS_ROUNDS = ("last", "mean", "min", "weight_average")
AGGREGATION = {"mean": "mean", "min": "wco", "weight_average": "mean"}  # across rounds -> rlhfsim.reward.ensemble name


def _scorer(rms, states: list[dict]):
    """A scoring copy of the reward models `rms` with the given member weights (the live models are not touched)."""
    c = copy.copy(rms)
    c.members = [copy.deepcopy(m) for m in rms.members]
    for m, s in zip(c.members, states):
        m.load_state_dict(s)
        m.requires_grad_(False)
    return c


class RoundRewards:
    """The rounds' reward-model snapshots and what the optimiser's reward reads of them (module doc)."""

    def __init__(self, mode: str):
        if mode not in ACROSS_ROUNDS[1:]:
            raise ValueError(f"reward.across_rounds {mode!r}: RoundRewards is for {', '.join(ACROSS_ROUNDS[1:])}")
        self.mode = mode
        self.states: dict[int, list[dict]] = {}  # round -> each member's weights after that round's training
        self.scorers: dict[
            int, object
        ] = {}  # mean/min: round -> scoring copy; weight_average: {last round: the average}

    @property
    def aggregation(self) -> str:
        return AGGREGATION[self.mode]

    def add(self, round_: int, rms) -> None:
        """Snapshot the reward models as trained in round `round_` and rebuild what scores."""
        self.states[round_] = [clone_state(m) for m in rms.members]
        self._rebuild(rms)

    def _rebuild(self, rms) -> None:
        rounds = sorted(self.states)
        if self.mode == "weight_average":
            avg = [mean_states([self.states[r][m] for r in rounds]) for m in range(len(rms.members))]
            self.scorers = {rounds[-1]: _scorer(rms, avg)} if rounds else {}
        else:
            self.scorers = {r: self.scorers[r] if r in self.scorers else _scorer(rms, self.states[r]) for r in rounds}

    def rewards(self, prompts: list[str], texts: list[str]) -> np.ndarray:
        """[R, N] each kept round's reward (mean/min), or [1, N] the averaged model's (weight_average)."""
        if not self.scorers:
            raise RuntimeError("reward.across_rounds: no round's reward model is kept yet (phase 5 adds them)")
        return np.concatenate([self.scorers[r].rewards(prompts, texts) for r in sorted(self.scorers)])

    def truncate(self, rounds: list[int], rms) -> None:
        """Keep only these rounds (a skipped round's snapshot is undone)."""
        self.states = {r: s for r, s in self.states.items() if r in set(rounds)}
        self.scorers = {}
        self._rebuild(rms)

    def state_dict(self) -> dict:
        return {"mode": self.mode, "states": {str(r): s for r, s in self.states.items()}}

    def load_state_dict(self, state: dict, rms) -> None:
        self.states = {int(r): s for r, s in state["states"].items()}
        self.scorers = {}
        self._rebuild(rms)
