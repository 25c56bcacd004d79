"""RewardModels.logits looks large calls up by weights (content hash) and texts: the values a fresh forward gives."""

import numpy as np
import pytest
import torch

from rlhfsim.config import RewardConfig
from rlhfsim.reward import model as rm_model
from rlhfsim.reward.heads import HeadRewardModels
from rlhfsim.reward.model import RewardModels
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig


@pytest.mark.parametrize("cls", [RewardModels, HeadRewardModels])
def test_a_repeated_large_call_is_the_forward_it_repeats(cls):
    world = SyntheticWorld(SyntheticWorldConfig())
    cfg = RewardConfig(
        n_layer=1, n_embd=16, n_head=2, ensemble_size=2, ensemble_kind="heads" if cls is HeadRewardModels else "members"
    )
    rms = cls(world.tokenizer, cfg, torch.device("cpu"), seed=0)
    rng = np.random.default_rng(0)
    prompts = [p.text for p in world.eval_prompts(rm_model.SEEN_MIN_ROWS)]
    texts = [" ".join(rng.choice(["a", "b", "c", "1", "2"], size=rng.integers(1, 5))) for _ in prompts]
    first = rms.logits(prompts, texts)
    np.testing.assert_array_equal(first, rms._score(prompts, texts))
    calls = []
    orig = rms._score
    rms._score = lambda *a: calls.append(1) or orig(*a)
    again = rms.logits(prompts, texts)
    assert not calls and again.tobytes() == first.tobytes() and again is not rms.logits(prompts, texts)  # a copy
    with torch.no_grad():  # other weights: scored afresh
        rms.members[0].score.weight.view(-1)[0] += 0.5
    changed = rms.logits(prompts, texts)
    assert calls and changed.tobytes() == orig(prompts, texts).tobytes() and changed.tobytes() != first.tobytes()
    calls.clear()
    rms.logits(prompts[:8], texts[:8])  # small calls (the optimiser's) are not looked up
    rms.logits(prompts[:8], texts[:8])
    assert len(calls) == 2
