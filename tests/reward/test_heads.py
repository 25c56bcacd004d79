"""Shared-trunk ensembles (reward.ensemble_kind: heads): heads differ, one head is one reward model, bootstrap
weights act as resamples, the config refuses what cannot apply, and runs with heads resume bit-for-bit."""

import numpy as np
import pandas as pd
import pytest
import torch

from rlhfsim.bench.common import Shape, vocab_tokenizer
from rlhfsim.bench.reward import preference_groups
from rlhfsim.config import ConfigError, RewardConfig, config_from_dict, load_config
from rlhfsim.loop import run
from rlhfsim.reward.early_stop import bootstrap_indices, bootstrap_weights, head_orders, member_orders
from rlhfsim.reward.heads import HeadRewardModels
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.trainer import listwise_loss, train_reward_models
from rlhfsim.reward.utilities import get_utility
from rlhfsim.tracking import read_jsonl

TYPES = ["open", "closed"]


@pytest.fixture(scope="module")
def setup():
    shape = Shape(vocab=24, rm_groups=12, rm_k=3, rm_seq_len=8, prompt_len=2)
    groups = preference_groups(shape, seed=3)
    texts = ([g.prompt.text for g in groups for _ in g.completions], [c for g in groups for c in g.completions])
    return vocab_tokenizer(shape.vocab), groups, texts


def _cfg(**kw):
    return RewardConfig(**{"n_layer": 1, "n_embd": 16, "n_head": 2, "epochs": 3, "batch_groups": 4, **kw})


def _heads(tok, **kw):
    cfg = _cfg(ensemble_kind="heads", **kw)
    return HeadRewardModels(tok, cfg, torch.device("cpu"), seed=5, n_positions=16), cfg


@pytest.mark.parametrize("data", ["same_order", "bootstrap"])
def test_heads_differ_and_score_like_members(setup, data):
    tok, groups, (p, c) = setup
    rms, cfg = _heads(tok, ensemble_size=3, ensemble_data=data)
    stats = train_reward_models(rms, groups, cfg, TYPES, np.random.default_rng(0))
    z = rms.logits(p, c)
    assert z.shape == (3, len(c)) and rms.n_members == 3 and len(rms.members) == 1
    assert stats["rm/stacked"] == 0 and np.isfinite(stats["rm/loss"])
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(z[a] - z[b]).max() > 1e-3, (a, b)
    # the rewards PPO aggregates come from the same [M, N] logits
    np.testing.assert_allclose(rms.rewards(p, c), z)


def test_one_head_is_one_reward_model(setup):
    tok, groups, (p, c) = setup
    single_cfg = _cfg()
    single = RewardModels(tok, single_cfg, torch.device("cpu"), seed=5, n_positions=16)
    heads, cfg = _heads(tok, ensemble_size=1)
    sa = train_reward_models(single, groups, single_cfg, TYPES, np.random.default_rng(1))
    sb = train_reward_models(heads, groups, cfg, TYPES, np.random.default_rng(1))
    assert sa["rm/loss"] == pytest.approx(sb["rm/loss"], rel=1e-6)
    np.testing.assert_allclose(single.logits(p, c), heads.logits(p, c), atol=1e-6)


def test_weighted_loss_equals_loss_on_repeated_groups():
    """A bootstrap weight of w on a group = that group present w times in the batch (count 0 = left out)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    rank = torch.rand(5, 4, generator=g)
    prefs = rank[:, :, None] > rank[:, None, :]
    tidx = torch.tensor([0, 1, 0, 0, 1])
    U = [get_utility("logsigmoid"), get_utility("log", eps=0.1)]
    w = torch.tensor([2.0, 0.0, 1.0, 3.0, 1.0])
    rep = torch.repeat_interleave(torch.arange(5), w.long())
    weighted, st_w = listwise_loss(logits, prefs, tidx, U, True, w)
    repeated, st_r = listwise_loss(logits[rep], prefs[rep], tidx[rep], U, True)
    torch.testing.assert_close(weighted, repeated)
    assert st_w["rm/train_acc"] == pytest.approx(st_r["rm/train_acc"])
    torch.testing.assert_close(
        listwise_loss(logits, prefs, tidx, U, True, torch.ones(5))[0], listwise_loss(logits, prefs, tidx, U, True)[0]
    )


def test_bootstrap_weights_reproducible_and_differ_by_seed_and_head():
    w = bootstrap_weights(40, 4, np.random.default_rng(7))
    assert w.shape == (4, 40) and (w.sum(1) == 40).all() and (w >= 0).all()
    np.testing.assert_array_equal(w, bootstrap_weights(40, 4, np.random.default_rng(7)))
    assert not np.array_equal(w, bootstrap_weights(40, 4, np.random.default_rng(8)))
    assert all(not np.array_equal(w[a], w[b]) for a in range(4) for b in range(a + 1, 4))
    # the multiplicities of the resamples the `members` kind would draw from the same stream
    idx = bootstrap_indices(40, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(w[2], np.bincount(idx[2], minlength=40))
    assert 0 < (w == 0).mean() < 0.6  # about 1/e of the groups are left out of each head's resample


def test_head_orders_share_one_order():
    orders, w = head_orders(10, 3, 2, "same_order", np.random.default_rng(0))
    assert orders.shape == (1, 2, 10) and w is None
    np.testing.assert_array_equal(orders, member_orders(10, 1, 2, "own_order", np.random.default_rng(0)))
    orders, w = head_orders(10, 3, 2, "bootstrap", np.random.default_rng(0))
    assert orders.shape == (1, 2, 10) and w.shape == (3, 10)
    with pytest.raises(ValueError, match="own_order"):
        head_orders(10, 3, 2, "own_order", np.random.default_rng(0))


def test_config_maps_default_order_and_refuses_what_cannot_apply():
    cfg = config_from_dict({"reward": {"ensemble_kind": "heads", "ensemble_size": 3}})
    assert cfg.reward.ensemble_data == "same_order"  # the members' default has no meaning for heads
    assert config_from_dict(cfg.model_dump()).reward.ensemble_data == "same_order"  # resolved config reloads
    assert config_from_dict({}).reward.ensemble_kind == "members"
    with pytest.raises(ConfigError, match="same_order or bootstrap"):
        config_from_dict({"reward": {"ensemble_kind": "heads", "ensemble_data": "own_order"}})
    with pytest.raises(ValueError, match="built-in GPT-2"):
        RewardConfig(checkpoint="org/rm", ensemble_kind="heads")


@pytest.mark.slow
def test_heads_run_end_to_end_and_resume(tmp_path, sft_cache):
    over = [
        f"policy.cache_dir={sft_cache}",
        "reward.ensemble_kind=heads",
        "reward.ensemble_size=3",
        "reward.ensemble_data=bootstrap",
        "reward.aggregation=wco",
        "reward.early_stop.mode=patience",
        "reward.early_stop.holdout=0.3",
        "reward.center_coef=0.01",
        "reward.dropout=0.1",
    ]
    run(load_config("configs/tiny.yaml", over), out=tmp_path / "full")
    run(load_config("configs/tiny.yaml", over + ["loop.rounds=1"]), out=tmp_path / "part")
    run(load_config("configs/tiny.yaml", over), out=tmp_path / "part", resume=True)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(("time/", "sft/"))} for r in rows]
    full = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert strip(full) == strip(read_jsonl(tmp_path / "part" / "metrics.jsonl"))
    last = full[-1]
    assert last["rm/ens_std"] > 0 and "rm/ens_err_corr_open" in last and "rm/heldout_loss" in last
    df = pd.read_parquet(tmp_path / "full" / "rewards" / f"round_{last['round']:03d}.parquet")
    assert {"proxy_m0", "proxy_m1", "proxy_m2"} <= set(df.columns)
