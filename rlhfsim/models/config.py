"""Config sections of the models (rlhfsim.models): the policy (built-in GPT-2 or a checkpoint, LoRA, SFT warm start)
and how every model uses the hardware (`compute`). Light on purpose: loading a config imports no torch or transformers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rlhfsim.schema import Strict, local_path_exists, renamed_fields


class LoraSpec(Strict):
    """LoRA adapters on a checkpoint policy (needs the `peft` extra: pip install rlhfsim[peft])."""

    r: int = Field(16, ge=1, le=1024, description="Adapter rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Adapter dropout (keep 0: PPO's ratio needs a deterministic policy)."
    )
    target_modules: list[str] | str = Field("all-linear", description="Module names to adapt, or 'all-linear'.")


class PolicyConfig(Strict):
    """The policy: a GPT-2 style causal LM built from n_layer/n_embd/n_head and warm-started by SFT on the world's
    noisy demonstrations, or any transformers causal LM checkpoint (`checkpoint`)."""

    checkpoint: str | None = Field(
        None,
        description="A transformers causal LM: hub name or local folder (needs world.name: text); null = the built-in GPT-2.",
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer (hub name or folder) when it is not stored with `checkpoint`."
    )
    lora: LoraSpec | None = Field(
        None, description="Train LoRA adapters instead of every weight of a checkpoint policy (null = full fine-tune)."
    )

    _paths = field_validator("checkpoint", "tokenizer")(local_path_exists)
    n_layer: int = Field(2, ge=1, le=48, description="Transformer blocks.")
    n_embd: int = Field(128, ge=8, le=8192, description="Hidden width; must be divisible by n_head.")
    n_head: int = Field(4, ge=1, le=128, description="Attention heads.")
    response_len: int = Field(10, ge=1, le=512, description="Maximum generated tokens per completion (EOS included).")
    temperature: float = Field(
        1.0, gt=0, le=10, description="Sampling temperature for rollouts, annotation and evaluation."
    )
    sft_demos: int = Field(
        10000, ge=0, description="Number of noisy demonstrations for the SFT warm start (0 = no SFT)."
    )
    sft_epochs: int = Field(6, ge=0, le=1000, description="SFT epochs over the demonstrations.")
    sft_lr: float = Field(3e-3, gt=0, le=1, description="SFT AdamW learning rate (cosine decay).")
    sft_batch_size: int = Field(128, ge=1, description="SFT batch size.")
    cache_dir: str = Field(
        ".cache/rlhfsim",
        description="Where SFT checkpoints, offline reward-model pre-training and round 0's held-out draw are cached, each keyed by a hash of what it depends on.",
    )

    @model_validator(mode="after")
    def _heads(self) -> PolicyConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class ComputeConfig(Strict):
    """How the run uses the hardware: precision, memory and parallelism. Nothing here changes results on CPU."""

    RENAMED: ClassVar[dict[str, str]] = {"ppo_micro_batch": "policy_micro_batch"}  # old name -> new (still read)

    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast on a CUDA device that supports it, fp32 elsewhere (weights stay fp32; reward and "
        "value heads compute in fp32; autocast's weight-cast cache is off, so every forward sees the current weights).",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Checkpoint models (policy, value, reward): recompute activations in backward to save memory.",
    )
    policy_micro_batch: int | None = Field(
        None,
        ge=1,
        description="Rows (online_dpo: pairs) per forward/backward in the policy optimiser's updates, any "
        "optimizer.name; gradients accumulated over the minibatch (null = the whole minibatch). Formerly "
        "compute.ppo_micro_batch, which is still read (with a deprecation warning).",
    )
    rm_micro_batch: int | None = Field(
        None,
        ge=1,
        description="Prompt groups per forward/backward when training a checkpoint reward model (null = reward.batch_groups).",
    )
    score_batch: int = Field(
        256, ge=1, description="Completions per forward when checkpoint reward or gold models score text."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw: Any) -> Any:
        return renamed_fields(raw, cls.RENAMED, "compute")
