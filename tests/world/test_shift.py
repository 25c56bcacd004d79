"""Shifted evaluation sets: off the training distribution, inside the vocabulary, gold-scorable."""

import numpy as np
import pytest

from rlhfsim.config import PolicyConfig
from rlhfsim.models.policy import sft_cache_key
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig


def test_operands_shift_is_larger_operands_with_a_right_answer():
    w = SyntheticWorld(SyntheticWorldConfig())
    ps = w.eval_prompts(40, shift="operands")
    assert [p.id for p in ps] == list(range(40))
    for p in ps:
        a, b = (int(x) for x in p.text.split()[1:3])
        assert max(a, b) > w.cfg.max_operand and a + b <= 2 * w.cfg.max_operand
        assert p.answer == w.answer(p) == str(a + b) and w.gold([p], [p.answer])[0] == 1.0
        assert w.tokenizer.unk_token_id not in w.tokenizer(p.text)["input_ids"]
    train = w.sample_prompts(500, np.random.default_rng(0))
    assert not {p.text for p in train} & {p.text for p in ps}
    assert [p.text for p in ps] == [p.text for p in w.eval_prompts(40, shift="operands")]  # fixed by the world seed


def test_held_out_topics_and_facts_never_reach_training():
    w = SyntheticWorld(SyntheticWorldConfig(holdout_topics=2, holdout_facts=5))
    held_topics, held_facts = set(list(w.topics)[-2:]), set(w.entities[-5:])
    train = w.sample_prompts(2000, np.random.default_rng(1)) + [
        p for p, _ in w.demonstrations(500, np.random.default_rng(2))
    ]
    assert not {p.topic for p in train if p.family == "open"} & held_topics
    assert not {p.text.split()[1] for p in train if p.family == "fact"} & held_facts
    topics = w.eval_prompts(20, shift="topics")
    facts = w.eval_prompts(20, shift="facts")
    assert {p.topic for p in topics} <= held_topics and {p.text.split()[1] for p in facts} <= held_facts
    assert w.gold([topics[0]], [w.reference_completion(topics[0])])[0] == 1.0


def test_shift_errors_name_the_fix():
    w = SyntheticWorld(SyntheticWorldConfig())
    with pytest.raises(ValueError, match="holdout_topics"):
        w.eval_prompts(4, shift="topics")
    with pytest.raises(ValueError, match="operands"):
        w.eval_prompts(4, shift="galaxy")
    with pytest.raises(ValueError, match="holdout"):
        SyntheticWorldConfig(n_topics=2, holdout_topics=2)


def test_holdouts_leave_the_default_stream_and_sft_cache_key_alone():
    base, zero = SyntheticWorld(SyntheticWorldConfig()), SyntheticWorld(SyntheticWorldConfig(holdout_topics=0))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert base.sample_prompts(300, rng_a) == zero.sample_prompts(300, rng_b)
    pol = PolicyConfig()
    key = lambda c: sft_cache_key(c, pol, SyntheticWorld(c).vocab)
    assert key(SyntheticWorldConfig()) == key(SyntheticWorldConfig(holdout_facts=0))
    assert key(SyntheticWorldConfig()) != key(SyntheticWorldConfig(holdout_facts=3))
