"""rlhfsim.ops helpers not covered with the optimisers' math: the minibatch order's device."""

from pathlib import Path

import torch

from rlhfsim import ops


def test_permutation_draws_on_the_generators_device_and_equals_randperm_on_cpu(monkeypatch):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(ops.permutation(17, g1), torch.randperm(17, generator=g2))  # CPU: the same draws as before
    seen = []
    real = torch.randperm
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: seen.append(kw["device"]) or real(n, **kw))
    ops.permutation(5, torch.Generator(device="cpu"))
    assert seen == [torch.device("cpu")]  # a CUDA generator would give a CUDA device: the CPU kernel refuses one


def test_no_other_randperm_in_the_package():
    """Minibatch orders go through ops.permutation: a bare randperm with a run's generator crashes on a GPU run."""
    root = Path(__file__).resolve().parents[1] / "rlhfsim"
    hits = [
        f"{p.relative_to(root)}:{i}"
        for p in root.rglob("*.py")
        if p.name != "ops.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "torch.randperm(" in line and "bench" not in p.parts
    ]
    assert hits == []
