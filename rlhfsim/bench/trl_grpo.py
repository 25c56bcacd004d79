"""`rlhfsim bench --only grpo`: a GRPO iteration of rlhfsim and of TRL's GRPOTrainer, side by side.

Same policy and reward-model shape, prompts of the same length, group size (`--group`, default 4), rows per
iteration (`--prompts`) and response length, KL as beta x k3 in the loss (beta 0.04) on both sides, loss_type
grpo. TRL (the installed trl) runs in a subprocess (trl_grpo_driver.py), at its best (fp32, no gradient checkpointing,
no logging, no console callbacks) and as shipped (GRPOConfig's defaults: bf16 autocast and gradient checkpointing on,
logging every 10 steps). rlhfsim runs in fp32 (its CPU precision) and, to match TRL as shipped, under the same bf16
autocast. The arms are interleaved because the machine is shared and its speed drifts.

`--device cuda` runs both sides on the GPU (TRL with use_cpu off; every timed iteration ends with a synchronize).
The GEMM floor and the phase breakdown replay and profile on the CPU, so they are left out there.
"""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys

import numpy as np
import torch

from rlhfsim.bench.common import Shape, policy_model, random_words, timeit, vocab_tokenizer
from rlhfsim.bench.floor import gemm_floor
from rlhfsim.bench.sections import gold_stand_in
from rlhfsim.bench.trl_ppo import parse_driver_output
from rlhfsim.models.parallel import bf16_autocast
from rlhfsim.optim.base import PHASES
from rlhfsim.optim.config import GRPOConfig
from rlhfsim.optim.group import GroupOptimizer
from rlhfsim.reward.config import RewardConfig
from rlhfsim.reward.model import RewardModels
from rlhfsim.world.base import Prompt

ARMS = ("trl_best", "trl_shipped", "rlhfsim", "rlhfsim_bf16")
RATIOS = {
    "trl_shipped": ("rlhfsim", "rlhfsim_bf16"),
    "trl_best": ("rlhfsim",),
}  # TRL arm -> rlhfsim arms it is divided by


def grpo_setup(shape: Shape, group: int, beta: float = 0.04, seed: int = 0, device: str = "cpu"):
    """rlhfsim's GRPO at the shape, its prompt-major rows, and a reward model's score (scored as the loop does)."""
    dev = torch.device(device)
    tok = vocab_tokenizer(shape.vocab)
    n_positions = shape.prompt_len + shape.response_len + 8
    policy = policy_model(tok, shape, n_positions=n_positions, seed=seed).to(dev)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    cfg = GRPOConfig(batch_size=shape.prompts, group_size=group, kl_coef=beta, kl_mode="loss", pg_cos_every=0)
    opt = GroupOptimizer(policy, ref, tok, cfg, 1.0, shape.response_len, dev)
    texts = random_words(shape.prompts // group, shape.prompt_len, shape.vocab, torch.Generator().manual_seed(seed))
    prompts = [Prompt(i, "bench", "open", t) for i, t in enumerate(texts) for _ in range(group)]
    rms = RewardModels(
        tok,
        RewardConfig(n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head),
        dev,
        seed,
        n_positions=n_positions,
    )

    def score(prompts, completions) -> np.ndarray:
        return rms.rewards([p.text for p in prompts], completions)[0]

    return opt, prompts, score


def driver_command(shape: Shape, group: int, threads: int, best: bool, device: str = "cpu") -> list[str]:
    from pathlib import Path

    cmd = [
        sys.executable,
        str(Path(__file__).with_name("trl_grpo_driver.py")),
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
        "--rows",
        str(shape.prompts),
        "--group",
        str(group),
        "--prompt-len",
        str(shape.prompt_len),
        "--response-len",
        str(shape.response_len),
        "--device",
        device,
    ]
    return cmd + (["--best"] if best else [])


def run_driver(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError("TRL GRPO driver failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-8:]))
    return parse_driver_output(proc.stdout)


def summarize(alternations: list[dict[str, list[float]]]) -> dict:
    """Per arm the median and min over all alternations' timed iterations; the TRL / rlhfsim ratios of RATIOS
    (`ratio_<trl arm>` against fp32 rlhfsim, `ratio_<trl arm>_bf16` against rlhfsim under bf16 autocast), pooled and
    per alternation."""
    out: dict = {}
    arms = [a for a in ARMS if all(a in alt for alt in alternations)]
    for arm in arms:
        pooled = [t for alt in alternations for t in alt[arm]]
        out[f"{arm}_s"], out[f"{arm}_min_s"] = statistics.median(pooled), min(pooled)
        out[f"{arm}_per_alternation_s"] = [statistics.median(alt[arm]) for alt in alternations]
    for trl, ours in RATIOS.items():
        for arm in (a for a in ours if a in arms):
            tag = f"{trl}{arm.removeprefix('rlhfsim')}"
            out[f"ratio_{tag}"] = out[f"{trl}_s"] / out[f"{arm}_s"]
            out[f"min_ratio_{tag}"] = out[f"{trl}_min_s"] / out[f"{arm}_min_s"]
            # the spread a reader should allow: each alternation's ratio of medians (arms timed minutes apart drift)
            out[f"ratio_{tag}_per_alternation"] = [
                t / r for t, r in zip(out[f"{trl}_per_alternation_s"], out[f"{arm}_per_alternation_s"])
            ]
    out["alternations"] = len(alternations)
    return out


def phase_ms(opt, prompts, score, gold_fn, generator, iterations: int) -> dict[str, float]:
    """Mean ms per iteration of each labelled phase (rlhfsim.optim.base.PHASES) and of the whole iteration, under
    torch.profiler (which adds its own overhead to every op: compare the phases with each other, not with the timings)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iterations):
            with record_function("iteration"):
                opt.iteration(prompts, score, gold_fn, generator)
    totals = {e.key: e.cpu_time_total for e in prof.key_averages() if e.key in (*PHASES, "iteration")}  # us
    out = {k: totals.get(k, 0.0) / iterations / 1e3 for k in (*PHASES, "iteration")}
    out["other"] = out["iteration"] - sum(out[k] for k in PHASES)  # gold scoring, advantages, fidelity, stats
    return out


def bench_trl_grpo(shape: Shape, group: int = 4, alternations: int = 2, device: str = "cpu") -> dict:
    threads = torch.get_num_threads()
    dev = torch.device(device)
    opt, prompts, score = grpo_setup(shape, group, device=device)
    gen = torch.Generator(device=dev).manual_seed(2)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def iteration():
        opt.iteration(prompts, score, gold_stand_in, gen)
        sync()  # a timed iteration ends when the device has finished it

    for _ in range(shape.warmup):
        iteration()
    runs, versions = [], {}
    for _ in range(max(1, alternations)):
        alt = {}
        for arm, best in (("trl_best", True), ("trl_shipped", False)):
            res = run_driver(driver_command(shape, group, threads, best, dev.type))
            alt[arm], versions = res["iteration_s"], res["versions"]
        alt["rlhfsim"] = timeit(iteration, 0, shape.repeats)
        with bf16_autocast(
            dev.type
        ):  # what TRL as shipped computes in (its bf16 default); casts afresh every call, as TRL
            alt["rlhfsim_bf16"] = timeit(iteration, 1, shape.repeats)
        runs.append(alt)
    out = {
        **summarize(runs),
        "trl_versions": versions,
        "group": group,
        "threads": threads,
        "device": dev.type,
        "raw": runs,
    }
    if dev.type == "cpu":  # both replay and profile on the CPU
        out["phases_ms"] = phase_ms(opt, prompts, score, gold_stand_in, gen, shape.repeats)
        out["gemm_floor"] = {"fp32": gemm_floor(iteration)}
        with bf16_autocast("cpu"):
            out["gemm_floor"]["bf16"] = gemm_floor(iteration)
    return out


def _spread(r: dict, tag: str) -> str:
    per = r.get(f"ratio_{tag}_per_alternation", [])
    return f"; per alternation {min(per):.2f}-{max(per):.2f}x" if len(per) > 1 else ""


def table_rows(r: dict) -> list[tuple[str, str, str]]:
    n = f"median of {r['alternations']} alternations" + (
        f", on {r['device']}" if r.get("device", "cpu") != "cpu" else ""
    )
    rows = [
        (
            "TRL GRPO iteration s, at its best (fp32)",
            f"{r['trl_best_s']:.3f}",
            f"{n}, min {r['trl_best_min_s']:.3f}; trl {r['trl_versions'].get('trl')}",
        ),
        (
            "TRL GRPO iteration s, as shipped (bf16 autocast, gradient checkpointing)",
            f"{r['trl_shipped_s']:.3f}",
            f"min {r['trl_shipped_min_s']:.3f}",
        ),
        (
            "rlhfsim GRPO iteration s (fp32)",
            f"{r['rlhfsim_s']:.3f}",
            f"min {r['rlhfsim_min_s']:.3f}; group {r['group']}",
        ),
        (
            "TRL as shipped / rlhfsim GRPO (fp32)",
            f"{r['ratio_trl_shipped']:.2f}x",
            f"target >= 3x; of minima {r['min_ratio_trl_shipped']:.2f}x{_spread(r, 'trl_shipped')}",
        ),
        (
            "TRL at its best / rlhfsim GRPO (both fp32)",
            f"{r['ratio_trl_best']:.2f}x",
            f"of minima {r['min_ratio_trl_best']:.2f}x{_spread(r, 'trl_best')}",
        ),
    ]
    if "rlhfsim_bf16_s" in r:
        rows[3:3] = [
            (
                "rlhfsim GRPO iteration s (bf16 autocast)",
                f"{r['rlhfsim_bf16_s']:.3f}",
                f"min {r['rlhfsim_bf16_min_s']:.3f}",
            )
        ]
        rows.append(
            (
                "TRL as shipped / rlhfsim GRPO (both bf16 autocast)",
                f"{r['ratio_trl_shipped_bf16']:.2f}x",
                f"of minima {r['min_ratio_trl_shipped_bf16']:.2f}x{_spread(r, 'trl_shipped_bf16')}",
            )
        )
    if "gemm_floor" in r:  # what the iteration's products alone take here, against the 3x target's budget
        f32, b16 = r["gemm_floor"]["fp32"], r["gemm_floor"]["bf16"]
        budget = r["trl_shipped_s"] / 3 * 1e3
        rows.append(
            (
                "rlhfsim GRPO GEMM floor ms, fp32 / bf16 autocast (products replayed alone)",
                f"{f32['floor_ms']:.1f} / {b16['floor_ms']:.1f}",
                f"{f32['gflop']:.2f} GFLOP in {f32['calls']} GEMMs ({f32['gflop_per_s']:.0f} GFLOP/s fp32); "
                f"3x TRL as shipped needs <= {budget:.1f} ms a whole iteration",
            )
        )
    if "phases_ms" in r:
        ph = r["phases_ms"]
        rows.append(
            (
                "rlhfsim GRPO phases, ms per iteration (fp32, under torch.profiler)",
                f"{ph['iteration']:.1f}",
                ", ".join(f"{k} {v:.1f}" for k, v in ph.items() if k != "iteration"),
            )
        )
    return rows
