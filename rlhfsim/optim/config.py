"""Config sections of the phase-7 policy optimisers, one tagged member per optimiser (`optimizer: {name: ...}`).

The fields every optimiser has live in `OptimizerBase`. To add an optimiser, declare its section here (a `name` literal,
`impl` = "module:Class" of the PolicyOptimizer that runs it, its fields) and append it to `OPTIMIZER_CONFIGS`: the config
union and the registry are built from that tuple (docs/architecture.md). PPO's section is here too (its trainer is
rlhfsim/ppo/trainer.py), so the registry never imports a plug-in: `impl` is resolved only when a run builds one.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rlhfsim.schema import Strict


class OptimizerBase(Strict):
    """Fields of every policy optimiser. Rows are laid out prompt-major: prompt i's completions are rows i*g .. i*g+g-1."""

    iterations: int = Field(4, ge=0, le=100000, description="Iterations (rollout + update) per round.")
    batch_size: int = Field(
        64, ge=1, description="Completions (rows) per iteration; batch_size / group_size distinct prompts."
    )
    group_size: int = Field(4, ge=1, le=64, description="Completions per prompt in one iteration (divides batch_size).")
    epochs: int = Field(1, ge=1, le=100, description="Optimisation epochs over each rollout batch.")
    minibatches: int = Field(
        1, ge=1, description="Minibatches per epoch (of rows; of pairs for online_dpo); must divide them."
    )
    lr: float = Field(3e-4, gt=0, le=1, description="AdamW learning rate of the policy.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    pg_cos_every: int = Field(
        2,
        ge=0,
        description="Compute adv/pg_cos (cosine of proxy and gold policy-gradient directions: one extra forward and "
        "two backward passes of the policy on the batch, about half a PPO update's cost) every this many iterations, "
        "counted over the run (iterations 0, N, 2N, ...); 0 = never.",
    )

    impl: ClassVar[str] = ""  # "module:Class" of the PolicyOptimizer (imported only when a run builds it)
    _minibatch_rows: ClassVar[bool] = True  # minibatches split rows (online DPO splits its pairs instead)

    @model_validator(mode="after")
    def _layout(self):
        if self.batch_size % self.group_size:
            raise ValueError(f"group_size ({self.group_size}) must divide batch_size ({self.batch_size})")
        if self._minibatch_rows and self.batch_size % self.minibatches:
            raise ValueError(f"minibatches ({self.minibatches}) must divide batch_size ({self.batch_size})")
        return self


class PPOConfig(OptimizerBase):
    """PPO with a KL anchor to the frozen SFT reference (Ziegler et al. 2019; TRL's PPO trainer)."""

    name: Literal["ppo"] = "ppo"
    impl: ClassVar[str] = "rlhfsim.ppo.trainer:PPOTrainer"
    batch_size: int = Field(
        64, ge=1, description="Completions (rows) per PPO iteration; batch_size / group_size distinct prompts."
    )
    group_size: int = Field(
        1, ge=1, le=64, description="Completions per prompt in one iteration (1 = one completion per prompt)."
    )
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
    missing_eos_penalty: float | None = Field(
        None, ge=0, description="Subtracted from the score of completions without EOS."
    )
    target_kl: float | None = Field(
        None, gt=0, description="Stop an iteration's updates once a minibatch's approx-KL exceeds this (null = never)."
    )
    value_init: Literal["policy", "fresh", "reward"] = Field(
        "policy",
        description="Separate value model's backbone starts from the SFT policy, random, or reward.checkpoint "
        "(a causal LM sharing the policy's tokenizer: per-token values need the policy's tokens and no look-ahead).",
    )
    value_model: Literal["separate", "shared"] = Field(
        "separate",
        description="separate: a value model of its own (TRL's last PPO trainer); shared: a scalar head on the policy's "
        "trunk (TRL's older value-head design): no value forward in the rollout and one forward+backward per update instead of two.",
    )


class GroupConfig(OptimizerBase):
    """Critic-free optimisers with a baseline from the group of completions of one prompt (clipped ratio as PPO)."""

    group_size: int = Field(4, ge=2, le=64, description="Completions per prompt (the group the baseline comes from).")
    clip_range: float = Field(0.2, gt=0, le=1, description="Policy ratio clip.")
    kl_coef: float = Field(0.05, ge=0, description="beta: weight of the KL to the SFT reference.")
    kl_mode: Literal["loss", "reward"] = Field(
        "loss",
        description="loss: beta * k3(policy, ref) per token in the loss (GRPO paper, TRL); reward: beta * sequence KL "
        "(kl_estimator, behaviour logprobs) subtracted from the score before the group baseline (RLOO, TRL).",
    )
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k1", description="kl_mode reward: per-token KL estimator summed over the sequence."
    )
    missing_eos_penalty: float | None = Field(
        None, ge=0, description="Subtracted from the score of completions without EOS."
    )


class GRPOConfig(GroupConfig):
    """GRPO (Shao et al. 2024; TRL's GRPOTrainer): A = (r - mean_group) / (std_group + 1e-4); loss averaged per sequence
    over its tokens, then over sequences."""

    name: Literal["grpo"] = "grpo"
    impl: ClassVar[str] = "rlhfsim.optim.group:GroupOptimizer"


class DrGRPOConfig(GroupConfig):
    """Dr. GRPO (Liu et al. 2025; TRL loss_type dr_grpo, scale_rewards none): A = r - mean_group (no std division); the loss
    is summed over tokens and divided by batch rows x policy.response_len (no length normalisation)."""

    name: Literal["dr_grpo"] = "dr_grpo"
    impl: ClassVar[str] = "rlhfsim.optim.group:GroupOptimizer"


class RLOOConfig(GroupConfig):
    """RLOO (Ahmadian et al. 2024; TRL's RLOOTrainer): A_i = r_i - mean of the other k-1 scores of the group; KL as a
    reward penalty by default, as TRL does."""

    name: Literal["rloo"] = "rloo"
    impl: ClassVar[str] = "rlhfsim.optim.group:GroupOptimizer"
    kl_mode: Literal["loss", "reward"] = Field("reward", description=GroupConfig.model_fields["kl_mode"].description)


class OnlineDPOConfig(OptimizerBase):
    """Online DPO (Guo et al. 2024; trl.experimental.online_dpo): per prompt, the reward model's best and worst of the
    policy's k completions form a (chosen, rejected) pair (groups whose scores are all equal give none); sigmoid DPO loss
    against the frozen SFT reference. Only the reward model's within-prompt order reaches the policy."""

    name: Literal["online_dpo"] = "online_dpo"
    impl: ClassVar[str] = "rlhfsim.optim.online_dpo:OnlineDPO"
    _minibatch_rows: ClassVar[bool] = False
    group_size: int = Field(4, ge=2, le=64, description="Completions per prompt the pair is chosen from.")
    beta: float = Field(0.1, gt=0, description="DPO beta: -logsigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r))).")
    pg_cos_every: int = Field(0, ge=0, description="Unused by online_dpo (its fidelity is pair agreement); kept 0.")


OPTIMIZER_CONFIGS = (PPOConfig, GRPOConfig, DrGRPOConfig, RLOOConfig, OnlineDPOConfig)  # PPO first: the default


def all_configs() -> tuple:
    """Every optimiser's section, PPO first: the members of the `optimizer` union and of the registry."""
    return OPTIMIZER_CONFIGS
