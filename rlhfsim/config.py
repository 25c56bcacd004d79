"""Typed, documented run configuration.

Every field is declared once here with its type, default, range and a description; `docs/config.md`
is generated from these declarations (`rlhfsim validate --schema`). Unknown keys are errors, so a
typo can never silently fall back to a default.

    cfg = load_config("configs/quickstart.yaml", overrides=["optimizer.kl_coef=0.1"])
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from rlhfsim.diagnostics.audit import AuditConfig
from rlhfsim.guards import GuardsConfig
from rlhfsim.optim.config import all_configs
from rlhfsim.ppo.config import PPOConfig
from rlhfsim.reward.recalibrate import RecalibrationConfig
from rlhfsim.reward.surgery import SurgeryConfig
from rlhfsim.world.graded import GradedWorldConfig
from rlhfsim.world.perturb import NEEDS_SYNTHETIC, PERTURBATIONS
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig
from rlhfsim.world.text_config import TextWorldConfig, local_path_exists


from rlhfsim.schema import ConfigError, Strict  # noqa: F401  (re-exported: rlhfsim.config.ConfigError is the public name)

OptimizerConfig = Union[all_configs()]  # noqa: UP007  (built from rlhfsim.optim.config.OPTIMIZER_CONFIGS)


class UtilitySpec(Strict):
    """A utility U applied to reward differences r_better - r_worse (see rlhfsim.reward.utilities)."""

    name: str = Field("logsigmoid", description="Registry name: logsigmoid, linear/x, power, log, neg_power, inv/-1/x.")
    params: dict[str, float] = Field(default_factory=dict, description="Utility parameters, e.g. {g: 0.5} or {eps: 0.01}.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _exists(self) -> "UtilitySpec":
        from rlhfsim.reward.utilities import get_utility

        get_utility(self.name, **self.params)  # fails at load time with the list of valid names
        return self

    def build(self):
        from rlhfsim.reward.utilities import get_utility

        return get_utility(self.name, **self.params)


class LoraSpec(Strict):
    """LoRA adapters on a checkpoint policy (needs the `peft` extra: pip install rlhfsim[peft])."""

    r: int = Field(16, ge=1, le=1024, description="Adapter rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Adapter dropout (keep 0: PPO's ratio needs a deterministic policy).")
    target_modules: list[str] | str = Field("all-linear", description="Module names to adapt, or 'all-linear'.")


class PolicyConfig(Strict):
    """The policy: a GPT-2 style causal LM built from n_layer/n_embd/n_head and warm-started by SFT on the world's
    noisy demonstrations, or any transformers causal LM checkpoint (`checkpoint`)."""

    checkpoint: str | None = Field(
        None, description="A transformers causal LM: hub name or local folder (needs world.name: text); null = the built-in GPT-2."
    )
    tokenizer: str | None = Field(None, description="Tokenizer (hub name or folder) when it is not stored with `checkpoint`.")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of every weight of a checkpoint policy (null = full fine-tune).")

    _paths = field_validator("checkpoint", "tokenizer")(local_path_exists)
    n_layer: int = Field(2, ge=1, le=48, description="Transformer blocks.")
    n_embd: int = Field(128, ge=8, le=8192, description="Hidden width; must be divisible by n_head.")
    n_head: int = Field(4, ge=1, le=128, description="Attention heads.")
    response_len: int = Field(10, ge=1, le=512, description="Maximum generated tokens per completion (EOS included).")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature for rollouts, annotation and evaluation.")
    sft_demos: int = Field(10000, ge=0, description="Number of noisy demonstrations for the SFT warm start (0 = no SFT).")
    sft_epochs: int = Field(6, ge=0, le=1000, description="SFT epochs over the demonstrations.")
    sft_lr: float = Field(3e-3, gt=0, le=1, description="SFT AdamW learning rate (cosine decay).")
    sft_batch_size: int = Field(128, ge=1, description="SFT batch size.")
    cache_dir: str = Field(".cache/rlhfsim", description="Where SFT checkpoints are cached, keyed by a hash of what they depend on.")

    @model_validator(mode="after")
    def _heads(self) -> "PolicyConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class EarlyStopConfig(Strict):
    """Reward-model early stopping each round (rlhfsim.reward.early_stop); `reward.epochs` is the maximum."""

    mode: Literal["none", "patience", "collapse"] = Field(
        "none", description="none: always reward.epochs epochs; patience: held-out loss/accuracy stops improving; "
        "collapse: held-out shape dependence (1 - collapse/shape, no gold) below min_shape_dep or saturation above max_saturation.")
    holdout: float = Field(0.15, ge=0, lt=1, description="Share of buffer groups held out (a fixed hash per group: never trained on).")
    monitor: Literal["loss", "accuracy"] = Field("loss", description="patience: the held-out curve watched.")
    patience: int = Field(1, ge=1, description="patience: epochs without improvement before stopping; the best epoch's weights are kept.")
    min_delta: float = Field(0.0, ge=0, description="patience: smallest change that counts as an improvement.")
    min_epochs: int = Field(1, ge=1, description="Never stop before this many epochs.")
    min_shape_dep: float | None = Field(None, ge=0, le=1, description="collapse: stop when the held-out shape dependence (rlhfsim.diagnostics.collapse.shape_dependence: 0 = every "
                                         "prompt one standardised profile; gold's is about 0.2 on the quickstart world) falls below this. "
                                         "Replaces min_collapse_index (the W1 type-profile index, opposite scale) since issue 17.")
    max_saturation: float | None = Field(None, ge=0, le=1, description="collapse: stop when the held-out saturation rises above this.")


class RewardConfig(Strict):
    """The learned reward model, retrained every round on the preference buffer: a GPT-2 style sequence classifier on
    the world's tokenizer, or any transformers checkpoint (`checkpoint`, e.g. DeBERTa-v3) with its own tokenizer."""

    checkpoint: str | None = Field(
        None, description="A transformers model (hub name or local folder) fine-tuned as the reward model with a fresh "
        "1-logit head; it reads the text of prompt and completion with its own tokenizer. null = the built-in GPT-2."
    )
    tokenizer: str | None = Field(None, description="Tokenizer (hub name or folder) when it is not stored with `checkpoint`.")
    max_length: int = Field(512, ge=8, le=32768, description="Checkpoint reward models: tokens per (prompt, completion); the longer is cut first.")

    _paths = field_validator("checkpoint", "tokenizer")(local_path_exists)
    n_layer: int = Field(2, ge=1, le=48, description="Transformer blocks of the GPT-2 style sequence classifier.")
    n_embd: int = Field(64, ge=8, le=8192, description="Hidden width; divisible by n_head.")
    n_head: int = Field(4, ge=1, le=128, description="Attention heads.")
    utility: UtilitySpec = Field(default_factory=UtilitySpec, description="Utility for every prompt type (Bradley-Terry = logsigmoid).")
    prompt_aware: dict[str, UtilitySpec] | None = Field(
        None, description="Per prompt type utility, e.g. {open: inv, closed: linear}; overrides `utility` for listed types."
    )
    bounded: bool | None = Field(
        None, description="Rewards are sigmoid(logit) in [0,1] (paper) if true, raw logits if false; null = bounded iff a utility needs it."
    )
    type_weighting: Literal["range", "raw"] = Field(
        "range", description="How prompt-aware utilities are balanced: range = each type's utility divided by its range "
        "U(1) - U(0) on [0, 1], times the geometric mean of the ranges (same average pull per type; identity for one shared "
        "utility); raw = the paper's plain average of raw utilities over all labelled pairs (rlhfsim.reward.trainer.type_weights).")
    epochs: int = Field(2, ge=1, le=10000, description="Passes over the preference buffer per round.")
    lr: float = Field(1e-3, gt=0, le=1, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient-norm clipping per member and optimiser step (null: none).")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning-rate decay over each round's optimiser steps (transformers' schedulers): constant, "
        "or linear / cosine decay to 0 (the reward-collapse paper's recipe is cosine with warmup 0.1).")
    warmup: float = Field(0.0, ge=0, lt=1, description="Share of each round's optimiser steps with a linear warmup from lr 0 to `lr`.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout (residual, embedding, attention) while training the reward model.")
    center_coef: float = Field(
        0.0, ge=0, description="Reward centring: adds center_coef * mean(logit^2) to the loss (TRL's center_rewards_coefficient)."
    )
    center_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="center_coef over each round's optimiser steps: constant, or decaying to 0 (linear / cosine). "
        "Bounded rewards: strong centring early keeps sigmoid(logit) responsive while the model learns the order, "
        "the decay then lets rewards reach 0 and 1 (needed for optima on the bounds, e.g. utility x).")
    margin: float = Field(0.0, ge=0, description="Each labelled pair must win by this much on the reward scale: U(r_a - r_b - margin).")
    batch_groups: int = Field(32, ge=1, description="Prompt groups (each with all its completions) per optimiser step.")
    init: Literal["warm", "fresh"] = Field("warm", description="warm: continue from last round's weights; fresh: re-initialise each round.")
    ensemble_size: int = Field(1, ge=1, le=64, description="Reward-model members per round (differ by init seed).")
    ensemble_kind: Literal["members", "heads"] = Field(
        "members", description="members: ensemble_size full GPT-2 reward models; heads: ONE GPT-2 trunk with ensemble_size "
        "score heads on one forward (Osband et al. 2016), the trunk trained on the mean of the heads' losses: about "
        "one model's cost, less diverse members. Built-in reward models only.")
    aggregation: Literal["mean", "wco", "uwo", "median"] = Field(
        "mean", description="How member rewards combine into the score PPO sees; wco/uwo/median need ensemble_size >= 2.")
    uwo_lambda: float = Field(0.1, ge=0, description="UWO: mean - lambda * population variance (ddof 0) over members "
                              "(standardised members when standardise_members: lambda in standardised units).")
    standardise_members: bool = Field(
        True, description="wco/uwo: standardise each member (its mean and std on the fixed probe set, recomputed after each "
        "training round) before the min / variance, so arbitrary member offsets and scales do not decide them "
        "(rlhfsim.reward.ensemble.aggregate); false = raw members as in Coste et al.")
    ensemble_data: Literal["own_order", "same_order", "bootstrap"] = Field(
        "own_order", description="What else makes members differ: own_order (own shuffle per epoch), same_order (init seed only), "
        "bootstrap (own bootstrap resample of the buffer each round, own order). heads: same_order (the default there) "
        "or bootstrap (per-head multinomial group weights on one shared order); own_order is refused.")
    stacked: bool = Field(True, description="Train and score members in one vmapped forward (torch.func); falls back to a loop where stacking fails.")
    early_stop: EarlyStopConfig = Field(default_factory=EarlyStopConfig)

    @model_validator(mode="after")
    def _heads_and_bounds(self) -> "RewardConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        specs = [self.utility, *(self.prompt_aware or {}).values()]
        needs = [s.name for s in specs if s.build().needs_bounded]
        if self.bounded is False and needs:
            raise ValueError(f"utility {needs[0]!r} needs bounded rewards in [0,1]; set reward.bounded: true (or null)")
        if self.ensemble_size == 1 and self.aggregation != "mean":
            # with one member wco/uwo/median ARE the member: refuse rather than let a study compare a no-op
            raise ValueError(f"aggregation {self.aggregation!r} with ensemble_size 1 is the single member itself; "
                             "set reward.ensemble_size >= 2 or reward.aggregation: mean")
        es = self.early_stop
        if es.mode == "collapse" and es.min_shape_dep is None and es.max_saturation is None:
            raise ValueError("early_stop.mode collapse needs early_stop.min_shape_dep and/or early_stop.max_saturation")
        if es.mode != "none" and es.holdout == 0:
            raise ValueError(f"early_stop.mode {es.mode} needs a held-out slice: set early_stop.holdout > 0 (e.g. 0.15)")
        if es.min_epochs > self.epochs:
            raise ValueError(f"early_stop.min_epochs ({es.min_epochs}) exceeds reward.epochs ({self.epochs}), the maximum")
        if self.ensemble_kind == "heads":
            self._heads_data()
        if self.checkpoint is not None and (es.mode != "none" or self.ensemble_data == "bootstrap"):
            # the checkpoint trainer (rlhfsim.reward.hf_trainer) has neither yet: refuse rather than ignore
            raise ValueError("reward.checkpoint: early_stop.mode and ensemble_data: bootstrap are built-in reward models only; "
                             "set early_stop.mode: none and ensemble_data: own_order")
        return self

    def _heads_data(self) -> None:
        """Heads share one forward, so they see one data order: own_order is refused when asked for, and the
        default (own_order, meant for members) becomes same_order; checkpoint reward models have no heads."""
        if self.checkpoint is not None:
            raise ValueError("reward.ensemble_kind heads is for the built-in GPT-2 reward model only; "
                             "set reward.ensemble_kind: members with reward.checkpoint")
        if self.ensemble_data == "own_order":
            if "ensemble_data" in self.model_fields_set:
                raise ValueError("reward.ensemble_kind heads: all heads share one forward, hence one data order, so "
                                 "ensemble_data own_order cannot apply; set reward.ensemble_data: same_order or bootstrap")
            # bypass validate_assignment (it would re-run this validator); resolved configs then say same_order
            self.__dict__["ensemble_data"] = "same_order"

    @property
    def is_bounded(self) -> bool:
        if self.bounded is not None:
            return self.bounded
        specs = [self.utility, *(self.prompt_aware or {}).values()]
        return any(s.build().needs_bounded for s in specs)


class AnnotatorConfig(Strict):
    """The simulated annotator: rankings from gold plus noise (rlhfsim.world.annotator)."""

    name: Literal["plackett_luce", "bradley_terry"] = Field("plackett_luce", description="Noise model.")
    temperature: float = Field(0.05, ge=0, le=100, description="Noise temperature on gold (0 = exact gold order).")
    flip_rate: float = Field(0.0, ge=0, le=0.5, description="Probability of flipping each labelled pair.")
    ties: Literal["keep", "break", "consistent"] = Field(
        "keep", description="keep: equal gold gives no pair; break: random direction; consistent: the direction of a fixed "
        "per-(prompt, completion) key salted by the seed, so a repeated prompt with the same completions gets the same order.")


class LoopConfig(Strict):
    """The round loop (rlhfsim.loop)."""

    rounds: int = Field(8, ge=1, le=100000, description="Number of rounds.")
    prompts_per_round: int = Field(64, ge=1, description="Prompts annotated per round.")
    completions_per_prompt: int = Field(4, ge=2, le=64, description="k completions ranked per prompt.")
    distinct_oversample: int = Field(
        1, ge=1, le=64, description="Sample this many times k completions per prompt and keep the first k distinct texts "
        "(duplicates only where too few are distinct; 1 = keep the k samples as drawn). With annotator temperature 0 and "
        "ties: break (or consistent) this gives every group a total order (the collapse study)."
    )
    annotator: AnnotatorConfig = Field(default_factory=AnnotatorConfig)
    buffer: Literal["fresh", "accumulate", "window"] = Field("accumulate", description="Which rounds' data train the reward model.")
    window: int = Field(3, ge=1, description="Rounds kept when buffer = window.")
    reference_mix: float = Field(
        0.0, ge=0, le=1, description="Share of annotated groups that also get the world's reference (gold) completion."
    )
    reward_source: Literal["learned", "gold"] = Field("learned", description="PPO optimises the learned proxy or the gold reward.")
    freeze_reward_after: int | None = Field(None, ge=1, description="Stop retraining the reward model after this round.")
    train_policy: bool = Field(True, description="False runs reward-model training alone (no PPO), as in the collapse study.")
    diagnose_train: bool = Field(
        False, description="Also score the reward model on its training groups each round: collapse_train/* metrics and "
        "rewards/train_round_XXX.parquet (the terminal-phase profiles of the collapse study)."
    )
    eval_prompts: int = Field(128, ge=4, description="Fixed held-out prompts for per-round evaluation.")
    bon_n: int = Field(0, ge=0, le=1024, description="Best-of-n curve each round from this many samples per prompt (0 = off).")
    bon_prompts: int = Field(32, ge=1, description="Held-out prompts used for the best-of-n curve.")
    eval_completions: int = Field(4, ge=2, le=64, description="Completions per held-out prompt (reward distributions, pairwise accuracy).")
    diagnose_on_eval: bool = Field(
        False, description="Phase 6 diagnoses the new reward model on the previous round's phase-8 held-out samples instead of a "
        "fresh draw: the same policy made them (nothing changes it in between) and the reward model never trained on them, so "
        "they are held out; it halves the evaluation's sampling. A resumed run regenerates them from the eval stream (identical).")
    stop_on_stagnation: bool = Field(
        False, description="End the run once gold stops rising (the slope's interval over stagnation_window rounds covers 0: stagnation) "
        "or falls (interval below 0: over-optimisation) while the policy moves; the interval uses eval/gold_se.")
    stagnation_window: int = Field(3, ge=2, description="Rounds per stagnation window (rlhfsim.diagnostics.stagnation).")
    stagnation_slope: float = Field(0.0, ge=0, description="Smallest gold slope per round that counts: a window rises only when its "
                                    "slope interval lies above +stagnation_slope, falls when below -stagnation_slope, else it is flat.")
    stagnation_level: float = Field(0.95, gt=0, lt=1, description="Two-sided level of the gold-slope interval of a stagnation window.")


class OutputConfig(Strict):
    """Where the run directory goes: <dir>/<experiment>/<variant>/seed<seed>/."""

    dir: str = Field("runs", description="Root of run directories.")
    experiment: str = Field("quickstart", description="Experiment name (a directory level).")
    variant: str = Field("default", description="Variant name (a directory level).")
    n_samples: int = Field(6, ge=0, description="Decoded completions saved per round in samples/round_XXX.jsonl.")
    checkpoints: bool = Field(True, description="Save the latest complete round (for --resume).")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=list, description="Experiment trackers that mirror metrics.jsonl and ppo_steps.jsonl, and take the "
        "run's figure (figures/curves.png) as an image (any subset; "
        "each is an optional extra: pip install -e '.[tensorboard]' etc.). Files: <run>/tensorboard, <run>/wandb (offline "
        "unless logged in), <output.dir>/mlruns (or MLFLOW_TRACKING_URI), <run>/trackio."
    )


class ComputeConfig(Strict):
    """How the run uses the hardware: precision, memory and parallelism. Nothing here changes results on CPU."""

    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on a CUDA device that supports it, fp32 elsewhere (weights stay fp32)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Checkpoint models (policy, value, reward): recompute activations in backward to save memory."
    )
    ppo_micro_batch: int | None = Field(
        None, ge=1, description="Rows per forward/backward in PPO updates, gradients accumulated over the minibatch (null = the whole minibatch)."
    )
    rm_micro_batch: int | None = Field(
        None, ge=1, description="Prompt groups per forward/backward when training a checkpoint reward model (null = reward.batch_groups)."
    )
    score_batch: int = Field(256, ge=1, description="Completions per forward when checkpoint reward or gold models score text.")


class Config(Strict):
    """One run."""

    seed: int = Field(0, ge=0, description="Seed of everything random in the run (the world has its own seed).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")
    world: SyntheticWorldConfig | GradedWorldConfig | TextWorldConfig = Field(
        default_factory=SyntheticWorldConfig, discriminator="name",
        description="The world: name synthetic (default), graded (partial credit, openness levels) or text.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    optimizer: OptimizerConfig = Field(
        default_factory=PPOConfig, discriminator="name",
        description="Phase 7, the policy optimiser: name ppo (default), grpo, dr_grpo, rloo or online_dpo, and its fields.")
    loop: LoopConfig = Field(default_factory=LoopConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    recalibration: RecalibrationConfig = Field(default_factory=RecalibrationConfig)
    surgery: SurgeryConfig = Field(default_factory=SurgeryConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, v: Any) -> Any:
        # a world section without `name` is the synthetic world (as before worlds were a tagged union); an optimizer
        # section without `name` is PPO
        if isinstance(v, dict):
            for key, name in (("world", "synthetic"), ("optimizer", "ppo")):
                if isinstance(v.get(key), dict) and "name" not in v[key]:
                    v = {**v, key: {"name": name, **v[key]}}
            if "ppo" in v:
                raise ValueError("the `ppo:` section is now `optimizer:` with `name: ppo` (same fields), e.g. "
                                 "optimizer: {name: ppo, kl_coef: 0.2}; --set ppo.X=... is --set optimizer.X=...")
        return v

    @model_validator(mode="before")
    @classmethod
    def _text_world_audit_defaults(cls, v: Any) -> Any:
        # the default stress suite and shifted sets read the synthetic world's tables; a text world gets the
        # generic text transforms and no shifted sets unless it names its own, and no suite without reference answers
        if isinstance(v, dict) and isinstance(v.get("world"), dict) and v["world"].get("name") == "text":
            audit = dict(v.get("audit") or {})
            audit.setdefault("families", sorted(set(PERTURBATIONS) - set(NEEDS_SYNTHETIC)))
            audit.setdefault("shifts", [])
            if v["world"].get("reference_column") is None:
                audit.setdefault("enabled", False)
            v = {**v, "audit": audit}
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        text = self.world.name == "text"
        if self.policy.checkpoint is not None and not text:
            raise ValueError("policy.checkpoint needs world.name: text (the synthetic world has its own word tokenizer)")
        if text and self.policy.checkpoint is None:
            raise ValueError("world.name: text needs policy.checkpoint (a causal LM: hub name or local folder)")
        if text and self.reward.checkpoint is None:
            raise ValueError("world.name: text needs reward.checkpoint (a sequence-classification backbone, e.g. a DeBERTa-v3)")
        if self.policy.lora is not None and self.policy.checkpoint is None:
            raise ValueError("policy.lora needs policy.checkpoint")
        opt = self.optimizer
        if opt.name == "ppo" and opt.value_init == "reward" and (self.reward.checkpoint is None or opt.value_model == "shared"):
            raise ValueError("optimizer.value_init: reward needs reward.checkpoint and optimizer.value_model: separate")
        if text and self.world.reference_column is None:
            if self.loop.reference_mix > 0:
                raise ValueError("loop.reference_mix > 0 needs world.reference_column (the human-written answers); set it or reference_mix: 0")
            if self.policy.sft_demos > 0 and self.policy.sft_epochs > 0:
                raise ValueError("SFT demonstrations come from world.reference_column; set it, or policy.sft_demos: 0 to skip SFT")
        if self.surgery.profile != "none" and self.loop.reward_source != "learned":
            raise ValueError("surgery.profile acts on the learned proxy; with loop.reward_source: gold set surgery.profile: none")
        if self.surgery.profile == "optimum" and self.reward.prompt_aware:
            raise ValueError("surgery.profile optimum is one prompt-independent profile of reward.utility; with "
                             "reward.prompt_aware set use surgery.profile: pooled")
        shifts = SyntheticWorld.shifts if not text else []
        for s in self.audit.shifts:
            if s not in shifts:
                raise ValueError(f"audit.shifts: unknown shift {s!r}; this world has {shifts}")
            if s in ("topics", "facts") and getattr(self.world, f"holdout_{s}") == 0:
                raise ValueError(f"audit.shifts: {s!r} needs world.holdout_{s} >= 1 (nothing is held out of training)")
        if text and self.audit.enabled:
            synthetic_only = sorted({f.name for f in self.audit.families} & set(NEEDS_SYNTHETIC))
            if synthetic_only:
                raise ValueError(f"audit.families: {synthetic_only} need the synthetic world; the text world's are "
                                 f"{sorted(set(PERTURBATIONS) - set(NEEDS_SYNTHETIC))}")
            if self.world.reference_column is None:
                raise ValueError("audit.enabled needs world.reference_column (the stress suite perturbs reference answers); set it or audit.enabled: false")
        return self

    @property
    def prompt_types(self) -> list[str]:
        return list(getattr(self.world, "prompt_types", ["open", "closed"]))

    @field_validator("output")
    @classmethod
    def _safe_names(cls, v: OutputConfig) -> OutputConfig:
        for field in ("experiment", "variant"):
            name = getattr(v, field)
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(f"output.{field} must be a plain name without path separators, got {name!r}")
        return v

    def types_check(self, prompt_types: list[str]) -> None:
        """Prompt-aware utilities must name prompt types the world has."""
        for t in self.reward.prompt_aware or {}:
            if t not in prompt_types:
                raise ConfigError(f"reward.prompt_aware: unknown prompt type {t!r}; this world has {prompt_types}")


# ----------------------------------------------------------------------------- loading


def _field_model(model, key: str, tag: str | None):
    """The sub-model a config key leads to; for a tagged union (world, world.gold) the member named by `tag`."""
    if model is None or key not in model.model_fields:
        return None, False
    field = model.model_fields[key]
    ann, tag_key = field.annotation, field.discriminator
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    for member in getattr(ann, "__args__", ()):
        if isinstance(member, type) and issubclass(member, BaseModel) and tag_key in member.model_fields:
            if member.model_fields[tag_key].default == tag:
                return member, True  # the tag is the next loc element: skip it
    return None, False


def _clean_loc(loc) -> tuple[list[str], type | None]:
    """pydantic's loc without union tags (world.text.gold -> world.gold), and the model the last key belongs to."""
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    out, model, i = [], Config, 0
    owner = Config
    while i < len(parts):
        owner = model
        out.append(parts[i])
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        model, skip = _field_model(model, parts[i], nxt)
        i += 2 if skip else 1
    return out, owner


def _format_error(err: ValidationError, raw: dict) -> str:
    lines = []
    for e in err.errors():
        parts, owner = _clean_loc(e["loc"])
        loc = ".".join(parts)
        if e["type"] == "extra_forbidden":
            key = parts[-1]
            valid = sorted(owner.model_fields) if owner is not None else []
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"{loc}: unknown key. {hint}Valid keys here: {', '.join(valid)}")
        elif not loc:  # a cross-field check: its message names the fields; the whole config is no help
            lines.append(f"(top level): {e['msg'].removeprefix('Value error, ')}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg} (got {e.get('input')!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """'optimizer.kl_coef=0.1' -> (['optimizer', 'kl_coef'], 0.1); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. optimizer.kl_coef=0.1")
    key, value = item.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def set_dotted(raw: dict, key: str, value: Any, where: str = "") -> dict:
    """raw['a']['b'] = value for key 'a.b' (as `--set a.b=...` does: the value replaces what was there)."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{where}{key!r}: not a dotted config key (e.g. optimizer.kl_coef)")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}{key!r}: {p!r} is not a section")
    node[parts[-1]] = value
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        set_dotted(raw, ".".join(path), value, "--set ")
    return raw


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a directory; pass the path of a YAML file in it (see configs/)")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass the path of a YAML file (see configs/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if raw is None:  # an empty file (or only comments) is a mistake, not a request for every default
        raise ConfigError(f"{path}: the file is empty; write at least one section (see configs/quickstart.yaml), "
                          "or run without a config file for every default")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (world, policy, ...), got {type(raw).__name__}")
    return raw


def config_from_dict(raw: dict) -> Config:
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, raw)) from None
    cfg.types_check(cfg.prompt_types)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    raw = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, list(overrides or [])))


def dump_config(cfg: Config) -> str:
    """The resolved config, every default filled in, as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def schema_markdown() -> str:
    """docs/config.md: every section and field with type, default and description (rlhfsim/config_docs.py)."""
    from rlhfsim.config_docs import schema_markdown as render

    return render()
