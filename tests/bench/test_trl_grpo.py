"""The GRPO bench's plumbing (no timing is asserted): the driver's command mirrors the shape, the summary's ratios."""

import pytest

from rlhfsim.bench.common import Shape
from rlhfsim.bench.trl_grpo import driver_command, grpo_setup, summarize


def test_driver_command_mirrors_the_shape():
    cmd = driver_command(
        Shape(n_layer=1, n_embd=32, n_head=2, vocab=40, prompts=12, response_len=5, repeats=3, warmup=1), 3, 1, True
    )
    flags = dict(zip(cmd[2::2], cmd[3::2]))
    assert (
        flags["--rows"] == "12"
        and flags["--group"] == "3"
        and flags["--response-len"] == "5"
        and flags["--layers"] == "1"
    )
    assert cmd[-1] == "--best" and "--best" not in driver_command(Shape(), 4, 1, False)


def test_summarize_pools_alternations_and_divides_medians():
    alts = [
        {"trl_best": [2.0, 4.0, 3.0], "trl_shipped": [6.0, 6.0, 6.0], "rlhfsim": [1.0, 1.0, 2.0]},
        {"trl_best": [3.0], "trl_shipped": [9.0], "rlhfsim": [1.0]},
    ]
    s = summarize(alts)
    assert s["trl_best_s"] == 3.0 and s["rlhfsim_s"] == 1.0 and s["ratio_trl_shipped"] == 6.0
    assert s["min_ratio_trl_best"] == 2.0 and s["alternations"] == 2
    assert s["rlhfsim_per_alternation_s"] == [1.0, 1.0]
    assert s["ratio_trl_shipped_per_alternation"] == [6.0, 9.0]  # each alternation's ratio of medians
    assert "ratio_trl_shipped_bf16" not in s  # an arm no alternation measured gives no ratio


def test_summarize_divides_trl_as_shipped_by_the_precision_matched_arm():
    alts = [{"trl_best": [3.0], "trl_shipped": [8.0], "rlhfsim": [1.0], "rlhfsim_bf16": [2.0]}]
    s = summarize(alts)
    assert s["ratio_trl_shipped"] == 8.0 and s["ratio_trl_shipped_bf16"] == 4.0 and s["ratio_trl_best"] == 3.0
    assert "ratio_trl_best_bf16" not in s  # TRL at its best runs fp32: only the fp32 arm is its match


def test_grpo_setup_lays_rows_out_prompt_major():
    from rlhfsim.bench.sections import gold_stand_in

    opt, prompts, score = grpo_setup(
        Shape(n_layer=1, n_embd=16, n_head=2, vocab=16, prompts=8, prompt_len=3, response_len=3), 4
    )
    assert [p.id for p in prompts] == [0, 0, 0, 0, 1, 1, 1, 1]
    import torch

    stats = opt.iteration(prompts, score, gold_stand_in, torch.Generator().manual_seed(0))
    assert set(opt.watched) <= set(stats) and stats["objective/kl_coef"] == pytest.approx(0.04)


def test_phase_breakdown_finds_every_labelled_phase_inside_the_iteration():
    import torch

    from rlhfsim.bench.sections import gold_stand_in
    from rlhfsim.bench.trl_grpo import phase_ms
    from rlhfsim.optim.base import PHASES

    opt, prompts, score = grpo_setup(
        Shape(n_layer=1, n_embd=16, n_head=2, vocab=16, prompts=8, prompt_len=3, response_len=3), 4
    )
    ph = phase_ms(opt, prompts, score, gold_stand_in, torch.Generator().manual_seed(0), 2)
    assert all(ph[k] > 0 for k in PHASES)  # a label that moved out of the iteration's path would read 0
    assert ph["other"] >= 0 and sum(ph[k] for k in PHASES) <= ph["iteration"]


def test_gemm_floor_of_an_iteration_sees_the_bf16_products_under_autocast():
    import torch

    from rlhfsim.bench.floor import gemm_floor
    from rlhfsim.bench.sections import gold_stand_in
    from rlhfsim.models.parallel import bf16_autocast

    opt, prompts, score = grpo_setup(
        Shape(n_layer=1, n_embd=16, n_head=2, vocab=16, prompts=8, prompt_len=3, response_len=3), 4
    )
    gen = torch.Generator().manual_seed(0)
    f32 = gemm_floor(lambda: opt.iteration(prompts, score, gold_stand_in, gen), repeats=1)
    with bf16_autocast("cpu"):
        b16 = gemm_floor(lambda: opt.iteration(prompts, score, gold_stand_in, gen), repeats=1)
    assert f32["gflop"] > 0 and f32["floor_ms"] > 0 and "gflop_bfloat16" not in f32
    assert b16["gflop_bfloat16"] > 0.9 * b16["gflop"]  # sampling, scoring, reference and update all reach autocast


def test_driver_and_command_carry_the_device():
    from rlhfsim.bench.trl_grpo_driver import parse_args

    device_flag = lambda cmd: cmd[cmd.index("--device") + 1]
    assert device_flag(driver_command(Shape(), 4, 1, False, "cuda")) == "cuda"
    assert device_flag(driver_command(Shape(), 4, 1, False)) == "cpu"
    assert parse_args(["--device", "cuda"]).device == "cuda" and parse_args([]).device == "cpu"


@pytest.mark.parametrize("only, says", [("grpo", "no CUDA device"), ("ppo,grpo", "only the grpo section")])
def test_bench_on_cuda_without_one_or_beside_cpu_sections_exits_2(only, says, capsys):
    import torch

    from rlhfsim.cli import main

    if torch.cuda.is_available() and only == "grpo":
        pytest.skip("this machine has a CUDA device")
    assert main(["bench", "--only", only, "--device", "cuda"]) == 2
    out = capsys.readouterr().out
    assert says in out and "--device" in out and "Traceback" not in out


@pytest.mark.slow
def test_the_grpo_section_end_to_end_at_a_tiny_shape(tmp_path):
    """Both TRL arms (the driver as a subprocess) and both rlhfsim arms, one alternation; no timing is asserted."""
    import json

    from rlhfsim.cli import main

    tiny = [
        "--layers",
        "1",
        "--width",
        "32",
        "--heads",
        "2",
        "--vocab",
        "24",
        "--prompts",
        "8",
        "--prompt-len",
        "4",
        "--response-len",
        "4",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--threads",
        "1",
    ]
    assert main(["bench", *tiny, "--only", "grpo", "--alternations", "1", "--json", str(tmp_path / "b.json")]) == 0
    r = json.loads((tmp_path / "b.json").read_text())["grpo"]
    assert r["device"] == "cpu" and all(
        len(r["raw"][0][arm]) >= 2 for arm in ("trl_best", "trl_shipped", "rlhfsim", "rlhfsim_bf16")
    )
    assert r["ratio_trl_shipped"] > 0 and r["gemm_floor"]["fp32"]["gflop"] > 0 and r["phases_ms"]["update"] > 0
