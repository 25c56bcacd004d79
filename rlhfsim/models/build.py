"""Where each model of a run comes from: the built-in GPT-2s (synthetic world) or transformers checkpoints.

The loop asks here and never branches on it; `policy.checkpoint` / `reward.checkpoint` decide.
"""

from __future__ import annotations

from rlhfsim.models.parallel import Parallel


def warm_start(world, cfg, device):
    """(policy, SFT stats): the cached SFT GPT-2, or the checkpoint policy (SFT'd on references when asked, LoRA)."""
    if cfg.policy.checkpoint is None:
        from rlhfsim.models.policy import warm_start_policy

        return warm_start_policy(world, cfg, device)
    from rlhfsim.models.hf import checkpoint_warm_start

    return checkpoint_warm_start(world, cfg, device)


def value_model(cfg, policy, device):
    """A separate value model, or (optimizer.value_model: shared) a zero value head on the policy's trunk."""
    if cfg.policy.checkpoint is None and cfg.optimizer.value_init != "reward":
        from rlhfsim.models.policy import build_value_model

        return build_value_model(policy, cfg.optimizer.value_init, cfg.optimizer.value_model).to(device)
    if cfg.optimizer.value_model == "shared":
        from rlhfsim.models.policy import ValueHead

        body = policy.get_base_model() if hasattr(policy, "peft_config") else policy
        return ValueHead(body.config.hidden_size).to(device)
    from rlhfsim.models.hf import checkpoint_value_model

    return checkpoint_value_model(cfg, policy, device)


def reward_models(world, cfg, device, policy=None):
    """The built-in GPT-2 reward model(s) on the world's tokenizer (trunk copied from `policy`, the SFT policy, when
    reward.backbone is policy), or reward.checkpoint with its own tokenizer."""
    if cfg.reward.checkpoint is None:
        from rlhfsim.reward.model import RewardModels

        backbone = policy if cfg.reward.backbone == "policy" else None
        if cfg.reward.ensemble_kind == "heads":
            from rlhfsim.reward.heads import HeadRewardModels

            return HeadRewardModels(world.tokenizer, cfg.reward, device, cfg.seed, backbone=backbone)
        return RewardModels(world.tokenizer, cfg.reward, device, cfg.seed, backbone=backbone)
    from rlhfsim.reward.hf_model import CheckpointRewardModels

    return CheckpointRewardModels(cfg, device, cfg.seed)


def train_reward_models(rms, groups, cfg, type_names, rng, parallel: Parallel | None = None) -> dict:
    """One round of reward-model training with the trainer that fits `rms` (cfg is the full run config)."""
    from rlhfsim.reward.hf_model import CheckpointRewardModels

    if isinstance(rms, CheckpointRewardModels):
        from rlhfsim.reward.hf_trainer import train_checkpoint_reward_models

        return train_checkpoint_reward_models(rms, groups, cfg.reward, type_names, rng, parallel, cfg.compute.rm_micro_batch)
    from rlhfsim.reward.trainer import train_reward_models as train_builtin

    return train_builtin(rms, groups, cfg.reward, type_names, rng)
