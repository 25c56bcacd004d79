"""The last-block-where-read GPT-2 forward equals the model's own forward (values and gradients)."""

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhfsim.models import lean


def batch(B=5, T=9, V=40, left=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (B, T), generator=g)
    lengths = torch.randint(2, T + 1, (B,), generator=g)
    lengths[0] = T
    pos = torch.arange(T)[None, :]
    mask = (pos >= T - lengths[:, None]) if left else (pos < lengths[:, None])
    mask = mask.long()
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids, mask, position_ids


def config(**kw):
    base = dict(
        vocab_size=40,
        n_positions=32,
        n_embd=32,
        n_layer=3,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu",
        pad_token_id=0,
    )
    return GPT2Config(**{**base, **kw})


@pytest.mark.parametrize("left", [True, False])
def test_hidden_at_kept_positions_matches_forward_and_gradients(left):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config()).train()
    ids, mask, pos = batch(left=left)
    keep = lean.span(ids.shape[0], 3, 8, ids.device)  # [B, 5]
    assert lean.supports(model)
    h = lean.gpt2_hidden(model, ids, mask, pos, keep)  # [B, 5, d]
    full = model.transformer(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
    ref = full[:, 3:8]
    real = mask[:, 3:8].bool()  # padding positions' outputs are never read
    assert torch.allclose(h[real], ref[real], atol=1e-5)
    w = torch.randn_like(h) * real[..., None]
    g_lean = torch.autograd.grad((h * w).sum(), list(model.parameters()), allow_unused=True)
    g_full = torch.autograd.grad((ref * w).sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(g_lean, g_full):
        if b is None:  # lm_head is not on the trunk's path
            continue
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_one_position_per_row_matches_the_classifier_pooling():
    torch.manual_seed(1)
    model = GPT2ForSequenceClassification(config(num_labels=1)).eval()
    ids, mask, pos = batch(left=False, seed=3)
    ids = ids.masked_fill(mask == 0, 0)  # pad id 0: the classifier pools at the last non-pad token
    last = (mask.sum(-1) - 1)[:, None]  # [B, 1]
    h = lean.gpt2_hidden(model, ids, mask, pos, last)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.squeeze(-1)
    assert torch.allclose(model.score(h)[:, 0, 0], want, atol=1e-5)


def test_unsupported_models_fall_back():
    assert not lean.supports(GPT2LMHeadModel(config(reorder_and_upcast_attn=True)))
    dropout = GPT2LMHeadModel(config(resid_pdrop=0.1))
    assert lean.supports(dropout.eval()) and not lean.supports(dropout.train())
    checkpointed = GPT2LMHeadModel(config())
    checkpointed.gradient_checkpointing_enable()  # recomputes blocks inside forward: not this path's business
    assert not lean.supports(checkpointed)


def grouped_batch(P=6, L=5, V=40, seed=0):
    """Four distinct left-padded prompts (lengths 6, 3, 4, 6), the first three repeated, rows shuffled; right-padded
    responses of 1..L tokens: the layout of a group optimiser's rollout."""
    g = torch.Generator().manual_seed(seed)
    lengths = [P, 3, 4, P]
    prompts = [torch.randint(1, V, (P,), generator=g) for _ in lengths]
    pmasks = [(torch.arange(P) >= P - n).long() for n in lengths]
    order = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1, 2, 0])
    B = len(order)
    resp = torch.randint(1, V, (B, L), generator=g)
    rlen = torch.randint(1, L + 1, (B,), generator=g)
    rlen[0] = L
    rmask = (torch.arange(L)[None] < rlen[:, None]).long()
    ids = torch.cat([torch.stack([prompts[i] * pmasks[i] for i in order]), resp * rmask], 1)
    mask = torch.cat([torch.stack([pmasks[i] for i in order]), rmask], 1)
    return ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)


@pytest.mark.parametrize("L", [5, 1])
def test_shared_prefix_equals_the_per_row_forward_values_and_gradients(L):
    """Each distinct prompt run once (lean.gpt2_hidden_shared) = every row run in full, at every position that predicts
    a real response token, and the parameter gradients agree (the prompt's gradient sums over its rows)."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config()).train()
    P = 6
    ids, mask, pos = grouped_batch(P=P, L=L)
    B, T = ids.shape
    shared = lean.gpt2_hidden_shared(model, ids, mask, pos, P)  # [B, L, d]
    plain = lean.gpt2_hidden(model, ids, mask, pos, lean.span(B, P - 1, T - 1, ids.device))
    assert shared.shape == plain.shape == (B, L, 32)
    real = mask[:, P:].bool()  # position P-1+j predicts response token j: read only where that token is real
    assert torch.allclose(shared[real], plain[real], atol=1e-5), (shared - plain)[real].abs().max()
    w = torch.randn_like(plain) * real[..., None]
    params = list(model.transformer.parameters())
    g_shared = torch.autograd.grad((shared * w).sum(), params)
    g_plain = torch.autograd.grad((plain * w).sum(), params)
    for a, b in zip(
        g_shared, g_plain
    ):  # float rounding relative to the tensor's scale (the row sums run in another order)
        assert (a - b).abs().max() <= 1e-6 * b.abs().max() + 1e-6, ((a - b).abs().max(), b.abs().max())


def test_shared_prefix_declines_when_no_prompt_repeats():
    model = GPT2LMHeadModel(config()).eval()
    ids, mask, pos = grouped_batch()
    distinct = torch.tensor([0, 1, 3, 6])  # one row of each prompt
    assert lean.gpt2_hidden_shared(model, ids[distinct], mask[distinct], pos[distinct], 6) is None
