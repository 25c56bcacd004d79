"""Micro-batches and data parallelism: each process's share, weighted stats, and a 2-process (gloo, CPU) gradient sum
that equals the one-process gradient of the whole batch."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rlhfsim.models.parallel import Parallel, autocast, bf16_autocast

ROOT = Path(__file__).resolve().parents[2]


def test_chunks_split_rows_over_ranks_and_micro_batches():
    idx = torch.arange(10)
    assert [c.tolist() for c in Parallel().chunks(idx)] == [list(range(10))]  # one process: the batch as is
    assert [c.tolist() for c in Parallel(micro_batch=4).chunks(idx)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shares = [Parallel(r, 3, 2).chunks(idx) for r in range(3)]
    assert sorted(i for s in shares for c in s for i in c.tolist()) == list(range(10))  # every row once
    assert [c.tolist() for c in shares[1]] == [[1, 4], [7]]


def test_weighted_stats():
    p = Parallel()
    assert p.weighted_stats([(1.0, {"a": 0.25})]) == {"a": 0.25}  # one chunk: the value itself, bit for bit
    assert p.weighted_stats([(0.75, {"a": 1.0}), (0.25, {"a": 3.0})]) == {"a": 1.5}


def test_autocast_is_a_no_op_on_cpu():
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def _forward_step_forward(ctx, no_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inside one context: a forward, an SGD step on the weights, a second forward; and the second forward's input run
    in a fresh context (the right answer). no_grad: the second forward under no_grad (as reward scoring runs)."""
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(8, 8), torch.randn(4, 8)
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    with ctx():
        first = lin(x)
        first.float().square().sum().backward()
        opt.step()
        with torch.no_grad() if no_grad else torch.enable_grad():
            second = lin(x)
    with bf16_autocast("cpu"):
        fresh = lin(x)
    return first.detach(), second.detach(), fresh.detach()


@pytest.mark.parametrize("no_grad", [False, True])
def test_bf16_autocast_sees_weights_changed_inside_the_context(no_grad):
    first, second, fresh = _forward_step_forward(lambda: bf16_autocast("cpu"), no_grad)
    assert second.dtype == torch.bfloat16
    assert not torch.equal(second, first) and torch.equal(second, fresh)
    # why the cache is off: with it on, the second forward silently reuses the weights as they were first cast
    first, second, fresh = _forward_step_forward(lambda: torch.autocast("cpu", dtype=torch.bfloat16), no_grad)
    assert torch.equal(second, first) and not torch.equal(second, fresh)


def test_cuda_autocast_is_built_with_the_cache_off(monkeypatch):
    made = []
    monkeypatch.setattr("rlhfsim.models.parallel.bf16_autocast", lambda device_type: made.append(device_type) or "ctx")
    assert autocast(torch.device("cuda"), "bf16") == "ctx" and made == ["cuda"]


WORKER = textwrap.dedent("""
    import sys, torch
    from rlhfsim.models.parallel import Parallel
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(7, 3), torch.randn(7)
    par = Parallel.from_env(torch.device("cpu"), micro_batch=2)
    parts = []
    for j in par.chunks(torch.arange(7)):
        share = len(j) / 7
        (((model(x[j]).squeeze(-1) - y[j]) ** 2).mean() * share).backward()
        parts.append((share, {"n": float(len(j))}))
    par.sum_grads(model.parameters())
    stats = par.weighted_stats(parts)
    torch.save({"grad": [p.grad for p in model.parameters()], "stats": stats}, sys.argv[1] + f"/rank{par.rank}.pt")
""")


def test_two_processes_sum_to_the_whole_batch_gradient(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(tmp_path)], env=env))
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(7, 3), torch.randn(7)
    ((model(x).squeeze(-1) - y) ** 2).mean().backward()
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        for g, p in zip(out["grad"], model.parameters()):
            assert torch.allclose(g, p.grad, atol=1e-6)  # both ranks hold the whole batch's gradient
        assert out["stats"]["n"] == pytest.approx((2 * 2 + 2 * 2 + 1 * 1 + 2 * 2) / 7)  # weighted over both ranks' chunks
