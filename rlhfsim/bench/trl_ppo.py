"""`rlhfsim bench --only trl_ppo`: TRL's last PPO trainer and rlhfsim's PPO iteration, side by side.

TRL's PPOTrainer (the PPOv2 design) left TRL after 1.12, and the project's TRL is newer, so it runs in a
side environment (scripts/trl_ppo_venv.sh) as a subprocess: `trl_ppo_driver.py` at the same shape and
thread count. The machine is shared and its speed drifts, so the arms are interleaved: each alternation
runs TRL without its forced gc.collect() calls ("at its best"), TRL as shipped, then rlhfsim with a
separate value model and with a shared value head, and every arm is summarised over all alternations.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import torch

from rlhfsim.bench.common import Shape, timeit
from rlhfsim.bench.sections import gold_stand_in, ppo_setup
from rlhfsim.config import ConfigError

SETUP_HINT = "create it with scripts/trl_ppo_venv.sh DIR and pass --trl-python DIR/bin/python"
ARMS = ("trl_nogc", "trl_gc", "separate", "shared")  # one alternation, in run order


def driver_path() -> Path:
    return Path(__file__).with_name("trl_ppo_driver.py")


def driver_command(python: str, shape: Shape, threads: int, no_gc: bool) -> list[str]:
    """The driver's command line at `shape` (its flags mirror bench's shape flags)."""
    cmd = [
        python,
        str(driver_path()),
        "--threads",
        str(threads),
        "--iterations",
        str(shape.repeats),
        "--warmup",
        str(shape.warmup),
        "--layers",
        str(shape.n_layer),
        "--width",
        str(shape.n_embd),
        "--heads",
        str(shape.n_head),
        "--vocab",
        str(shape.vocab),
        "--prompts",
        str(shape.prompts),
        "--prompt-len",
        str(shape.prompt_len),
        "--response-len",
        str(shape.response_len),
    ]
    return cmd + (["--no-gc"] if no_gc else [])


def parse_driver_output(stdout: str) -> dict:
    """The driver's result: the last stdout line that is a JSON object (TRL prints its own lines before it)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON result line in the driver's output")


def run_driver(cmd: list[str], timeout_s: float = 1800) -> dict:
    """Run the driver; a side environment that cannot run it is a setup error (exit 2), not a traceback."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except OSError as e:
        raise ConfigError(f"--trl-python {cmd[0]}: cannot run it ({e}); {SETUP_HINT}") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise ConfigError(
            f"--trl-python {cmd[0]}: the TRL PPO driver failed (exit {proc.returncode}); {SETUP_HINT}.\n{tail}"
        )
    try:
        return parse_driver_output(proc.stdout)
    except ValueError as e:
        raise ConfigError(f"--trl-python {cmd[0]}: {e}; {SETUP_HINT}") from None


def check_trl_python(path: str | None) -> str:
    if not path:
        raise ConfigError(
            f"--only trl_ppo needs --trl-python PATH, the python of a side environment with TRL's last "
            f"PPO trainer; {SETUP_HINT}"
        )
    if not Path(path).is_file():
        raise ConfigError(f"--trl-python {path}: no such file; {SETUP_HINT}")
    return path


def summarize(alternations: list[dict[str, list[float]]]) -> dict:
    """Per arm, the median (and min) iteration seconds over all alternations' timed iterations, and TRL/rlhfsim ratios.

    `alternations`: one dict per alternation mapping each arm in ARMS to its timed iteration seconds. The
    headline ratios divide the pooled medians, `min_ratio_*` the fastest iterations; `paired_*` are the
    per-alternation ratios of medians (each pair ran within the same minutes, so their spread shows how much
    the machine's drift moved them).
    """
    if not alternations:
        raise ValueError("no alternations to summarise")
    out: dict = {}
    for arm in ARMS:
        pooled = [t for alt in alternations for t in alt[arm]]
        out[f"{arm}_s"] = statistics.median(pooled)
        out[f"{arm}_min_s"] = min(pooled)
        out[f"{arm}_per_alternation_s"] = [statistics.median(alt[arm]) for alt in alternations]
    for trl in ("trl_nogc", "trl_gc"):
        for ours in ("separate", "shared"):
            out[f"ratio_{trl}_vs_{ours}"] = out[f"{trl}_s"] / out[f"{ours}_s"]
            out[f"min_ratio_{trl}_vs_{ours}"] = out[f"{trl}_min_s"] / out[f"{ours}_min_s"]
            out[f"paired_{trl}_vs_{ours}"] = [
                a / b for a, b in zip(out[f"{trl}_per_alternation_s"], out[f"{ours}_per_alternation_s"])
            ]
    # > ~1.3: the machine's load changed between alternations (other processes); the minima are then the
    # steadier comparison, and --threads 1 is immune to the worst of it (see docs/performance.md)
    out["alternation_spread"] = max(
        max(out[f"{arm}_per_alternation_s"]) / min(out[f"{arm}_per_alternation_s"]) for arm in ARMS
    )
    out["alternations"] = len(alternations)
    return out


def bench_trl_ppo(shape: Shape, trl_python: str | None, alternations: int = 3) -> dict:
    """Seconds per PPO iteration: TRL (without and with gc) in the side environment, rlhfsim in this process."""
    python = check_trl_python(trl_python)
    threads = torch.get_num_threads()  # bench's --threads, already applied to this process
    ours = {
        kind: (*ppo_setup(shape, value_model=kind), torch.Generator().manual_seed(2)) for kind in ("separate", "shared")
    }
    for trainer, prompts, score, gen in ours.values():
        for _ in range(shape.warmup):
            trainer.iteration(prompts, score, gold_stand_in, gen)
    runs, meta = [], {}
    for _ in range(max(1, alternations)):
        alt = {}
        for arm, no_gc in (("trl_nogc", True), ("trl_gc", False)):
            res = run_driver(driver_command(python, shape, threads, no_gc))
            alt[arm] = res["iteration_s"]
            meta = {
                "trl_versions": res["versions"],
                "trl_trainer": res["trainer"],
                "trl_threads": res["threads"],
                "trl_gc_collect_s": res["gc_collect_s"],
                "trl_gc_tracked_objects": res["gc_tracked_objects"],
            }
        for kind, (trainer, prompts, score, gen) in ours.items():
            alt[kind] = timeit(lambda: trainer.iteration(prompts, score, gold_stand_in, gen), 0, shape.repeats)  # noqa: B023 - called within this iteration
        runs.append(alt)
    return {**summarize(runs), **meta, "threads": threads, "iterations_per_arm": shape.repeats, "raw": runs}


def table_rows(r: dict) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows for the bench table."""
    v = r["trl_versions"]
    n = f"median of {r['alternations']} x {r['iterations_per_arm']}"
    rows = [
        (
            "TRL PPO iteration s, no gc",
            f"{r['trl_nogc_s']:.3f}",
            f"{n}, min {r['trl_nogc_min_s']:.3f}; trl {v['trl']} PPOTrainer, transformers {v['transformers']}, "
            "gc.collect() a no-op",
        ),
        (
            "TRL PPO iteration s, as shipped",
            f"{r['trl_gc_s']:.3f}",
            f"min {r['trl_gc_min_s']:.3f}; two forced gc.collect() per iteration, one took {r['trl_gc_collect_s']:.2f} s "
            f"({r['trl_gc_tracked_objects'] / 1000:.0f}k objects)",
        ),
        ("rlhfsim PPO iteration s, separate", f"{r['separate_s']:.3f}", f"min {r['separate_min_s']:.3f}; interleaved"),
        (
            "rlhfsim PPO iteration s, shared",
            f"{r['shared_s']:.3f}",
            f"min {r['shared_min_s']:.3f}; value head on the trunk",
        ),
    ]
    for ours in ("separate", "shared"):
        paired = " ".join(f"{x:.2f}" for x in r[f"paired_trl_nogc_vs_{ours}"])
        rows.append(
            (
                f"TRL no-gc / rlhfsim {ours}",
                f"{r[f'ratio_trl_nogc_vs_{ours}']:.2f}x",
                f"target >= 3x; per alternation {paired}; of minima {r[f'min_ratio_trl_nogc_vs_{ours}']:.2f}x",
            )
        )
        rows.append(
            (
                f"TRL as shipped / rlhfsim {ours}",
                f"{r[f'ratio_trl_gc_vs_{ours}']:.2f}x",
                f"of minima {r[f'min_ratio_trl_gc_vs_{ours}']:.2f}x",
            )
        )
    spread = r["alternation_spread"]
    rows.append(
        (
            "alternation spread",
            f"{spread:.2f}x",
            "steady machine"
            if spread < 1.3
            else "load changed between alternations: trust the minima, or rerun with --threads 1",
        )
    )
    return rows
