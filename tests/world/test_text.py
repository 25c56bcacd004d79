"""The text world: prompts from local json/jsonl/csv/parquet files, types from a column or rules, chat templates,
gold rules and a gold reward-model checkpoint, and clear errors for bad data."""

import json

import numpy as np
import pandas as pd
import pytest

from rlhfsim.config import ConfigError
from rlhfsim.models.hf import load_tokenizer
from rlhfsim.world import build_world
from rlhfsim.world.text import gold_length, gold_reference_f1, gold_reference_match
from rlhfsim.world.text_config import TextWorldConfig


def world(ckpts, policy="gpt2", **kw):
    cfg = TextWorldConfig(
        **{
            "dataset": ckpts["prompts"],
            "type_column": "type",
            "reference_column": "answer",
            "eval_fraction": 0.25,
            **kw,
        }
    )
    return build_world(cfg, policy_tokenizer=load_tokenizer(ckpts[policy], "policy.checkpoint"))


@pytest.fixture(scope="module")
def gpt2_world(tiny_checkpoints):
    return world(tiny_checkpoints)


def test_split_types_and_sampling(gpt2_world, tiny_checkpoints):
    rows = [json.loads(x) for x in open(tiny_checkpoints["prompts"])]
    w = gpt2_world
    assert len(w.train) + len(w.evals) == len(rows) and len(w.evals) == round(0.25 * len(rows))
    assert {r["text"] for r in w.train}.isdisjoint({r["text"] for r in w.evals})
    ev = w.eval_prompts(4)
    assert [p.id for p in ev] == [0, 1, 2, 3] and ev == w.eval_prompts(4)  # fixed held-out set
    ps = w.sample_prompts(16, np.random.default_rng(1))
    by_text = {r["prompt"]: r for r in rows}
    for p in ps:
        assert p.type == by_text[p.text]["type"] and p.answer == by_text[p.text]["answer"]
        assert p.model_input == p.text  # GPT-2 tokenizer: no chat template, no BOS
    assert [p.text for p in ps] == [p.text for p in w.sample_prompts(16, np.random.default_rng(1))]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_other_file_formats_give_the_same_prompts(tmp_path, tiny_checkpoints, gpt2_world, fmt):
    df = pd.read_json(tiny_checkpoints["prompts"], lines=True)
    path = tmp_path / f"prompts.{fmt}"
    {
        "csv": lambda: df.to_csv(path, index=False),
        "parquet": lambda: df.to_parquet(path),
        "json": lambda: path.write_text(df.to_json(orient="records")),
    }[fmt]()
    w = world({**tiny_checkpoints, "prompts": str(path)})
    assert [(p.text, p.type) for p in w.eval_prompts(8)] == [(p.text, p.type) for p in gpt2_world.eval_prompts(8)]


def test_type_rules_and_chat_template(tiny_checkpoints):
    w = world(tiny_checkpoints, policy="llama", type_column=None, type_rules={"closed": r"^(what|who|how many)\b"})
    for r in w.train + w.evals:
        assert r["type"] == ("closed" if r["text"].split()[0] in ("What", "Who", "How") else "open")
        assert r["shown"].startswith("<|user|> " + r["text"]) and r["shown"].endswith("<|assistant|>")
    plain = world(tiny_checkpoints, policy="llama", chat_template="off", prompt_template="Q: {prompt} A:")
    p = plain.eval_prompts(1)[0]
    assert p.model_input == f"<s>Q: {p.text} A:"  # the Llama tokenizer adds BOS: the prompt keeps it
    assert plain.tokenizer.encode(p.model_input, add_special_tokens=False)[0] == plain.tokenizer.bos_token_id


def test_gold_rules():
    assert gold_length("a b c d", target=8, decay=0.0) == 0.5
    assert gold_length(" ".join(["w"] * 12), target=8, decay=0.0) == 1.0
    assert gold_length(" ".join(["w"] * 12), target=8, decay=0.1) == pytest.approx(0.6)
    assert (
        gold_reference_match("Paris, of course", "paris") == 1.0 and gold_reference_match("It is Paris", "Paris") == 0.0
    )
    assert gold_reference_f1("the blue sky", "blue sky") == pytest.approx(0.8) and gold_reference_f1("", "x") == 0.0


def test_rule_gold_per_type(gpt2_world):
    ps = [p for p in gpt2_world.eval_prompts(8)]
    comps = [p.answer if p.type == "closed" else "one two three four" for p in ps]
    g = gpt2_world.gold(ps, comps)
    for p, v in zip(ps, g):
        assert v == (1.0 if p.type == "closed" else 4 / 64)  # default length_target 64


def test_gold_model_checkpoint_scores_text(tiny_checkpoints):
    w = world(tiny_checkpoints, gold={"kind": "model", "checkpoint": tiny_checkpoints["gold"]})
    ps = w.eval_prompts(4)
    g = w.gold(ps, ["blue", "four legs", "ocean rain city", ""])
    assert g.shape == (4,) and np.all((g > 0) & (g < 1)) and len(set(np.round(g, 9))) > 1
    assert np.array_equal(g, w.gold(ps, ["blue", "four legs", "ocean rain city", ""]))


def test_bad_data_errors(tmp_path, tiny_checkpoints):
    with pytest.raises(ConfigError, match="prompt_column.*question|column.*'question'"):
        world(tiny_checkpoints, prompt_column="question")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi there", "type": "weird", "answer": "x"}\n' * 4)
    with pytest.raises(ConfigError, match="type_column.*weird"):
        world({**tiny_checkpoints, "prompts": str(bad)})
    with pytest.raises(ValueError, match="does not exist"):
        TextWorldConfig(dataset=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="gold.rules"):
        TextWorldConfig(
            dataset=tiny_checkpoints["prompts"],
            reference_column="answer",
            gold={"kind": "rule", "rules": {"open": "length"}},
        )
    with pytest.raises(ConfigError, match="policy.checkpoint"):
        build_world(TextWorldConfig(dataset=tiny_checkpoints["prompts"], reference_column="answer"))
