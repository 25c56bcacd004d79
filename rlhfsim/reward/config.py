"""Config sections of the learned reward model (rlhfsim.reward): the model, its utility and early stopping, the
per-round recalibration of the score the optimiser sees, and reward-profile surgery.

Light on purpose: loading a config imports no torch. A utility name is checked against the registry in
rlhfsim.reward.utilities when a section is validated.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlhfsim.schema import NamedSpec, Strict, local_path_exists

PROFILES = ("none", "pooled", "optimum", "gold")  # surgery target profiles (rlhfsim.reward.surgery)


class UtilitySpec(NamedSpec, Strict):
    """A utility U applied to reward differences r_better - r_worse (see rlhfsim.reward.utilities)."""

    name: str = Field("logsigmoid", description="Registry name: logsigmoid, linear/x, power, log, neg_power, inv/-1/x.")
    params: dict[str, float] = Field(
        default_factory=dict, description="Utility parameters, e.g. {g: 0.5} or {eps: 0.01}."
    )

    @model_validator(mode="after")
    def _exists(self) -> UtilitySpec:
        from rlhfsim.reward.utilities import get_utility  # numpy, scipy: a config loads without them

        get_utility(self.name, **self.params)  # fails at load time with the list of valid names
        return self

    def build(self):
        from rlhfsim.reward.utilities import get_utility  # numpy, scipy: a config loads without them

        return get_utility(self.name, **self.params)


class EarlyStopConfig(Strict):
    """Reward-model early stopping each round (rlhfsim.reward.early_stop); `reward.epochs` is the maximum."""

    mode: Literal["none", "patience", "collapse"] = Field(
        "none",
        description="none: always reward.epochs epochs; patience: held-out loss/accuracy stops improving; "
        "collapse: held-out shape dependence (1 - collapse/shape, no gold) below min_shape_dep or saturation above max_saturation.",
    )
    holdout: float = Field(
        0.15, ge=0, lt=1, description="Share of buffer groups held out (a fixed hash per group: never trained on)."
    )
    monitor: Literal["loss", "accuracy"] = Field("loss", description="patience: the held-out curve watched.")
    patience: int = Field(
        1, ge=1, description="patience: epochs without improvement before stopping; the best epoch's weights are kept."
    )
    min_delta: float = Field(0.0, ge=0, description="patience: smallest change that counts as an improvement.")
    min_epochs: int = Field(1, ge=1, description="Never stop before this many epochs.")
    min_shape_dep: float | None = Field(
        None,
        ge=0,
        le=1,
        description="collapse: stop when the held-out shape dependence (rlhfsim.diagnostics.collapse.shape_dependence: 0 = every "
        "prompt one standardised profile; gold's is about 0.2 on the quickstart world) falls below this. "
        "Replaces min_collapse_index (the W1 type-profile index, opposite scale) since issue 17.",
    )
    max_saturation: float | None = Field(
        None, ge=0, le=1, description="collapse: stop when the held-out saturation rises above this."
    )


class OfflineConfig(Strict):
    """An offline preference set annotated before round 1 (rlhfsim.reward.offline): the SFT policy's completions of
    fresh training prompts plus the world's reference answer, ranked by the run's annotator, as real pipelines
    start from a large human-labelled set before any on-policy data. The reward model pre-trains on it (cached
    like the SFT checkpoint), then each round mixes a share of it into the on-policy training groups."""

    comparisons: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Labelled pairs to collect (whole prompt groups, "
        "until at least this many); 0 = no offline set (the reward model starts from its init). "
        "Ignored unless loop.reward_source is learned (no reward model is trained otherwise).",
    )
    completions_per_prompt: int = Field(4, ge=1, le=64, description="SFT samples per offline prompt.")
    reference: bool = Field(
        True,
        description="Add the world's reference answer to every offline group (a human-written "
        "answer in the set, as real preference sets have).",
    )
    epochs: int = Field(
        6,
        ge=1,
        le=1000,
        description="Pre-training passes over the offline set (reward.early_stop "
        "applies, with min_epochs capped at this).",
    )
    lr: float | None = Field(None, gt=0, le=1, description="Pre-training learning rate; null = reward.lr.")
    mix: float | Literal["all"] = Field(
        1.0,
        description="Each round, offline groups drawn (without replacement, seeded by round) into the training "
        "groups, as a multiple of the on-policy training groups' number; 0 = pre-training only; all = the whole set "
        "every round (costly: reward training then scales with the offline set).",
    )

    @field_validator("mix")
    @classmethod
    def _mix(cls, v):
        if v != "all" and not 0 <= v <= 1000:
            raise ValueError(f"offline.mix must be 'all' or a number in [0, 1000], got {v}")
        return v


class RewardConfig(Strict):
    """The learned reward model, retrained every round on the preference buffer: a GPT-2 style sequence classifier on
    the world's tokenizer, or any transformers checkpoint (`checkpoint`, e.g. DeBERTa-v3) with its own tokenizer."""

    checkpoint: str | None = Field(
        None,
        description="A transformers model (hub name or local folder) fine-tuned as the reward model with a fresh "
        "1-logit head; it reads the text of prompt and completion with its own tokenizer. null = the built-in GPT-2.",
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer (hub name or folder) when it is not stored with `checkpoint`."
    )
    max_length: int = Field(
        512,
        ge=8,
        le=32768,
        description="Checkpoint reward models: tokens per (prompt, completion); the longer is cut first.",
    )

    _paths = field_validator("checkpoint", "tokenizer")(local_path_exists)
    n_layer: int = Field(2, ge=1, le=48, description="Transformer blocks of the GPT-2 style sequence classifier.")
    n_embd: int = Field(64, ge=8, le=8192, description="Hidden width; divisible by n_head.")
    n_head: int = Field(4, ge=1, le=128, description="Attention heads.")
    utility: UtilitySpec = Field(
        default_factory=UtilitySpec, description="Utility for every prompt type (Bradley-Terry = logsigmoid)."
    )
    prompt_aware: dict[str, UtilitySpec] | None = Field(
        None,
        description="Per prompt type utility, e.g. {open: inv, closed: linear}; overrides `utility` for listed types.",
    )
    bounded: bool | None = Field(
        None,
        description="Rewards are sigmoid(logit) in [0,1] (paper) if true, raw logits if false; null = bounded iff a utility needs it.",
    )
    type_weighting: Literal["range", "raw"] = Field(
        "range",
        description="How prompt-aware utilities are balanced: range = each type's utility divided by its range "
        "U(1) - U(0) on [0, 1], times the geometric mean of the ranges (same average pull per type; identity for one shared "
        "utility); raw = the paper's plain average of raw utilities over all labelled pairs (rlhfsim.reward.trainer.type_weights).",
    )
    epochs: int = Field(2, ge=1, le=10000, description="Passes over the preference buffer per round.")
    lr: float = Field(1e-3, gt=0, le=1, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Gradient-norm clipping per member and optimiser step (null: none)."
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="Learning-rate decay over each round's optimiser steps (transformers' schedulers): constant, "
        "or linear / cosine decay to 0 (the reward-collapse paper's recipe is cosine with warmup 0.1).",
    )
    warmup: float = Field(
        0.0, ge=0, lt=1, description="Share of each round's optimiser steps with a linear warmup from lr 0 to `lr`."
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout (residual, embedding, attention) while training the reward model."
    )
    center_coef: float = Field(
        0.0,
        ge=0,
        description="Reward centring: adds center_coef * mean(logit^2) to the loss (TRL's center_rewards_coefficient).",
    )
    center_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="center_coef over each round's optimiser steps: constant, or decaying to 0 (linear / cosine). "
        "Bounded rewards: strong centring early keeps sigmoid(logit) responsive while the model learns the order, "
        "the decay then lets rewards reach 0 and 1 (needed for optima on the bounds, e.g. utility x).",
    )
    margin: float = Field(
        0.0, ge=0, description="Each labelled pair must win by this much on the reward scale: U(r_a - r_b - margin)."
    )
    batch_groups: int = Field(32, ge=1, description="Prompt groups (each with all its completions) per optimiser step.")
    init: Literal["warm", "fresh"] = Field(
        "warm", description="warm: continue from last round's weights; fresh: re-initialise each round."
    )
    ensemble_size: int = Field(1, ge=1, le=64, description="Reward-model members per round (differ by init seed).")
    ensemble_kind: Literal["members", "heads"] = Field(
        "members",
        description="members: ensemble_size full GPT-2 reward models; heads: ONE GPT-2 trunk with ensemble_size "
        "score heads on one forward (Osband et al. 2016), the trunk trained on the mean of the heads' losses: about "
        "one model's cost, less diverse members. Built-in reward models only.",
    )
    aggregation: Literal["mean", "wco", "uwo", "median"] = Field(
        "mean",
        description="How member rewards combine into the score PPO sees; wco/uwo/median need ensemble_size >= 2.",
    )
    uwo_lambda: float = Field(
        0.1,
        ge=0,
        description="UWO: mean - lambda * population variance (ddof 0) over members "
        "(standardised members when standardise_members: lambda in standardised units).",
    )
    standardise_members: bool = Field(
        True,
        description="wco/uwo: standardise each member (its mean and std on the fixed probe set, recomputed after each "
        "training round) before the min / variance, so arbitrary member offsets and scales do not decide them "
        "(rlhfsim.reward.ensemble.aggregate); false = raw members as in Coste et al.",
    )
    ensemble_data: Literal["own_order", "same_order", "bootstrap"] = Field(
        "own_order",
        description="What else makes members differ: own_order (own shuffle per epoch), same_order (init seed only), "
        "bootstrap (own bootstrap resample of the buffer each round, own order). heads: same_order (the default there) "
        "or bootstrap (per-head multinomial group weights on one shared order); own_order is refused.",
    )
    stacked: bool = Field(
        True,
        description="Train and score members in one vmapped forward (torch.func); falls back to a loop where stacking fails.",
    )
    early_stop: EarlyStopConfig = Field(default_factory=EarlyStopConfig)
    backbone: Literal["random", "policy"] = Field(
        "random",
        description="Built-in reward models' initial trunk: random, or policy = the SFT policy's embeddings and "
        "first reward.n_layer blocks (InstructGPT's recipe); then reward.n_embd and n_head must equal the policy's "
        "and n_layer be at most its depth. Also the init that reward.init: fresh re-draws (only the heads are new).",
    )
    offline: OfflineConfig = Field(default_factory=OfflineConfig, description="Offline preference set before round 1.")
    across_rounds: Literal["last", "mean", "min", "weight_average"] = Field(
        "last",
        description="The reward the optimiser sees over every round's reward model so far (rlhfsim.reward.rounds; "
        "Wolf et al. 2025): last (this round's model), mean (mean of the rounds' rewards), min (worst case over "
        "rounds; each round's rewards standardised on the SFT probe set when standardise_members), weight_average "
        "(one model with the mean of the rounds' parameters; meaningful when rounds share an init: init warm, or "
        "backbone policy). Needs ensemble_size 1 and loop.reward_source learned.",
    )

    @model_validator(mode="after")
    def _heads_and_bounds(self) -> RewardConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        specs = [self.utility, *(self.prompt_aware or {}).values()]
        needs = [s.name for s in specs if s.build().needs_bounded]
        if self.bounded is False and needs:
            raise ValueError(f"utility {needs[0]!r} needs bounded rewards in [0,1]; set reward.bounded: true (or null)")
        if self.ensemble_size == 1 and self.aggregation != "mean":
            # with one member wco/uwo/median ARE the member: refuse rather than let a study compare a no-op
            raise ValueError(
                f"aggregation {self.aggregation!r} with ensemble_size 1 is the single member itself; "
                "set reward.ensemble_size >= 2 or reward.aggregation: mean"
            )
        es = self.early_stop
        if es.mode == "collapse" and es.min_shape_dep is None and es.max_saturation is None:
            raise ValueError("early_stop.mode collapse needs early_stop.min_shape_dep and/or early_stop.max_saturation")
        if es.mode != "none" and es.holdout == 0:
            raise ValueError(
                f"early_stop.mode {es.mode} needs a held-out slice: set early_stop.holdout > 0 (e.g. 0.15)"
            )
        if es.min_epochs > self.epochs:
            raise ValueError(
                f"early_stop.min_epochs ({es.min_epochs}) exceeds reward.epochs ({self.epochs}), the maximum"
            )
        if self.ensemble_kind == "heads":
            self._heads_data()
        if self.across_rounds != "last" and self.ensemble_size != 1:
            raise ValueError(
                f"reward.across_rounds {self.across_rounds!r} combines the rounds' reward models as an "
                "ensemble; set reward.ensemble_size: 1 (or across_rounds: last)"
            )
        if self.checkpoint is not None and self.backbone != "random":
            raise ValueError(
                "reward.backbone: policy is for the built-in GPT-2 reward model (a checkpoint brings its own "
                "pretrained trunk); set reward.backbone: random with reward.checkpoint"
            )
        if self.checkpoint is not None and (es.mode != "none" or self.ensemble_data == "bootstrap"):
            # the checkpoint trainer (rlhfsim.reward.hf_trainer) has neither yet: refuse rather than ignore
            raise ValueError(
                "reward.checkpoint: early_stop.mode and ensemble_data: bootstrap are built-in reward models only; "
                "set early_stop.mode: none and ensemble_data: own_order"
            )
        return self

    def _heads_data(self) -> None:
        """Heads share one forward, so they see one data order: own_order is refused when asked for, and the
        default (own_order, meant for members) becomes same_order; checkpoint reward models have no heads."""
        if self.checkpoint is not None:
            raise ValueError(
                "reward.ensemble_kind heads is for the built-in GPT-2 reward model only; "
                "set reward.ensemble_kind: members with reward.checkpoint"
            )
        if self.ensemble_data == "own_order":
            if "ensemble_data" in self.model_fields_set:
                raise ValueError(
                    "reward.ensemble_kind heads: all heads share one forward, hence one data order, so "
                    "ensemble_data own_order cannot apply; set reward.ensemble_data: same_order or bootstrap"
                )
            # bypass validate_assignment (it would re-run this validator); resolved configs then say same_order
            self.__dict__["ensemble_data"] = "same_order"

    @property
    def is_bounded(self) -> bool:
        if self.bounded is not None:
            return self.bounded
        specs = [self.utility, *(self.prompt_aware or {}).values()]
        return any(s.build().needs_bounded for s in specs)


class RecalibrationConfig(BaseModel):
    """Per-round recalibration of the proxy PPO sees (rlhfsim.reward.recalibrate); logged as recal/*."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Literal["none", "reference", "gold"] = Field(
        "none",
        description="none; reference: standardise against the SFT reference policy's samples; gold: fit to gold on an audited sample.",
    )
    per_type: bool = Field(True, description="Fit one map per prompt type (else one map for all prompts).")
    prompts: int = Field(
        64, ge=2, description="Fresh training-distribution prompts (one sample each) the map is fitted on."
    )
    min_slope: float = Field(
        0.0, description="method gold: the fitted slope is floored here (0: never reverse the proxy)."
    )


class SurgeryConfig(BaseModel):
    """Reward-profile surgery on the score the optimiser sees (rlhfsim.reward.surgery): keep each prompt's ranking
    from the ranking source (loop.reward_source: the learned reward model, noisy_gold or gold), move its values toward
    one profile. Default: off (the source's own values)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    profile: Literal["none", "pooled", "optimum", "gold"] = Field(
        "none",
        description="Target profile: none (off); pooled: the batch's mean sorted profile, one for every prompt "
        "(collapse); optimum: the finite-n optimum of reward.utility (collapse as theory predicts it); gold: each "
        "prompt's own gold values sorted onto the source's ranking (the uncollapsed ideal).",
    )
    dial: float = Field(
        1.0, ge=0, le=1, description="Share of the way from the source's own values (0) to the target profile (1)."
    )
    match_scale: bool = Field(
        True,
        description="Rescale the within-prompt values so the batch's pooled within-prompt std, and hence the batch "
        "std, equal the reward model's own (arms differ in profile shape only, not in reward scale).",
    )
    ties: Literal["keep", "row_order"] = Field(
        "keep",
        description="keep: rows with equal source values in a group (gold ties; duplicate completions under any "
        "source) get equal outputs, and an all-tied group keeps its values; row_order: ties broken by row order and an "
        "all-tied group given the target profile (the behaviour before issue 29; reproduces runs made with it).",
    )
