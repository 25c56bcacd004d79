"""The GEMM floor: a constructed piece of work whose products are known (a Linear's forward and backward, a batched
product, under fp32 and bf16 autocast) is counted exactly, and its replay takes time."""

import pytest
import torch

from rlhfsim.bench.floor import gemm_floor, gemm_flops
from rlhfsim.models.parallel import bf16_autocast


def test_flops_of_each_gemm_form():
    assert gemm_flops("mm", ((64, 128), (128, 32))) == 2 * 64 * 128 * 32
    assert gemm_flops("addmm", ((32,), (64, 128), (128, 32))) == 2 * 64 * 128 * 32  # the bias adds no products
    assert gemm_flops("bmm", ((8, 5, 7), (8, 7, 3))) == 2 * 8 * 5 * 7 * 3
    assert gemm_flops("baddbmm", ((8, 5, 3), (8, 5, 7), (8, 7, 3))) == 2 * 8 * 5 * 7 * 3


@pytest.mark.parametrize("bf16", [False, True])
def test_a_linear_forward_and_backward_is_three_products(bf16):
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(48, 24), torch.randn(40, 48, requires_grad=True)
    a, b = torch.randn(6, 5, 7), torch.randn(6, 7, 3)

    def work():
        with bf16_autocast("cpu") if bf16 else torch.autocast("cpu", enabled=False):
            lin(x).float().sum().backward()  # forward addmm; backward: grad of x (mm) and of the weight (mm)
        torch.bmm(a, b)  # outside autocast: fp32

    f = gemm_floor(work, repeats=3)
    linear = 3 * 2 * 40 * 48 * 24 / 1e9
    assert f["calls"] == 4
    assert f["gflop"] == pytest.approx(linear + 2 * 6 * 5 * 7 * 3 / 1e9)
    assert f.get("gflop_bfloat16", 0.0) == pytest.approx(linear if bf16 else 0.0)
    assert f["floor_ms"] > 0 and f["floor_ms"] == pytest.approx(
        sum(v for k, v in f.items() if k.startswith("floor_ms_"))
    )


@pytest.mark.parametrize("inference", [False, True])
def test_a_linear_is_one_product_in_grad_and_inference_mode(inference):
    """Under inference_mode F.linear reaches the recorder whole (aten.linear), in grad mode as addmm: one call either way."""
    lin, x = torch.nn.Linear(48, 24), torch.randn(5, 40, 48)

    def work():
        with torch.inference_mode(inference):
            lin(x)

    f = gemm_floor(work, repeats=2)
    assert f["calls"] == 1 and f["gflop"] == pytest.approx(2 * 5 * 40 * 48 * 24 / 1e9)
    assert gemm_flops("linear", ((5, 40, 48), (24, 48), (24,))) == 2 * 5 * 40 * 48 * 24


def test_the_replay_runs_outside_a_callers_autocast(monkeypatch):
    """An fp32 product recorded inside a bf16 caller is replayed in fp32 (autocast would otherwise cast it to bf16)."""
    from rlhfsim.bench import floor

    seen = []
    monkeypatch.setattr(
        floor,
        "_replay_s",
        lambda op, shapes, dtype, repeats: seen.append((dtype, torch.is_autocast_enabled("cpu"))) or 1e-3,
    )
    a, b = torch.randn(8, 4), torch.randn(4, 2)

    def work():
        with torch.autocast("cpu", enabled=False):  # an fp32 island inside the bf16 caller
            torch.mm(a, b)

    with bf16_autocast("cpu"):
        f = floor.gemm_floor(work, repeats=1)
    assert seen == [(torch.float32, False)] and f["gflop_float32"] > 0
