"""Where the policy and value models of a run come from: the built-in GPT-2s (synthetic world) or transformers
checkpoints. The loop asks here and never branches on it; `policy.checkpoint` decides. The reward models' counterpart
is rlhfsim/reward/build.py.
"""

from __future__ import annotations

from rlhfsim.models.hf import checkpoint_value_model, checkpoint_warm_start
from rlhfsim.models.policy import ValueHead, build_value_model, warm_start_policy


def warm_start(world, cfg, device):
    """(policy, SFT stats): the cached SFT GPT-2, or the checkpoint policy (SFT'd on references when asked, LoRA)."""
    if cfg.policy.checkpoint is None:
        return warm_start_policy(world, cfg, device)
    return checkpoint_warm_start(world, cfg, device)


def value_model(cfg, policy, device):
    """A separate value model, or (optimizer.value_model: shared) a zero value head on the policy's trunk."""
    if cfg.policy.checkpoint is None and cfg.optimizer.value_init != "reward":
        return build_value_model(policy, cfg.optimizer.value_init, cfg.optimizer.value_model).to(device)
    if cfg.optimizer.value_model == "shared":
        body = policy.get_base_model() if hasattr(policy, "peft_config") else policy
        return ValueHead(body.config.hidden_size).to(device)
    return checkpoint_value_model(cfg, policy, device)
