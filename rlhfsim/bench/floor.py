"""The GEMM floor of a piece of work: its matrix products replayed alone, back to back, on this machine.

At simulator shapes a training iteration is half matrix products and half everything else (norms, activations,
softmax, casts, Python). `gemm_floor(fn)` runs fn once under a dispatch mode that records every aten GEMM (mm, addmm,
bmm, baddbmm, linear; autograd's backward ones too, after autocast has cast their inputs), then times each recorded
call alone on fresh inputs of its shapes and dtype. The sum is what the products alone cost here: no implementation
that computes the same products can be faster, so a speed target below it needs less arithmetic, not less overhead.
Attention inside a fused SDPA kernel (fp32) is no separate aten GEMM and is left out, so the floor is a lower bound;
under bf16 autocast, attention with gradients runs as plain bmm calls and is counted.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# linear: under inference_mode F.linear reaches a dispatch mode whole (its inner mm runs with the mode popped)
GEMMS = {
    _aten.mm.default: "mm",
    _aten.addmm.default: "addmm",
    _aten.bmm.default: "bmm",
    _aten.baddbmm.default: "baddbmm",
    _aten.linear.default: "linear",
}


def gemm_flops(op: str, shapes: tuple[tuple[int, ...], ...]) -> int:
    """2 x M x K x N (x batch) of one call; shapes are its tensor arguments' shapes in call order."""
    if op == "linear":  # x [..., K], weight [N, K]
        x, w = shapes[0], shapes[1]
        return 2 * math.prod(x[:-1]) * x[-1] * w[0]
    if op in ("addmm", "baddbmm"):
        shapes = shapes[1:]  # the added term carries no products
    a, b = shapes[0], shapes[1]
    batch = a[0] if op in ("bmm", "baddbmm") else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


class GemmRecorder(TorchDispatchMode):
    """Records (op, shapes, dtype) of every GEMM dispatched while active; runs every op as it is."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, tuple[tuple[int, ...], ...], torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in GEMMS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.calls.append((GEMMS[func], tuple(tuple(t.shape) for t in tensors), tensors[-1].dtype))
        return func(*args, **(kwargs or {}))


def _replay_s(op: str, shapes, dtype, repeats: int) -> float:
    """Median seconds of one call of op on random contiguous inputs of these shapes (2 untimed calls first)."""
    xs = [torch.randn(s, dtype=dtype) for s in shapes]
    f = torch.nn.functional.linear if op == "linear" else getattr(torch, op)
    for _ in range(2):
        f(*xs)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(*xs)
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def gemm_floor(fn: Callable[[], object], repeats: int = 9) -> dict:
    """fn's GEMMs: GFLOP by dtype and the ms they take replayed alone (per distinct call, median of `repeats`).

    Returns {"gflop", "gflop_<dtype>", "calls", "floor_ms", "floor_ms_<dtype>", "gflop_per_s"}. CPU tensors only
    (a GPU's floor would need synchronised timing)."""
    rec = GemmRecorder()
    with rec:
        fn()
    with torch.autocast("cpu", enabled=False):  # replay in the recorded dtypes, not the caller's autocast dtype
        return _replay(rec, repeats)


def _replay(rec: GemmRecorder, repeats: int) -> dict:
    counts = collections.Counter(rec.calls)
    out: dict = {"calls": len(rec.calls), "gflop": 0.0, "floor_ms": 0.0}
    for (op, shapes, dtype), n in counts.items():
        name = str(dtype).removeprefix("torch.")
        flop, ms = n * gemm_flops(op, shapes) / 1e9, n * _replay_s(op, shapes, dtype, repeats) * 1e3
        for key, v in (("gflop", flop), ("floor_ms", ms)):
            out[key] += v
            out[f"{key}_{name}"] = out.get(f"{key}_{name}", 0.0) + v
    out["gflop_per_s"] = out["gflop"] / (out["floor_ms"] / 1e3) if out["floor_ms"] > 0 else float("nan")
    return out
