import pytest

from rlhfsim.models.layout import encode_prompts, encode_responses
from rlhfsim.world.tokenizer import build_word_tokenizer

TOK = build_word_tokenizer([f"w{i}" for i in range(20)])
TEXTS = ["w1 w2 w3", "w4", "", "w5 w6 w7 w8 w9"]


def _encode_one(t: str) -> list[int]:
    return TOK.encode(t, add_special_tokens=False)


def test_prompts_left_padded_like_a_per_text_loop():
    ids, mask = encode_prompts(TOK, TEXTS)
    width = max(len(_encode_one(t)) for t in TEXTS)
    assert ids.shape == mask.shape == (len(TEXTS), width)
    for i, t in enumerate(TEXTS):  # the plain loop the batched version replaces
        x = _encode_one(t)
        assert ids[i, width - len(x) :].tolist() == x and mask[i].tolist() == [0] * (width - len(x)) + [1] * len(x)
        assert (ids[i, : width - len(x)] == TOK.pad_token_id).all()


@pytest.mark.parametrize("max_len", [2, 4, 8])
def test_responses_right_padded_with_eos_and_truncated(max_len):
    ids, mask = encode_responses(TOK, TEXTS, max_len)
    for i, t in enumerate(TEXTS):
        x = (_encode_one(t) + [TOK.eos_token_id])[:max_len]
        assert ids[i, : len(x)].tolist() == x and mask[i].tolist() == [1] * len(x) + [0] * (max_len - len(x))
        assert (ids[i, len(x) :] == TOK.pad_token_id).all()
