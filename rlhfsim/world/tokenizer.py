"""A word-level vocabulary wrapped as a Hugging Face fast tokenizer.

Every model in the simulator is a normal `transformers` model, so the synthetic world's words go
through the same tokenizer API a real checkpoint would use (encode, decode, save/load).

    tok = build_word_tokenizer(["add", "=", "3"])
    tok.encode("add 3 =")            -> [3, 5, 4]   (no special tokens are added)
    tok.decode([3, 5, 4, 1], skip_special_tokens=True) -> "add 3 ="
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK, BOS = "<pad>", "<eos>", "<unk>", "<bos>"


def build_word_tokenizer(words: list[str], bos: bool = False, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A whitespace-split, word-level tokenizer with deterministic ids.

    Ids: "<pad>" = 0, "<eos>" = 1, "<unk>" = 2 (then "<bos>" = 3 when `bos`), then `words` in the
    given order. No post-processor is attached, so encoding never adds special tokens; callers
    append EOS explicitly. Decoding joins tokens with single spaces, so
    decode(encode(text)) == text for in-vocabulary text with single spaces.
    """
    specials = [PAD, EOS, UNK] + ([BOS] if bos else [])
    bad = [w for w in words if not w or w != w.strip() or len(w.split()) != 1 or w in specials]
    if bad:
        raise ValueError(f"vocabulary words must be single non-special tokens without whitespace: {bad[:5]}")
    if len(set(words)) != len(words):
        dupes = sorted({w for w in words if words.count(w) > 1})
        raise ValueError(f"duplicate vocabulary words: {dupes[:5]}")
    vocab = {w: i for i, w in enumerate(specials + list(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kw = {"bos_token": BOS} if bos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        # the legacy clean-up glues words like "," or "n't" onto their neighbours: round trips must be exact
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        **kw,
    )
