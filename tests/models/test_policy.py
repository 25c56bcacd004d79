import torch

from rlhfsim.config import PolicyConfig, SyntheticWorldConfig
from rlhfsim.models.policy import sft_cache_key


def test_sft_cache_key_tracks_what_changes_the_weights():
    world, policy, vocab = SyntheticWorldConfig(), PolicyConfig(), ["a", "b"]
    key = sft_cache_key(world, policy, vocab, "cpu")
    assert key == sft_cache_key(
        world, policy.model_copy(update={"temperature": 0.5, "cache_dir": "elsewhere"}), vocab, "cpu"
    )
    assert key != sft_cache_key(world, policy.model_copy(update={"sft_epochs": 1}), vocab, "cpu")
    assert key != sft_cache_key(world, policy, vocab, "meta")  # another device type
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)  # another reduction order on CPU
        assert key != sft_cache_key(world, policy, vocab, "cpu")
    finally:
        torch.set_num_threads(threads)


def test_sft_cache_key_names_the_autocast_precision_and_leaves_fp32_keys_as_they_were():
    import hashlib
    import json

    from rlhfsim.models.parallel import bf16_autocast
    from rlhfsim.models.policy import numerics_cache_key

    blob = {"policy": "p", "v": 1}
    key = numerics_cache_key(blob, "cpu")
    before = {
        **blob,
        "numerics": {"device": "cpu", "threads": torch.get_num_threads()},
    }  # the key's form before precision
    assert (
        key == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    )  # existing caches stay valid
    with bf16_autocast("cpu"):
        assert numerics_cache_key(blob, "cpu") != key  # an SFT trained under bf16 autocast is another cache entry
    assert numerics_cache_key(blob, "cpu") == key
    # CUDA always names its precision: GPU caches from before that were trained on stale bf16 weights
    old_cuda = {**blob, "numerics": {"device": "cuda", "threads": torch.get_num_threads()}}
    assert (
        numerics_cache_key(blob, "cuda")
        != hashlib.sha256(json.dumps(old_cuda, sort_keys=True).encode()).hexdigest()[:16]
    )
