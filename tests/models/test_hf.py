"""Models from checkpoints: tokenizers, value models, LoRA, checkpoint reward models and their training, clear errors."""

import numpy as np
import pytest
import torch

from rlhfsim.config import ConfigError, config_from_dict
from rlhfsim.models import build
from rlhfsim.models.hf import apply_lora, load_causal_lm, load_tokenizer
from rlhfsim.models.layout import encode_prompts
from rlhfsim.models.sampling import response_values, sample
from rlhfsim.reward import build as reward_build
from rlhfsim.reward.buffer import Group
from rlhfsim.world.base import Prompt


def cfg(ckpts, **over):
    raw = {
        "device": "cpu",
        "world": {"name": "text", "dataset": ckpts["prompts"], "type_column": "type", "reference_column": "answer"},
        "policy": {"checkpoint": ckpts["gpt2"], "sft_demos": 0, "response_len": 6},
        "reward": {"checkpoint": ckpts["deberta"], "max_length": 48, "epochs": 2, "batch_groups": 4},
    }
    for key, value in over.items():
        section, field = key.split("__")
        raw.setdefault(section, {})[field] = value
    return config_from_dict(raw)


def test_tokenizer_gets_a_pad_token(tiny_checkpoints):
    tok = load_tokenizer(tiny_checkpoints["gpt2"], "policy.checkpoint")
    assert tok.pad_token_id == tok.eos_token_id is not None  # GPT-2 ships without a pad token


def test_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="policy.checkpoint.*does not exist"):
        load_causal_lm(str(tmp_path / "nope"), "policy.checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="reward.checkpoint: cannot load"):
        load_tokenizer(str(tmp_path / "empty"), "reward.checkpoint")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_value_model_from_policy_starts_at_zero(tiny_checkpoints, arch):
    c = cfg(tiny_checkpoints, policy__checkpoint=tiny_checkpoints[arch])
    policy = load_causal_lm(tiny_checkpoints[arch], "policy.checkpoint")
    value = build.value_model(c, policy, torch.device("cpu"))
    body_v, body_p = getattr(value, value.base_model_prefix), getattr(policy, policy.base_model_prefix)
    for (k, a), (_, b) in zip(body_v.state_dict().items(), body_p.state_dict().items()):
        assert torch.equal(a, b), k  # the policy's body, copied
    tok = load_tokenizer(tiny_checkpoints[arch], "policy.checkpoint")
    ids, mask = encode_prompts(tok, ["Write about rain.", "Who wrote Hamlet?"])
    ro = sample(policy, ids, mask, 5, tok.eos_token_id, tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        v = response_values(value, ro.seq)
    assert v.shape == ro.response_ids.shape and torch.all(v == 0)


def test_value_from_reward_needs_the_policy_vocabulary(tiny_checkpoints):
    c = cfg(tiny_checkpoints, optimizer__value_init="reward")  # DeBERTa: another tokenizer, and bidirectional
    with pytest.raises(ConfigError, match="value_init: reward"):
        build.value_model(c, load_causal_lm(tiny_checkpoints["gpt2"], "p"), torch.device("cpu"))
    ok = cfg(
        tiny_checkpoints, optimizer__value_init="reward", reward__checkpoint=tiny_checkpoints["gold"]
    )  # Llama classifier, GPT-2 vocab
    value = build.value_model(ok, load_causal_lm(tiny_checkpoints["gpt2"], "p"), torch.device("cpu"))
    assert type(value).__name__ == "LlamaForSequenceClassification" and torch.all(value.score.weight == 0)


def test_lora_trains_adapters_only(tiny_checkpoints):
    pytest.importorskip("peft")
    c = cfg(tiny_checkpoints, policy__lora={"r": 4, "target_modules": ["c_attn"]})
    model = apply_lora(load_causal_lm(tiny_checkpoints["gpt2"], "p"), c.policy.lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with pytest.raises(ConfigError, match="target_modules"):
        apply_lora(
            load_causal_lm(tiny_checkpoints["gpt2"], "p"),
            c.policy.lora.model_copy(update={"target_modules": ["no_such_layer"]}),
        )


def groups(n: int = 6) -> list[Group]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = Prompt(i, "open", "open", f"Write about topic {i}.")
        comps = ["rain " * int(k) for k in rng.integers(1, 9, size=3)]
        gold = np.array([len(c) for c in comps], dtype=float)
        prefs = gold[:, None] > gold[None, :]
        out.append(Group(p, comps, gold, prefs, 1, [False] * 3))
    return out


def test_checkpoint_reward_model_scores_and_trains(tiny_checkpoints):
    c = cfg(tiny_checkpoints, reward__ensemble_size=2, reward__lr=5e-3)
    rms = reward_build.reward_models(None, c, torch.device("cpu"))
    assert rms.tokenizer.cls_token == "[CLS]" and len(rms.members) == 2
    g = groups()
    prompts = [x.prompt.text for x in g for _ in x.completions]
    texts = [t for x in g for t in x.completions]
    before = rms.logits(prompts, texts)
    assert before.shape == (2, len(texts)) and not np.allclose(before[0], before[1])  # heads differ by seed
    stats = reward_build.train_reward_models(rms, g, c, ["open", "closed"], np.random.default_rng(0))
    assert stats["rm/groups"] == len(g) and stats["rm/pairs"] == sum(int(x.prefs.sum()) for x in g)
    assert not np.allclose(before, rms.logits(prompts, texts))


def test_micro_batches_give_the_same_gradient(tiny_checkpoints):
    """rm_micro_batch splits a batch; pair-weighted losses make the summed gradient that of the whole batch."""
    from rlhfsim.models.parallel import Parallel
    from rlhfsim.reward.hf_trainer import TextGroups, batch_gradients
    from rlhfsim.reward.trainer import utilities_for

    c = cfg(tiny_checkpoints)
    rms = reward_build.reward_models(None, c, torch.device("cpu"))
    model, data = rms.members[0], TextGroups(groups(), ["open", "closed"])
    grads, stats = [], []
    for micro in (None, 1, 4):
        model.zero_grad(set_to_none=True)
        stats.append(
            batch_gradients(
                rms,
                model,
                data,
                torch.arange(len(data)),
                utilities_for(c.reward, ["open", "closed"]),
                Parallel(),
                micro,
            )
        )
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    for g, st in zip(grads[1:], stats[1:]):
        assert torch.allclose(g, grads[0], rtol=1e-4, atol=1e-7)
        assert st["rm/loss"] == pytest.approx(stats[0]["rm/loss"], rel=1e-5)
        assert st["rm/train_acc"] == pytest.approx(stats[0]["rm/train_acc"])
