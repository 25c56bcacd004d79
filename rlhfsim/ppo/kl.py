"""KL coefficient controllers: how beta (the weight of the KL-to-reference penalty) evolves.

Both expose `.value` (the current beta), `.update(current_kl, n_steps)` once per PPO iteration,
and `state_dict()` / `load_state_dict()` so a resumed run continues with the same beta.
Pick one by name with `get_kl_controller(name, **kwargs)`.
"""

from __future__ import annotations

import math

import numpy as np


class FixedKLController:
    """Constant beta; `update` does nothing."""

    name = "fixed"

    def __init__(self, beta: float) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.value = float(beta)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the penalty weight stays fixed."""

    def state_dict(self) -> dict:
        return {"name": self.name, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional controller of Ziegler et al. (2019), "Fine-Tuning LMs from Human Preferences".

    After each batch with mean sequence KL `kl` over `n_steps` samples:
        e = clip(kl / target - 1, -0.2, 0.2);   beta <- beta * (1 + e * n_steps / horizon).
    The clip bounds how fast beta can move; `horizon` (in samples) sets the time constant.
    """

    name = "adaptive"

    def __init__(self, init_beta: float, target: float, horizon: float) -> None:
        if not init_beta > 0:
            raise ValueError(f"init_beta must be > 0 for a multiplicative controller, got {init_beta}")
        if not target > 0:
            raise ValueError(f"target KL must be > 0, got {target}")
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.value = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move beta towards the value that keeps the measured KL at `target`."""
        if not math.isfinite(current_kl):
            # a nan beta would silently corrupt every later reward; a diverged run should stop here
            raise ValueError(f"current_kl must be finite, got {current_kl}")
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
        self.target = float(state.get("target", self.target))
        self.horizon = float(state.get("horizon", self.horizon))


KL_CONTROLLERS: dict[str, type] = {"fixed": FixedKLController, "adaptive": AdaptiveKLController}


def get_kl_controller(name: str, **kwargs) -> FixedKLController | AdaptiveKLController:
    """Build a KL controller by registry name, e.g. get_kl_controller("adaptive", init_beta=0.1,
    target=6.0, horizon=10000). Unknown names raise ValueError listing the valid ones."""
    if name not in KL_CONTROLLERS:
        raise ValueError(f"unknown KL controller {name!r}; valid: {', '.join(sorted(KL_CONTROLLERS))}")
    return KL_CONTROLLERS[name](**kwargs)
