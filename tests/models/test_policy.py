import torch

from rlhfsim.config import PolicyConfig, SyntheticWorldConfig
from rlhfsim.models.policy import sft_cache_key


def test_sft_cache_key_tracks_what_changes_the_weights():
    world, policy, vocab = SyntheticWorldConfig(), PolicyConfig(), ["a", "b"]
    key = sft_cache_key(world, policy, vocab, "cpu")
    assert key == sft_cache_key(world, policy.model_copy(update={"temperature": 0.5, "cache_dir": "elsewhere"}), vocab, "cpu")
    assert key != sft_cache_key(world, policy.model_copy(update={"sft_epochs": 1}), vocab, "cpu")
    assert key != sft_cache_key(world, policy, vocab, "meta")  # another device type
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)  # another reduction order on CPU
        assert key != sft_cache_key(world, policy, vocab, "cpu")
    finally:
        torch.set_num_threads(threads)
