"""Test-only fault injection: SIGKILL this process at a named moment, so crash-safety tests hit it exactly.

    RLHFSIM_KILL_AT=<phase>:<round>:<event>[:<n>]     (n defaults to 1)

kills the process (SIGKILL: no cleanup, no flush) at the n-th <event> seen while the loop is in <phase> of
<round>. Phases are the loop's reporter phases (generate, annotate, reward, diagnose, policy, evaluate; the
file writes of phase 9 happen during `evaluate`), plus `setup` (round 0: SFT warm start and the round-0
evaluation). Events: `step` (any optimiser step), a file name such as `metrics.jsonl` or `config.yaml`
(killed half way through the write: a torn line for appends, a complete temp file not yet renamed
otherwise), and `publish` (a checkpoint written but not yet renamed into place).

Unset, as outside tests, `arm` does nothing and `hit` is a dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "RLHFSIM_KILL_AT"
_target: tuple[str, int, str, int] | None = None
_where = ["setup", 0]  # the loop's current phase and round
_counts: dict[str, int] = {}


def arm(reporter):
    """Read RLHFSIM_KILL_AT; when set, count optimiser steps and follow the reporter's phases. Returns the reporter."""
    global _target
    spec = os.environ.get(ENV)
    if not spec:
        return reporter
    parts = spec.split(":")
    _target = (parts[0], int(parts[1]), parts[2], int(parts[3]) if len(parts) > 3 else 1)
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(lambda *_: hit("step"))
    inner_phase = reporter.phase

    def phase(round_: int, name: str) -> None:
        _where[:] = [name, round_]
        _counts.clear()
        inner_phase(round_, name)

    reporter.phase = phase
    return reporter


def armed(event: str) -> bool:
    """True when the next `hit(event)` may kill: lets a writer split its write in two only under test."""
    return _target is not None and _target[2] == event


def hit(event: str) -> None:
    if _target is None or _target[2] != event or (_target[0], _target[1]) != tuple(_where):
        return
    _counts[event] = _counts.get(event, 0) + 1
    if _counts[event] == _target[3]:
        os.kill(os.getpid(), signal.SIGKILL)
