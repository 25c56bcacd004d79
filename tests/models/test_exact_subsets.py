"""The row-subset passes are the padded passes bit for bit: the sampler's compaction (finished rows stop stepping),
the packed forward (no work at padding) and the reward model's packed pooling. Exactness rests on a CPU GEMM's rows
not depending on how many rows it has (from 8 up: lean.MIN_ROWS keeps 16), checked here on this machine's kernels."""

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhfsim.models import lean, sampling
from rlhfsim.models.decode import GPT2Decoder
from rlhfsim.models.layout import encode_prompts
from rlhfsim.models.policy import build_policy
from rlhfsim.ops import logprobs_from_logits
from rlhfsim.world.tokenizer import build_word_tokenizer


class P:
    n_layer, n_embd, n_head = 2, 32, 4


def _setup(rows: int, seed: int = 0):
    tok = build_word_tokenizer([f"w{i}" for i in range(20)])
    torch.manual_seed(seed)
    model = build_policy(tok, P, n_positions=32).eval()
    with torch.no_grad():  # a likely EOS, so rows end at different steps (what compaction is for)
        model.lm_head.weight[tok.eos_token_id] += 0.6
    g = torch.Generator().manual_seed(seed)
    texts = [
        " ".join(f"w{int(i)}" for i in torch.randint(0, 20, (int(n),), generator=g))
        for n in torch.randint(1, 5, (rows,), generator=g)
    ]
    ids, mask = encode_prompts(tok, texts)
    return tok, model, ids, mask


@pytest.mark.parametrize("rows", [3, 17, 64, 300])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("repeat", [1, 4])
def test_compacted_sampling_draws_the_same_tokens_and_logprobs(rows, threads, repeat, monkeypatch):
    """Compaction and the shared prefill (each distinct prompt encoded once) against every row stepped and encoded."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tok, model, ids, mask = _setup(rows)
        ids, mask = ids.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0)  # k rows per prompt
        run = lambda compact: sampling.sample(
            model,
            ids,
            mask,
            10,
            tok.eos_token_id,
            tok.pad_token_id,
            0.9,
            torch.Generator().manual_seed(5),
            return_entropy=True,
            compact=compact,
        )
        b = run(True)
        monkeypatch.setattr(GPT2Decoder, "_distinct", staticmethod(lambda ids, mask: None))
        a = run(False)
    finally:
        torch.set_num_threads(before)
    assert (a.response_mask.sum(-1) < 10).float().mean() > 0.3, "most rows should end early (the compacted case)"
    for x, y in [
        (a.seq.input_ids, b.seq.input_ids),
        (a.seq.attention_mask, b.seq.attention_mask),
        (a.logprobs, b.logprobs),
        (a.entropy, b.entropy),
    ]:
        assert torch.equal(x, y)


def test_draw_is_torch_multinomial():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(40, 30, generator=g) ** 4
    rows = torch.tensor([1, 5, 6, 30, 39])
    want = torch.multinomial(p, 1, generator=torch.Generator().manual_seed(9)).squeeze(-1)
    assert torch.equal(sampling.draw(p[rows], torch.Generator().manual_seed(9), 40, rows), want[rows])
    with pytest.raises(RuntimeError, match="probability tensor"):
        sampling.draw(torch.full((2, 3), float("nan")), g, 2, torch.arange(2))


def test_compact_rows_keeps_enough_rows():
    done = torch.zeros(40, dtype=torch.bool)
    assert sampling.compact_rows(done) is None  # nothing ended: keep all
    done[:30] = True
    keep = sampling.compact_rows(done)
    assert len(keep) == lean.MIN_ROWS and set(range(30, 40)) <= set(keep.tolist())


@pytest.mark.parametrize("rows", [5, 64, 257])
def test_response_logprobs_equal_the_padded_pass(rows):
    tok, model, ids, mask = _setup(rows, seed=1)
    ro = sampling.sample(
        model, ids, mask, 10, tok.eos_token_id, tok.pad_token_id, 1.0, torch.Generator().manual_seed(2)
    )
    with torch.inference_mode():
        want = logprobs_from_logits(sampling.response_logits(model, ro.seq, 0.8), ro.response_ids) * ro.response_mask
        got = sampling.response_logprobs(model, ro.seq, 0.8)
        keep = lean.span(rows, ro.seq.prompt_len - 1, ro.seq.input_ids.shape[1] - 1, None)
        h0 = lean.gpt2_hidden(model, ro.seq.input_ids, ro.seq.attention_mask, ro.seq.position_ids, keep)
        h1 = lean.gpt2_hidden_packed(model, ro.seq.input_ids, ro.seq.attention_mask, ro.seq.position_ids, keep)
    assert torch.equal(got, want)
    real = ro.seq.attention_mask.gather(1, keep).bool()
    assert torch.equal(h0[real], h1[real])
    # the sequence KL evaluation logs: identical bits, padding included
    assert torch.equal((ro.logprobs - got).sum(-1), (ro.logprobs - want).sum(-1))


def test_classifier_pooling_packed_equals_padded():
    conf = GPT2Config(
        vocab_size=40,
        n_positions=32,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu",
        pad_token_id=0,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(conf).eval()
    g = torch.Generator().manual_seed(0)
    B, T = 200, 12
    lengths = torch.randint(2, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()  # right padding, as encode_pairs
    ids = torch.randint(1, 40, (B, T), generator=g) * mask
    with torch.inference_mode():
        packed = lean.classifier_logits(model, ids, mask)
        with torch.no_grad():
            pos = torch.arange(T).expand(B, T)
            last = (torch.arange(T) * (ids != 0)).argmax(-1)
            padded = model.score(lean.gpt2_hidden(model, ids, mask, pos, last[:, None]))[:, 0]
    assert torch.equal(packed, padded)
