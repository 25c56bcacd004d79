"""2 rounds through the checkpoint and dataset code paths on CPU: tiny GPT-2 / Llama-style policies, a DeBERTa-v2
or GPT-2 reward model on another tokenizer, gold from a Llama-style classifier or a rule, a local jsonl dataset."""

import pandas as pd
import pytest

from rlhfsim.cli import main
from rlhfsim.config import config_from_dict
from rlhfsim.loop import run
from rlhfsim.tracking import read_jsonl


def text_config(ckpts, cache: str, policy: str, reward: str, gold: dict, **extra) -> dict:
    raw = {
        "seed": 0,
        "device": "cpu",
        "world": {
            "name": "text",
            "dataset": ckpts["prompts"],
            "type_column": "type",
            "reference_column": "answer",
            "eval_fraction": 0.25,
            "gold": gold,
        },
        "policy": {
            "checkpoint": ckpts[policy],
            "response_len": 6,
            "sft_demos": 16,
            "sft_epochs": 1,
            "sft_batch_size": 8,
            "cache_dir": cache,
        },
        "reward": {"checkpoint": ckpts[reward], "epochs": 1, "max_length": 48},
        "optimizer": {"iterations": 1, "batch_size": 4, "epochs": 1, "minibatches": 2},
        "loop": {
            "rounds": 2,
            "prompts_per_round": 4,
            "completions_per_prompt": 2,
            "eval_prompts": 4,
            "eval_completions": 2,
            "reference_mix": 0.5,
        },
        "output": {"experiment": "text", "n_samples": 2},
    }
    for key, value in extra.items():
        section, field = key.split("__")
        raw.setdefault(section, {})[field] = value
    return raw


CASES = {
    # GPT-2 policy (byte BPE) + DeBERTa-v2 reward model (WordPiece) + Llama-style gold classifier (GPT-2 vocab)
    "gpt2_deberta_goldmodel": dict(policy="gpt2", reward="deberta", gold={"kind": "model", "checkpoint": "gold"}),
    # Llama-style policy with a chat template, LoRA and a shared value head + GPT-2 reward model (2 members) + rule gold, micro-batches
    "llama_lora_gpt2_rule": dict(
        policy="llama",
        reward="gpt2",
        gold={"kind": "rule", "rules": {"open": "length", "closed": "reference_match"}, "length_target": 6},
        policy__lora={"r": 4},
        optimizer__value_model="shared",
        reward__ensemble_size=2,
        compute__policy_micro_batch=1,
        compute__rm_micro_batch=1,
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def text_run(request, tiny_checkpoints, tmp_path_factory, sft_cache):
    case = dict(CASES[request.param])
    if request.param.startswith("llama"):
        pytest.importorskip("peft")
    gold = dict(case.pop("gold"))
    if gold["kind"] == "model":
        gold["checkpoint"] = tiny_checkpoints[gold["checkpoint"]]
    raw = text_config(tiny_checkpoints, sft_cache, case.pop("policy"), case.pop("reward"), gold, **case)
    out = tmp_path_factory.mktemp(request.param) / "seed0"
    summary = run(config_from_dict(raw), out=out)
    return request.param, raw, out, summary


@pytest.mark.slow
def test_two_rounds_from_checkpoints_and_a_dataset(text_run):
    name, raw, out, summary = text_run
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2] and summary["rounds_completed"] == 2
    last = rows[-1]
    for key in (
        "eval/gold",
        "eval/gold_open",
        "eval/gold_closed",
        "eval/proxy",
        "rm/pairwise_acc",
        "objective/kl",
        "loss/policy_avg",
    ):
        assert key in last and last[key] == last[key], key  # present and not NaN
    assert 0.0 <= last["eval/gold"] <= 1.0 and rows[0]["sft/demos"] == 16
    df = pd.read_parquet(out / "rewards" / "round_002.parquet")
    assert len(df) == 4 * 2 and set(df.prompt_type) <= {"open", "closed"}
    members = [c for c in df.columns if c.startswith("proxy_m")]
    assert len(members) == raw["reward"].get("ensemble_size", 1)
    assert (out / "checkpoints" / "latest" / "rm0.safetensors").exists()


@pytest.mark.slow
def test_same_seed_same_metrics_and_resume(text_run, tmp_path):
    """Reruns give the same metrics; a run resumed after round 1 ends where the uninterrupted run ends."""
    name, raw, out, _ = text_run
    if name != "llama_lora_gpt2_rule":
        pytest.skip("one case is enough for resume (the LoRA policy and 2-member ensemble are the most state)")
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    part = {**raw, "loop": {**raw["loop"], "rounds": 1}}
    run(config_from_dict(part), out=tmp_path / "r")
    run(config_from_dict(raw), out=tmp_path / "r", resume=True)
    assert strip(read_jsonl(tmp_path / "r" / "metrics.jsonl")) == strip(read_jsonl(out / "metrics.jsonl"))


def test_bad_checkpoint_path_exits_2(tmp_path, tiny_checkpoints, sft_cache, capsys):
    import yaml

    raw = text_config(
        tiny_checkpoints,
        sft_cache,
        "gpt2",
        "deberta",
        {"kind": "rule", "rules": {"open": "length", "closed": "reference_match"}},
    )
    raw["reward"]["checkpoint"] = str(tmp_path / "no_such_model")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    msg = capsys.readouterr().out
    assert "reward.checkpoint" in msg and "does not exist" in msg and "Traceback" not in msg
    assert not (tmp_path / "run").exists()  # rejected before anything was written
    raw["reward"]["checkpoint"], raw["world"]["prompt_column"] = tiny_checkpoints["deberta"], "question"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run2")]) == 2
    assert "prompt_column" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["gpu_gold_rm", "gpu_longform_length"])
def test_gpu_experiment_files_validate(name, tmp_path):
    """The GPU studies expand into valid run configs (hub names are not contacted by a dry run)."""
    assert main(["sweep", f"experiments/{name}.yaml", "--dry-run", "--out", str(tmp_path)]) == 0


@pytest.mark.slow
def test_the_gpu_studies_path_under_bf16_autocast(tiny_checkpoints, sft_cache, tmp_path):
    """The GPU studies' models (DeBERTa-v2 proxy, Llama-style gold classifier, GPT-2 checkpoint policy) inside one bf16
    autocast context, as a GPU run holds it (here on CPU), SFT included (its own empty cache): 2 rounds finish, the
    proxy's rewards are off bf16's grid (its head computes in fp32), and each PPO update starts from the weights that
    sampled its rollout (ratio 1 up to bf16 rounding). Gold is a sigmoid of the gold model's logit, off the grid
    whatever its head does: its head is checked in tests/models/test_parallel.py."""
    from rlhfsim.models.parallel import bf16_autocast

    raw = text_config(
        tiny_checkpoints,
        str(tmp_path / "sft"),
        "gpt2",
        "deberta",
        {"kind": "model", "checkpoint": tiny_checkpoints["gold"]},
    )
    with bf16_autocast("cpu"):
        run(config_from_dict(raw), out=tmp_path / "bf16")
    rows = read_jsonl(tmp_path / "bf16" / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(r["policy/approxkl_avg"] < 1e-3 and r["policy/clipfrac_avg"] < 0.05 for r in rows[1:])
    df = pd.read_parquet(tmp_path / "bf16" / "rewards" / "round_002.parquet")
    import torch

    v = torch.tensor(df["proxy"].to_numpy())  # a bf16 head would put every value on bf16's grid (8 significant bits)
    assert (v.to(torch.bfloat16).double() != v).float().mean() > 0.5
