"""`rlhfsim bench` at a tiny shape: every section runs, the JSON has its keys, and numbers are positive
and finite. No timing is asserted here: speed targets live in the benchmark (docs/performance.md)."""

import json
import math

import numpy as np
import pytest

from rlhfsim.bench.rounds import linear_fit
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
    "--rm-groups",
    "4",
    "--rm-k",
    "4",
    "--rm-seq-len",
    "8",
    "--rm-batch",
    "8",
    "--warmup",
    "0",
    "--repeats",
    "1",
]


def _positive_numbers(d: dict, path: str = "") -> list[str]:
    """Paths of numbers in `d` that are not finite or not > 0 (intercepts and fit terms may be any sign)."""
    bad = []
    for k, v in d.items():
        p = f"{path}.{k}"
        if isinstance(v, dict):
            bad += _positive_numbers(v, p)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        elif not math.isfinite(v) or (v <= 0 and not any(s in k for s in ("intercept", "quadratic", "slope", "r2"))):
            bad.append(f"{p}={v}")
    return bad


@pytest.mark.slow
def test_bench_all_sections_tiny(tmp_path, sft_cache):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            *TINY,
            "--json",
            str(out),
            "--config",
            "configs/tiny.yaml",
            "--set",
            f"policy.cache_dir={sft_cache}",
            "--rounds",
            "1",
            "--sizes",
            "4x2,6x2,8x2,10x2",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"meta", "shape", "rollout", "ppo", "reward", "ensemble", "rounds"}
    assert set(res["ensemble"]) >= {
        "single_s",
        "ensemble_stacked_s",
        "ensemble_loop_s",
        "heads_s",
        "ratio_stacked",
        "ratio_loop",
        "ratio_heads",
        "heads_std",
    }
    assert set(res["rollout"]) >= {"rlhfsim_tokens_per_s", "generate_tokens_per_s", "speedup_vs_generate"}
    assert set(res["ppo"]) >= {"iteration_s", "rollout_s", "update_s", "shared_iteration_s", "shared_update_s"}
    assert set(res["reward"]) >= {"rlhfsim_pairs_per_s", "trl_pairs_per_s", "ratio_vs_trl", "pairs"}
    assert res["reward"]["pairs"] == 4 * 6  # 4 groups x k(k-1)/2 with k = 4
    q = res["rounds"]
    assert set(q) >= {"round_s", "phases_s", "sft_s", "scaling"}
    assert [p["n"] for p in q["scaling"]["points"]] == [8, 12, 16, 20]
    assert set(q["scaling"]["round_fit"]) >= {"slope_s_per_item", "r2", "superlinear"}
    assert _positive_numbers({k: res[k] for k in ("rollout", "ppo", "reward", "rounds")}) == []


def test_bench_only_selects_sections(tmp_path):
    out = tmp_path / "b.json"
    md = tmp_path / "b.md"
    assert main(["bench", *TINY, "--only", "ppo", "--json", str(out), "--markdown", str(md)]) == 0
    res = json.loads(out.read_text())
    assert "ppo" in res and not {"rollout", "reward", "rounds"} & set(res)
    assert "PPO iteration s" in md.read_text()
    assert main(["bench", "--only", "nope"]) == 2


def test_linear_fit_recovers_line_and_flags_quadratic():
    n = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    lin = linear_fit(n, 3.0 + 0.5 * n)
    assert math.isclose(lin["slope_s_per_item"], 0.5) and math.isclose(lin["r2"], 1.0) and not lin["superlinear"]
    assert linear_fit(n, 1.0 + 0.1 * n + 0.2 * n**2)["superlinear"]


def test_bench_profile_lists_the_top_operators(tmp_path):
    out = tmp_path / "p.json"
    assert main(["bench", *TINY, "--only", "ppo", "--profile", "5", "--json", str(out)]) == 0
    prof = json.loads(out.read_text())["profile"]
    ops = prof["ops"]
    assert len(ops) == 5 and prof["iterations"] == 1
    # sorted by own time, shares of the total
    assert [o["self_s_per_iter"] for o in ops] == sorted((o["self_s_per_iter"] for o in ops), reverse=True)
    assert 0 < sum(o["share"] for o in ops) <= 1 + 1e-9
    # distinct operator names (which ones lead depends on the machine's load at this tiny size: no name is asserted)
    assert len({o["name"] for o in ops}) == 5 and all(o["name"] for o in ops)
