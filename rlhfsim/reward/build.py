"""Where a run's reward models come from and which trainer fits them: the built-in GPT-2 reward model(s) on the world's
tokenizer (members or heads), or `reward.checkpoint` with its own tokenizer. The loop asks here and never branches on
it; `reward.checkpoint` and `reward.ensemble_kind` decide.
"""

from __future__ import annotations

from rlhfsim.models.parallel import Parallel
from rlhfsim.reward.heads import HeadRewardModels
from rlhfsim.reward.hf_model import CheckpointRewardModels
from rlhfsim.reward.hf_trainer import train_checkpoint_reward_models
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.trainer import train_reward_models as train_builtin


def reward_models(world, cfg, device, policy=None):
    """The built-in GPT-2 reward model(s) on the world's tokenizer (trunk copied from `policy`, the SFT policy, when
    reward.backbone is policy), or reward.checkpoint with its own tokenizer."""
    if cfg.reward.checkpoint is None:
        backbone = policy if cfg.reward.backbone == "policy" else None
        if cfg.reward.ensemble_kind == "heads":
            return HeadRewardModels(world.tokenizer, cfg.reward, device, cfg.seed, backbone=backbone)
        return RewardModels(world.tokenizer, cfg.reward, device, cfg.seed, backbone=backbone)
    return CheckpointRewardModels(cfg, device, cfg.seed)


def train_reward_models(rms, groups, cfg, type_names, rng, parallel: Parallel | None = None) -> dict:
    """One round of reward-model training with the trainer that fits `rms` (cfg is the full run config)."""
    if isinstance(rms, CheckpointRewardModels):
        return train_checkpoint_reward_models(
            rms, groups, cfg.reward, type_names, rng, parallel, cfg.compute.rm_micro_batch
        )
    return train_builtin(rms, groups, cfg.reward, type_names, rng)
