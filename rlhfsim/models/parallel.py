"""Hardware use: bf16 autocast, micro-batches with gradient accumulation, data parallelism over processes.

Data parallelism (`accelerate launch --multi_gpu --num_processes N -m rlhfsim run cfg.yaml`, or torchrun): every process runs
the same simulation from the same seeds; in each optimiser step (PPO minibatch, reward-model batch) a process
takes every N-th row of the batch, its loss weighted by its share of the batch's tokens or pairs, and the
gradients are summed over processes. The summed gradient is the single-process gradient of the whole batch, so
all processes apply the same update and stay in step. Rank 0 writes the run directory.

On one process nothing here changes a number: one chunk with weight 1.0, no collective, no autocast on CPU.
"""

from __future__ import annotations

import contextlib
import os

import torch

_JOINED = False  # whether Parallel.from_env created the default process group (and so leave_process_group ends it)


class Parallel:
    """This process's place among data-parallel workers (rank, world size), and micro-batch splitting."""

    def __init__(self, rank: int = 0, world_size: int = 1, micro_batch: int | None = None):
        self.rank, self.world_size, self.micro_batch = rank, world_size, micro_batch

    @classmethod
    def from_env(cls, device: torch.device, micro_batch: int | None = None) -> Parallel:
        """Join the process group `accelerate launch` / torchrun describe in the environment (WORLD_SIZE, RANK)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, micro_batch)
        import torch.distributed as dist

        if not dist.is_initialized():
            global _JOINED
            _JOINED = True  # ours to leave (leave_process_group); a group the caller made stays the caller's
            # on GPUs the stats' small all-reduce runs on CPU tensors, which NCCL does not take: gloo carries those
            dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), micro_batch)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def chunks(self, idx: torch.Tensor, micro_batch: int | None = None) -> list[torch.Tensor]:
        """This process's rows of a batch `idx`, in micro-batches of at most `micro_batch` rows."""
        mine = idx[self.rank :: self.world_size] if self.world_size > 1 else idx
        size = micro_batch or self.micro_batch
        if size is None or size >= len(mine):
            return [mine] if len(mine) else []
        return list(mine.split(size))

    def sum_grads(self, params) -> None:
        """Sum gradients over processes (one flat all-reduce); every trainable parameter takes part, in order."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))

    def check_same(self, t: torch.Tensor, what: str) -> None:
        """Fail closed when an integer tensor that every process computes alike (the replicated rollout's token ids)
        differs between them: the summed gradient would then mix different batches. The tensor and its negation are
        all-reduced as max, elementwise: max == -max(-t), i.e. max == min, everywhere exactly when all processes agree
        (no checksum, so no collisions; a few hundred KB a PPO iteration)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        flat = t.reshape(-1).long()
        ends = torch.stack([flat, -flat])  # [2, n]
        dist.all_reduce(ends, op=dist.ReduceOp.MAX)
        if not torch.equal(ends[0], -ends[1]):
            raise RuntimeError(
                f"data parallel: {what} differ between processes (rank {self.rank}); every process must "
                "replicate generation exactly (same seed, same GPU kind); rerun on one process to compare"
            )

    def weighted_stats(self, parts: list[tuple[float, dict]]) -> dict:
        """Weighted mean of per-chunk stats over chunks (and processes): the stats of the whole batch."""
        keys = list(parts[0][1]) if parts else []
        if self.world_size > 1:
            import torch.distributed as dist

            t = torch.tensor(
                [[w * s[k] for k in keys] + [w] for w, s in parts] or [[0.0] * (len(keys) + 1)], dtype=torch.float64
            ).sum(0)
            dist.all_reduce(t)
            return {k: float(t[j] / t[-1]) if t[-1] > 0 else float("nan") for j, k in enumerate(keys)}
        if len(parts) == 1:
            return dict(parts[0][1])
        total = sum(w for w, _ in parts)
        return {k: sum(w * s[k] for w, s in parts) / total for k in keys}


def leave_process_group(ok: bool = True) -> None:
    """Tear down the process group `Parallel.from_env` joined, if any: its threads are joined here rather than left to
    interpreter exit, where a worker was seen to abort (rc -6, "terminate called without an active exception") after
    its work was done. ok: every rank finished, so wait for all first (no rank leaves while another still talks to it);
    after an error, leave at once (a barrier would wait for ranks that may never come)."""
    import torch.distributed as dist

    global _JOINED
    if not (_JOINED and dist.is_available() and dist.is_initialized()):
        return
    _JOINED = False
    if ok:
        dist.barrier()
    dist.destroy_process_group()


@contextlib.contextmanager
def process_group_scope():
    """Leave the process group (if one was joined) when the block ends: after a barrier when it ends normally, at once
    when it raises."""
    try:
        yield
    except BaseException:
        leave_process_group(ok=False)
        raise
    leave_process_group()


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked for (or `auto` and supported); a no-op elsewhere."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    if precision == "auto" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return bf16_autocast("cuda")


def bf16_autocast(device_type: str):
    """bf16 autocast with its weight-cast cache off. The cache keeps the first bf16 copy of each trainable weight until
    the outermost autocast context exits and never checks whether the weight changed; the loop holds one context for
    the whole run, so with the cache on every grad or no_grad forward after an optimiser step would compute with the
    weights as first cast (tests/models/test_parallel.py shows it on CPU). Off, each call casts afresh."""
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


class FP32Linear(torch.nn.Linear):
    """A Linear that computes in its weights' dtype (fp32) under autocast: the scalar heads of reward and value models.

    Under bf16 autocast a head's output would be rounded to bf16's 8-bit mantissa: a reward of 100 can then only move
    in steps of 0.5, so an offset drift (explosion) would read as flattening and ties would appear within a prompt's
    completions. The trunk still runs in bf16; only the head's product and its output stay fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return torch.nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias)


def fp32_head(model: torch.nn.Module) -> torch.nn.Module:
    """Make a sequence classifier's output head (its last `nn.Linear` with `num_labels` outputs: `score` on decoders,
    `classifier` on DeBERTa) an FP32Linear, in place. Same parameters and state-dict keys; fp32 results unchanged."""
    n = getattr(getattr(model, "config", None), "num_labels", None)
    heads = [m for m in model.modules() if type(m) is torch.nn.Linear and m.out_features == n]
    if heads:
        heads[-1].__class__ = FP32Linear
    return model


def local_device(device: torch.device) -> torch.device:
    """cuda -> this process's GPU (LOCAL_RANK) under a multi-process launch."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device
