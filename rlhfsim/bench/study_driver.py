"""One timed `rlhfsim run` for `rlhfsim bench --only study`, with its seconds split by phase.

Run as a script (`python .../study_driver.py ARGS`) with PYTHONPATH at the tree under test, so the same driver times
the current code and a baseline commit (rlhfsim.bench.study unpacks one). It imports only the standard library before
the tree's `rlhfsim`, and wraps the functions a run calls by name, skipping any a tree does not have.

Accounting: a stack of phase timers; a phase's time is its own (exclusive of phases nested in it), except for the
absorbing phases (policy update, reward training, init, report), which keep everything they call: the PPO iteration's
own sampling is policy-update time. `other` is the run's wall time not inside any phase. With --floor every aten
GEMM is also recorded under the phase that issued it (rlhfsim.bench.floor; slow, so that run is not timed).
"""

from __future__ import annotations

import json
import os
import sys
import time

T_START = time.perf_counter()
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # the script's own folder would shadow top-level modules (common, reward, ...)

PHASES = (
    "startup",
    "init",
    "sampling",
    "gold scoring",
    "evaluation",
    "RM scoring",
    "diagnosis",
    "probe",
    "reward training",
    "policy update",
    "checkpoint/IO",
    "report",
    "other",
)
PPO_PHASES = (
    "ppo sampling",
    "ppo reference",
    "ppo update",
)  # --ppo-phases: PPO's iteration split (its scoring is RM/gold scoring)
ABSORBING = {"init", "reward training", "policy update", "report"}
SECONDS = dict.fromkeys(PHASES, 0.0)
CPU = dict.fromkeys(
    PHASES, 0.0
)  # the same split in process CPU seconds: on a loaded machine, what 1 thread would take alone
STACK: list[list] = []  # [label, start, seconds of nested phases, cpu start, cpu seconds of nested phases]


def current_phase() -> str:
    return STACK[-1][0] if STACK else "other"


def wrap(owner, name: str, label) -> None:
    """Time `owner.name` under `label` (a phase name, or a function of the enclosing phase returning one)."""
    fn = getattr(owner, name, None)
    if fn is None or getattr(fn, "_study_wrapped", False):
        return

    def timed(*args, **kwargs):
        if STACK and STACK[-1][0] in ABSORBING:  # inside an absorbing phase: its time
            return fn(*args, **kwargs)
        STACK.append(
            [label(current_phase()) if callable(label) else label, time.perf_counter(), 0.0, time.process_time(), 0.0]
        )
        try:
            return fn(*args, **kwargs)
        finally:
            lab, t0, nested, c0, c_nested = STACK.pop()
            spent, cpu = time.perf_counter() - t0, time.process_time() - c0
            SECONDS[lab] += spent - nested
            CPU[lab] = CPU.get(lab, 0.0) + cpu - c_nested
            if STACK:
                STACK[-1][2] += spent
                STACK[-1][4] += cpu

    timed._study_wrapped = True
    timed.__wrapped__ = fn
    setattr(owner, name, timed)


def install(ppo_phases: bool = False) -> None:
    import importlib

    def mod(name):
        try:
            return importlib.import_module(name)
        except ImportError:
            return None

    loop, pe, base, build = (
        mod("rlhfsim.loop"),
        mod("rlhfsim.diagnostics.policy_eval"),
        mod("rlhfsim.optim.base"),
        mod("rlhfsim.reward.build"),
    )
    wrap(pe, "sample", "sampling")
    # the shared rollout (optim/base.py) samples for phase 2 and, inside an optimiser's iteration, for its rollout
    wrap(base, "sample", lambda outer: "ppo sampling" if outer == "policy update" else "sampling")
    for world in ("rlhfsim.world.synthetic", "rlhfsim.world.graded", "rlhfsim.world.text"):
        w = mod(world)
        for cls in vars(w).values() if w else ():
            if isinstance(cls, type) and "gold" in vars(cls):
                wrap(cls, "gold", "gold scoring")
    wrap(loop.Simulation, "evaluate", "evaluation")
    wrap(loop, "policy_metrics", "evaluation")
    for name in (
        "rlhfsim.reward.model:RewardModels",
        "rlhfsim.reward.heads:HeadRewardModels",
        "rlhfsim.reward.hf_model:CheckpointRewardModels",
    ):
        m, cls = name.split(":")
        if (module := mod(m)) is not None and hasattr(module, cls):
            wrap(getattr(module, cls), "logits", "RM scoring")
    for f in (
        "diagnose_reward_model",
        "diagnose_training_groups",
        "best_of_n_metrics",
        "fit_member_scale",
        "audit_reward_model",
        "fit_recalibration",
        "calibrate_noise",
    ):
        wrap(loop, f, "diagnosis")
    wrap(loop.Simulation, "probe_set", "probe")
    wrap(build, "train_reward_models", "reward training")
    wrap(loop.Simulation, "__init__", "init")
    for f in ("rewards_table", "sample_rows"):
        wrap(loop, f, "checkpoint/IO")
    from rlhfsim.tracking import RunDir  # torch, pandas: imported by install(), inside the timed startup

    for f in (
        "create",
        "write_config",
        "write_rewards",
        "write_samples",
        "log_steps",
        "log_round",
        "save_checkpoint",
        "metrics",
        "close",
    ):
        wrap(RunDir, f, "checkpoint/IO")
    wrap(RunDir, "write_summary", "report")
    wrap(loop, "write_run_figure", "report")
    diag = mod("rlhfsim.diagnostics")
    diag.summarize = importlib.import_module("rlhfsim.diagnostics.summary").summarize
    wrap(diag, "summarize", "report")
    if ppo_phases:  # the iteration is no longer absorbing: its sampling, reference pass and update are timed apart
        ABSORBING.discard("policy update")
        SECONDS.update(dict.fromkeys(PPO_PHASES, 0.0))
        trainer = importlib.import_module("rlhfsim.ppo.trainer")
        wrap(trainer, "sample", "ppo sampling")  # trees whose PPO rollout was its own
        wrap(
            trainer, "response_logits", "ppo reference"
        )  # pg_cos, when on (and the rollout's reference pass, in such trees)
        wrap(base, "response_logits", "ppo reference")  # the shared rollout's reference pass
        wrap(trainer.PPOTrainer, "update", "ppo update")
    build_optimizer = loop.build_optimizer

    def build_and_wrap(*args, **kwargs):  # the optimiser's class is known once built
        opt = build_optimizer(*args, **kwargs)
        wrap(type(opt), "iteration", "policy update")
        return opt

    loop.build_optimizer = build_and_wrap


class PhaseGemms:
    """A dispatch mode that records every GEMM under the phase running it (rlhfsim.bench.floor.GemmRecorder's rule)."""

    def __new__(cls):
        from rlhfsim.bench.floor import GEMMS, GemmRecorder  # torch: only with --floor

        class Recorder(GemmRecorder):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func in GEMMS:
                    tensors = [a for a in args if hasattr(a, "shape")]
                    self.calls.append(
                        (current_phase(), GEMMS[func], tuple(tuple(t.shape) for t in tensors), tensors[-1].dtype)
                    )
                return func(*args, **(kwargs or {}))

        return Recorder()


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--json", required=True, help="where the phase seconds (and floors) go")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--floor", action="store_true", help="record GEMMs per phase and replay them (untimed run)")
    p.add_argument(
        "--ppo-phases", action="store_true", help="split PPO's iterations into sampling, reference pass and update"
    )
    a = p.parse_args(argv)
    STACK.append(["startup", T_START, 0.0, 0.0, 0.0])
    import torch

    from rlhfsim.config import load_config  # torch, transformers: timed as the run's startup (STACK)
    from rlhfsim.loop import run  # the loop: timed as the run's startup

    install(a.ppo_phases)
    cfg = load_config(a.config, a.set)
    _, t0, nested, _, c_nested = STACK.pop()
    SECONDS["startup"] += time.perf_counter() - t0 - nested
    CPU["startup"] += time.process_time() - c_nested
    t_run = time.perf_counter()
    rec = PhaseGemms() if a.floor else None
    if rec is not None:
        with rec:
            run(cfg, out=a.out)
    else:
        run(cfg, out=a.out)
    total = time.perf_counter() - T_START
    SECONDS["other"] += total - sum(SECONDS.values())
    CPU["other"] += time.process_time() - sum(CPU.values())
    res = {
        "seconds": SECONDS,
        "cpu_seconds": CPU,
        "total_s": total,
        "run_s": time.perf_counter() - t_run,
        "rounds": cfg.loop.rounds,
        "threads": torch.get_num_threads(),
    }
    if rec is not None:
        res["floor"] = replay_by_phase(rec.calls)
    with open(a.json, "w") as f:
        json.dump(res, f)
    return 0


def replay_by_phase(calls: list, repeats: int = 3) -> dict:
    """{phase: {gflop, floor_s}}: each distinct recorded GEMM timed alone (rlhfsim.bench.floor), times its count."""
    import collections

    import torch

    from rlhfsim.bench.floor import _replay_s, gemm_flops  # torch: only with --floor

    out: dict = {}
    with torch.autocast("cpu", enabled=False):
        for (phase, op, shapes, dtype), n in collections.Counter(calls).items():
            d = out.setdefault(phase, {"gflop": 0.0, "floor_s": 0.0, "calls": 0})
            d["gflop"] += n * gemm_flops(op, shapes) / 1e9
            d["floor_s"] += n * _replay_s(op, shapes, dtype, repeats)
            d["calls"] += n
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
