"""PPO's config section (`optimizer: {name: ppo, ...}`), declared beside the trainer it configures."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rlhfsim.optim.config import OptimizerBase


class PPOConfig(OptimizerBase):
    """PPO with a KL anchor to the frozen SFT reference (Ziegler et al. 2019; TRL's PPO trainer)."""

    name: Literal["ppo"] = "ppo"
    impl: ClassVar[str] = "rlhfsim.ppo.trainer:PPOTrainer"
    batch_size: int = Field(64, ge=1, description="Completions (rows) per PPO iteration; batch_size / group_size distinct prompts.")
    group_size: int = Field(1, ge=1, le=64, description="Completions per prompt in one iteration (1 = one completion per prompt).")
    epochs: int = Field(2, ge=1, le=100, description="Optimisation epochs over each rollout batch.")
    minibatches: int = Field(2, ge=1, description="Minibatches per epoch; must divide batch_size.")
    lr: float = Field(3e-4, gt=0, le=1, description="AdamW learning rate for policy and value model.")
    clip_range: float = Field(0.2, gt=0, le=1, description="Policy ratio clip.")
    clip_range_value: float = Field(0.2, gt=0, description="Value prediction clip around the old value.")
    vf_coef: float = Field(0.1, ge=0, description="Value loss coefficient.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    whiten_advantages: bool = Field(True, description="Whiten advantages over the batch (masked).")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="Per-token KL estimator in the reward.")
    kl_controller: Literal["fixed", "adaptive"] = Field("fixed", description="fixed beta, or the adaptive controller.")
    kl_coef: float = Field(0.05, ge=0, description="beta (initial beta for the adaptive controller).")
    kl_target: float = Field(1.0, gt=0, description="Adaptive controller: target sequence KL (nats).")
    kl_horizon: int = Field(10000, ge=1, description="Adaptive controller: horizon in samples.")
    missing_eos_penalty: float | None = Field(None, ge=0, description="Subtracted from the score of completions without EOS.")
    target_kl: float | None = Field(None, gt=0, description="Stop an iteration's updates once a minibatch's approx-KL exceeds this (null = never).")
    value_init: Literal["policy", "fresh", "reward"] = Field(
        "policy", description="Separate value model's backbone starts from the SFT policy, random, or reward.checkpoint "
        "(a causal LM sharing the policy's tokenizer: per-token values need the policy's tokens and no look-ahead)."
    )
    value_model: Literal["separate", "shared"] = Field(
        "separate", description="separate: a value model of its own (TRL's last PPO trainer); shared: a scalar head on the policy's "
        "trunk (TRL's older value-head design): no value forward in the rollout and one forward+backward per update instead of two.")
