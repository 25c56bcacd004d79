import torch

from rlhfsim.models.layout import encode_prompts, truncate_after_eos
from rlhfsim.models.policy import build_policy
from rlhfsim.models.sampling import response_logits, sample
from rlhfsim.ppo.core import entropy_from_logits, logprobs_from_logits
from rlhfsim.world.tokenizer import build_word_tokenizer


class P:
    n_layer, n_embd, n_head = 1, 32, 2


def test_truncate_after_eos():
    resp = torch.tensor([[5, 2, 7, 8], [5, 6, 7, 8], [2, 9, 9, 9]])
    ids, mask = truncate_after_eos(resp, eos_id=2, pad_id=0)
    assert ids.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_sampling_logprobs_match_full_forward_and_seed_reproduces():
    tok = build_word_tokenizer([f"w{i}" for i in range(20)])
    torch.manual_seed(0)
    model = build_policy(tok, P, n_positions=32).eval()
    ids, mask = encode_prompts(tok, ["w1 w2 w3", "w4", "w5 w6"])  # ragged: exercises left padding
    ro = sample(
        model,
        ids,
        mask,
        6,
        tok.eos_token_id,
        tok.pad_token_id,
        0.7,
        torch.Generator().manual_seed(1),
        return_entropy=True,
    )
    again = sample(model, ids, mask, 6, tok.eos_token_id, tok.pad_token_id, 0.7, torch.Generator().manual_seed(1))
    assert torch.equal(ro.seq.input_ids, again.seq.input_ids)
    with torch.no_grad():
        logits = response_logits(model, ro.seq, 0.7)
        lp = logprobs_from_logits(logits, ro.response_ids) * ro.response_mask
        ent = entropy_from_logits(logits) * ro.response_mask
    # the KV-cache sampler's logprobs are PPO's old logprobs: they must equal a full forward's
    assert torch.allclose(lp, ro.logprobs, atol=1e-5)
    # and its per-step entropies are evaluation's (which skips the forward because of this)
    assert torch.allclose(ent, ro.entropy, atol=1e-5)
    assert (ro.entropy[ro.response_mask.bool()] > 0).all() and (ro.entropy[~ro.response_mask.bool()] == 0).all()
    assert ro.seq.input_ids.shape[1] <= ids.shape[1] + 6
