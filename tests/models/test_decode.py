import pytest
import torch

from rlhfsim.models import sampling
from rlhfsim.models.decode import GPT2Decoder
from rlhfsim.models.layout import encode_prompts
from rlhfsim.models.policy import build_policy
from rlhfsim.world.tokenizer import build_word_tokenizer


class P:
    n_layer, n_embd, n_head = 2, 32, 4


def _setup():
    tok = build_word_tokenizer([f"w{i}" for i in range(20)])
    torch.manual_seed(0)
    model = build_policy(tok, P, n_positions=32).eval()
    ids, mask = encode_prompts(tok, ["w1 w2 w3 w4", "w4", "w5 w6", "w7 w8 w9"])  # ragged: left padding
    return tok, model, ids, mask


def _sample(model, tok, ids, mask, fast: bool, monkeypatch, **kw):
    with monkeypatch.context() as mp:
        if not fast:
            mp.setattr(GPT2Decoder, "supports", staticmethod(lambda m: False))
        return sampling.sample(
            model, ids, mask, 8, tok.eos_token_id, tok.pad_token_id, 0.9, torch.Generator().manual_seed(3), **kw
        )


def test_lean_decode_step_reproduces_the_model_forward(monkeypatch):
    tok, model, ids, mask = _setup()
    assert GPT2Decoder.supports(model)
    fast = _sample(model, tok, ids, mask, True, monkeypatch, return_hidden=True, return_entropy=True)
    slow = _sample(model, tok, ids, mask, False, monkeypatch, return_hidden=True, return_entropy=True)
    # same tokens drawn (same generator, same probabilities), EOS stops included
    assert torch.equal(fast.seq.input_ids, slow.seq.input_ids)
    assert (fast.response_mask == 0).any(), "some row should end before the limit (EOS path covered)"
    assert torch.allclose(fast.logprobs, slow.logprobs, atol=1e-5)
    assert torch.allclose(fast.entropy, slow.entropy, atol=1e-5)
    assert torch.allclose(fast.hidden, slow.hidden, atol=1e-5)


def test_prefill_and_step_logits_match_a_full_forward_on_the_same_prefix():
    tok, model, ids, mask = _setup()
    B, P = ids.shape
    with torch.inference_mode():
        full_mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], 1)
        dec = GPT2Decoder(model, full_mask.bool(), torch.float32)
        first, _ = dec.prefill(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0))
        prompt = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[
            :, -1
        ]
        assert torch.allclose(first, prompt, atol=1e-5)
        nxt = torch.tensor([5, 6, 7, 8])
        logits, _ = dec.step(nxt, mask.sum(-1), P)
        ref = model(
            input_ids=torch.cat([ids, nxt[:, None]], 1),
            attention_mask=full_mask,
            position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0),
        ).logits[:, -1]
    assert torch.allclose(logits, ref, atol=1e-5)


@pytest.mark.parametrize("case", ["dropout_training", "subclass"])
def test_models_the_step_cannot_reproduce_use_forward(case):
    tok = build_word_tokenizer([f"w{i}" for i in range(5)])
    model = build_policy(tok, P, n_positions=16)
    if case == "dropout_training":
        model.config.resid_pdrop = 0.1
        model.train()
    else:
        model.__class__ = type("Wrapped", (type(model),), {})
    assert not GPT2Decoder.supports(model)
