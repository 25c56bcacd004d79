"""The bench's TRL PPO side-by-side section: its setup errors, the driver's command line, the aggregation.

Running TRL's PPO trainer needs the side environment (scripts/trl_ppo_venv.sh); the one test that runs it
is skipped unless RLHFSIM_TRL_PYTHON names that environment's python. No timing is asserted.
"""

import importlib.util
import json
import os
import statistics

import pytest

from rlhfsim.bench.common import Shape
from rlhfsim.bench.trl_ppo import ARMS, driver_command, driver_path, parse_driver_output, summarize
from rlhfsim.cli import main

TINY = [
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
    "0",
    "--repeats",
    "1",
]


def test_trl_ppo_without_trl_python_exits_2_naming_flag_and_setup(capsys):
    assert main(["bench", *TINY, "--only", "ppo,trl_ppo"]) == 2
    out = capsys.readouterr().out
    assert "--trl-python" in out and "scripts/trl_ppo_venv.sh" in out and "Traceback" not in out
    assert "PPO iteration" not in out  # failed before running the other selected section


def test_trl_ppo_with_missing_python_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope" / "python"
    assert main(["bench", *TINY, "--only", "trl_ppo", "--trl-python", str(missing)]) == 2
    out = capsys.readouterr().out
    assert "no such file" in out and "scripts/trl_ppo_venv.sh" in out


def test_driver_command_mirrors_the_bench_shape():
    spec = importlib.util.spec_from_file_location("trl_ppo_driver", driver_path())
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)  # stdlib only at import: safe in the project's environment
    shape = Shape(
        n_layer=3, n_embd=48, n_head=6, vocab=40, prompts=12, prompt_len=5, response_len=7, warmup=1, repeats=4
    )
    cmd = driver_command("side-python", shape, threads=3, no_gc=True)
    assert cmd[0] == "side-python" and cmd[1] == str(driver_path())
    a = driver.parse_args(cmd[2:])
    got = (a.layers, a.width, a.heads, a.vocab, a.prompts, a.prompt_len, a.response_len, a.warmup, a.iterations)
    assert got == (
        shape.n_layer,
        shape.n_embd,
        shape.n_head,
        shape.vocab,
        shape.prompts,
        shape.prompt_len,
        shape.response_len,
        shape.warmup,
        shape.repeats,
    )
    assert a.threads == 3 and a.no_gc
    assert not driver.parse_args(driver_command("p", shape, 1, no_gc=False)[2:]).no_gc


def test_parse_driver_output_takes_the_last_json_line():
    res = {"median_s": 0.5, "iteration_s": [0.5]}
    text = f"===training policy===\n{{not json yet\n{json.dumps({'median_s': 9})}\nnoise\n{json.dumps(res)}\n"
    assert parse_driver_output(text) == res
    with pytest.raises(ValueError):
        parse_driver_output("===training policy===\n")


def test_summarize_pools_arms_and_divides_medians():
    alts = [
        {"trl_nogc": [0.9, 1.1, 1.0], "trl_gc": [2.0, 2.2], "separate": [0.30, 0.34], "shared": [0.2, 0.25, 0.3]},
        {"trl_nogc": [1.5, 1.3], "trl_gc": [3.0, 2.4, 2.6], "separate": [0.5, 0.4, 0.45], "shared": [0.35]},
    ]
    s = summarize(alts)
    for arm in ARMS:
        pooled = alts[0][arm] + alts[1][arm]
        assert s[f"{arm}_s"] == statistics.median(pooled) and s[f"{arm}_min_s"] == min(pooled)
        assert s[f"{arm}_per_alternation_s"] == [statistics.median(a[arm]) for a in alts]
    assert s["ratio_trl_nogc_vs_separate"] == pytest.approx(s["trl_nogc_s"] / s["separate_s"])
    assert s["ratio_trl_gc_vs_shared"] == pytest.approx(s["trl_gc_s"] / s["shared_s"])
    assert s["paired_trl_nogc_vs_shared"] == pytest.approx(
        [statistics.median(a["trl_nogc"]) / statistics.median(a["shared"]) for a in alts]
    )
    assert s["min_ratio_trl_gc_vs_separate"] == pytest.approx(
        min(2.0, 2.2, 3.0, 2.4, 2.6) / min(0.30, 0.34, 0.5, 0.4, 0.45)
    )
    spreads = [max(s[f"{arm}_per_alternation_s"]) / min(s[f"{arm}_per_alternation_s"]) for arm in ARMS]
    assert s["alternation_spread"] == pytest.approx(max(spreads)) and s["alternation_spread"] >= 1
    assert s["alternations"] == 2
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RLHFSIM_TRL_PYTHON"), reason="set RLHFSIM_TRL_PYTHON to the side env's python")
def test_trl_ppo_section_runs_with_the_side_environment(tmp_path):
    out = tmp_path / "b.json"
    rc = main(
        [
            "bench",
            *TINY,
            "--threads",
            "1",
            "--only",
            "trl_ppo",
            "--alternations",
            "1",
            "--trl-python",
            os.environ["RLHFSIM_TRL_PYTHON"],
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())["trl_ppo"]
    assert r["trl_threads"] == r["threads"] == 1 and r["alternations"] == 1
    assert all(r[f"{arm}_s"] > 0 for arm in ARMS) and r["trl_trainer"].endswith("PPOTrainer")


def test_driver_is_standalone():
    """The driver runs in an environment without rlhfsim: it must not import the project."""
    text = driver_path().read_text()
    assert "import rlhfsim" not in text and "from rlhfsim" not in text
