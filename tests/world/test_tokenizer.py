import pytest
from transformers import AutoTokenizer

from rlhfsim.world.tokenizer import build_word_tokenizer

WORDS = ["add", "=", "3", "5", "8", "ocean", "wave"]


def test_ids_are_deterministic_specials_first():
    tok = build_word_tokenizer(WORDS)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "<eos>", "<unk>"]
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids(WORDS) == list(range(3, 3 + len(WORDS)))
    assert len(tok) == 3 + len(WORDS)
    assert build_word_tokenizer(WORDS).get_vocab() == tok.get_vocab()


def test_optional_bos():
    tok = build_word_tokenizer(WORDS, bos=True)
    assert tok.bos_token == "<bos>" and tok.bos_token_id == 3
    assert tok.convert_tokens_to_ids("add") == 4
    assert tok.encode("add") == [4]  # still nothing added automatically


def test_round_trip_and_no_automatic_specials():
    tok = build_word_tokenizer(WORDS)
    text = "add 3 5 = 8 ocean wave wave"
    ids = tok.encode(text)
    assert len(ids) == len(text.split())
    assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
    assert tok.decode(ids) == text
    assert tok(text)["input_ids"] == ids
    # the caller appends EOS and decodes with skip_special_tokens
    assert tok.decode(ids + [tok.eos_token_id, tok.pad_token_id], skip_special_tokens=True) == text


def test_round_trip_keeps_punctuation_words_apart():
    # any word list must round-trip, including words the legacy clean-up would glue together
    tok = build_word_tokenizer(["hello", ",", "world", ".", "don", "'t", "?"])
    text = "hello , world . don 't ?"
    assert tok.decode(tok.encode(text)) == text


def test_unknown_words_map_to_unk():
    tok = build_word_tokenizer(WORDS)
    assert tok.encode("add zebra") == [3, tok.unk_token_id]


def test_save_and_load(tmp_path):
    tok = build_word_tokenizer(WORDS)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "add 5 3 = 8"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.decode(loaded.encode(text)) == text
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    assert loaded.get_vocab() == tok.get_vocab()


@pytest.mark.parametrize("bad", [["a", "a"], ["a b"], ["<eos>"], [""]])
def test_bad_vocabularies_are_rejected(bad):
    with pytest.raises(ValueError):
        build_word_tokenizer(bad)
