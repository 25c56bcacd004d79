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
    from rlhfsim.models.parallel import Parallel, leave_process_group
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
    leave_process_group()
    assert not torch.distributed.is_initialized()
""")


@pytest.mark.slow
def test_two_processes_sum_to_the_whole_batch_gradient(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
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
        assert out["stats"]["n"] == pytest.approx(
            (2 * 2 + 2 * 2 + 1 * 1 + 2 * 2) / 7
        )  # weighted over both ranks' chunks


def _offset_classifier():
    """A GPT-2 reward model whose rewards are ~100 + differences of ~0.05 between inputs: ln_f's bias carries a constant
    that the score head maps to 100, and the small rest of the head reads ln_f's normalised (input-dependent) part."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    m = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=50,
            n_positions=16,
            n_embd=16,
            n_layer=1,
            n_head=2,
            num_labels=1,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).eval()
    with torch.no_grad():
        c = torch.ones(16)
        m.transformer.ln_f.bias.copy_(c)
        m.transformer.ln_f.weight.fill_(0.05)
        m.score.weight.copy_((100 * c / c.dot(c) + 0.5 * torch.randn(16))[None])
    return m


def test_fp32_head_keeps_the_resolution_of_an_offset_reward_under_bf16_autocast():
    import copy

    from rlhfsim.models.parallel import FP32Linear, fp32_head

    plain = _offset_classifier()
    fixed = fp32_head(copy.deepcopy(plain))
    assert type(fixed.score) is FP32Linear and type(plain.score) is torch.nn.Linear
    assert list(fixed.state_dict()) == list(plain.state_dict())  # same parameters, same checkpoint keys
    ids = torch.randint(1, 50, (32, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        r32 = plain(input_ids=ids, attention_mask=mask).logits[:, 0]
        assert torch.equal(fixed(input_ids=ids, attention_mask=mask).logits[:, 0], r32)  # fp32: bit for bit the same
        with bf16_autocast("cpu"):
            r_plain = plain(input_ids=ids, attention_mask=mask).logits[:, 0].float()
            r_fixed = fixed(input_ids=ids, attention_mask=mask).logits[:, 0]
    assert (r32 - 100).abs().max() < 5 and r32.std() > 0.02
    assert r_fixed.dtype == torch.float32
    assert (r_fixed - r32).abs().max() < 0.02 and float(r_fixed.std()) == pytest.approx(float(r32.std()), rel=0.1)
    # the bf16 head: every reward on bf16's grid at 100 (steps of 0.5), so the within-batch spread is mostly rounding
    assert torch.all(r_plain * 2 == (r_plain * 2).round()) and (r_plain - r32).abs().max() > 0.1


def test_every_reward_and_value_builder_gives_an_fp32_head(tiny_checkpoints):
    from transformers import GPT2LMHeadModel

    from rlhfsim.models.hf import load_sequence_classifier
    from rlhfsim.models.parallel import FP32Linear
    from rlhfsim.models.policy import ValueHead, build_value_model, gpt2_config
    from rlhfsim.reward.config import RewardConfig
    from rlhfsim.reward.model import build_reward_model
    from rlhfsim.world.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(["a", "b", "c"])
    policy = GPT2LMHeadModel(gpt2_config(tok, 1, 16, 2, 16))
    heads = {
        "reward (built-in)": build_reward_model(tok, RewardConfig(n_layer=1, n_embd=16, n_head=2), 16, 0).score,
        "reward heads ensemble": build_reward_model(
            tok, RewardConfig(n_layer=1, n_embd=16, n_head=2), 16, 0, heads=3
        ).score,
        "value (separate)": build_value_model(policy, "policy").score,
        "value (shared)": ValueHead(16).score,
        "reward (DeBERTa checkpoint)": load_sequence_classifier(
            tiny_checkpoints["deberta"], "reward.checkpoint", 0, 0
        ).classifier,
        "gold (Llama checkpoint)": load_sequence_classifier(tiny_checkpoints["gold"], "gold", 0, 0).score,
    }
    assert {k: type(v).__name__ for k, v in heads.items()} == {k: "FP32Linear" for k in heads}
    assert all(isinstance(v, FP32Linear) for v in heads.values())


def test_process_group_scope_leaves_after_a_barrier_or_at_once_on_error(monkeypatch):
    from rlhfsim.models import parallel

    calls = []
    monkeypatch.setattr(parallel, "leave_process_group", lambda ok=True: calls.append(ok))
    with parallel.process_group_scope():
        pass
    with pytest.raises(KeyError), parallel.process_group_scope():
        raise KeyError("boom")
    assert calls == [True, False]


def test_a_gpu_process_group_gives_cpu_tensors_to_gloo(monkeypatch):
    """weighted_stats all-reduces a CPU float64 tensor; NCCL takes CUDA tensors only, so GPU groups name both backends."""
    import torch.distributed as dist

    from rlhfsim.models import parallel

    made = []
    monkeypatch.setattr(parallel, "_JOINED", False)  # restored after the test (from_env marks the group its own)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: made.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert Parallel.from_env(torch.device("cuda")).rank == 1 and Parallel.from_env(torch.device("cpu")).world_size == 2
    assert made == ["cpu:gloo,cuda:nccl", "gloo"]


CHECK_WORKER = textwrap.dedent("""
    import sys, torch
    from rlhfsim.models.parallel import Parallel, leave_process_group
    par = Parallel.from_env(torch.device("cpu"))
    par.check_same(torch.tensor([[5, 6], [7, 8]]), "same")  # equal on both: passes
    try:
        par.check_same(torch.tensor([[5, 6], [7, 8 + par.rank]]), "the rollout's token ids")
        msg = "no error"
    except RuntimeError as e:
        msg = str(e)
    open(sys.argv[1] + f"/rank{par.rank}.txt", "w").write(msg)
    leave_process_group()
""")


def test_processes_whose_replicated_rollouts_differ_both_stop():
    """PPO's data parallelism sums gradients of shares of one replicated rollout: if the processes' rollouts differ,
    every process raises (not only the one that differs), naming what differed."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "worker.py").write_text(CHECK_WORKER)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [
            subprocess.Popen(
                [sys.executable, str(Path(d) / "worker.py"), d],
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "WORLD_SIZE": "2",
                    "RANK": str(r),
                    "LOCAL_RANK": str(r),
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                    "OMP_NUM_THREADS": "1",
                },
            )
            for r in range(2)
        ]
        assert [p.wait(timeout=240) for p in procs] == [0, 0]
        msgs = [(Path(d) / f"rank{r}.txt").read_text() for r in range(2)]
    assert all("the rollout's token ids differ between processes" in m for m in msgs), msgs
    assert Parallel().check_same(torch.ones(3), "x") is None  # one process: nothing to compare


def test_leave_process_group_leaves_a_group_the_caller_made_alone():
    import torch.distributed as dist

    from rlhfsim.models.parallel import leave_process_group

    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        leave_process_group()
        assert dist.is_initialized()  # not ours: a script that made its own group keeps it
    finally:
        dist.destroy_process_group()
