"""Config sections of the run's top-level modules: the round loop (rlhfsim/loop.py), where its files go
(rlhfsim/tracking.py, rlhfsim/trackers.py) and the divergence guards (rlhfsim/guards.py).

Light on purpose: loading a config imports none of them. The annotator's section is rlhfsim/world/config.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rlhfsim.schema import Strict
from rlhfsim.world.config import AnnotatorConfig


class NoisyGoldConfig(Strict):
    """The noisy_gold reward source (rlhfsim.reward.proxy): proxy = gold + sigma * z, z a fixed standard normal per
    (run seed, prompt, completion). Give exactly one of rho (calibrated per world) or sigma (used as is)."""

    rho: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Target within-prompt Spearman rho of the proxy with gold on the SFT policy's round-0 "
        "held-out samples; sigma is bisected at run start to give it (logged as proxy/noisy_gold_sigma). Gold ties cap "
        "what is reachable (docs/architecture.md, 'Reward sources'); a target above the cap uses the smallest sigma searched.",
    )
    sigma: float | None = Field(None, ge=0, description="Noise std in gold units, used as is (0 = gold itself).")
    draws: int = Field(
        8,
        ge=1,
        le=256,
        description="Noise replicates whose mean rho the calibration bisects (draw 0 is the "
        "proxy's own noise; more draws make the rho(sigma) curve smoother).",
    )


class InnerEvalConfig(Strict):
    """Evaluation inside a round's policy optimisation (issue 36): every `every` policy iterations, the policy's
    samples of a held-out subset are scored by gold and the proxy, with their KL from the SFT policy, and written to
    inner_eval.jsonl; each round then draws its own gold-against-KL curve."""

    every: int = Field(
        0,
        ge=0,
        description="Evaluate at a round's start (iteration 0), after "
        "every this many policy iterations and after its last; 0 = off.",
    )
    prompts: int = Field(
        32,
        ge=1,
        description="The first this many of loop.eval_prompts (a smaller held-out subset "
        "keeps inner evaluation cheap; at most loop.eval_prompts).",
    )
    completions: int = Field(
        2,
        ge=1,
        le=64,
        description="Samples per inner-evaluation prompt (one fixed eval stream "
        "per round: every evaluation of a round draws with the same seed, so they are paired).",
    )


class LoopConfig(Strict):
    """The round loop (rlhfsim.loop)."""

    rounds: int = Field(8, ge=1, le=100000, description="Number of rounds.")
    prompts_per_round: int = Field(64, ge=1, description="Prompts annotated per round.")
    completions_per_prompt: int = Field(4, ge=2, le=64, description="k completions ranked per prompt.")
    distinct_oversample: int = Field(
        1,
        ge=1,
        le=64,
        description="Sample this many times k completions per prompt and keep the first k distinct texts "
        "(duplicates only where too few are distinct; 1 = keep the k samples as drawn). With annotator temperature 0 and "
        "ties: break (or consistent) this gives every group a total order (the collapse study).",
    )
    annotator: AnnotatorConfig = Field(default_factory=AnnotatorConfig)
    buffer: Literal["fresh", "accumulate", "window", "equal_share", "prompt_once"] = Field(
        "accumulate",
        description="Which rounds' data train the reward model: fresh (the last round's), accumulate (all "
        "rounds concatenated), window (the last `window` rounds), equal_share (a fixed-size sample of buffer_total "
        "groups, an equal share from every round so far, drawn afresh each round, seeded by seed and round), "
        "prompt_once (equal_share, but no prompt twice in the sample: newer rounds pick first).",
    )
    window: int = Field(3, ge=1, description="Rounds kept when buffer = window.")
    buffer_total: int | None = Field(
        None,
        ge=1,
        description="Groups in the equal_share / prompt_once sample (the "
        "reward model's training set size each round; a round short of its share gives "
        "the rest to the others). Required by those modes, refused by the others.",
    )
    policy_start: Literal["continue", "sft", "interpolate"] = Field(
        "continue",
        description="Where each round's policy optimisation starts (rlhfsim.iterated): continue (the last "
        "policy, optimiser state kept), sft (the SFT policy and initial value model, optimiser state and KL controller "
        "reset), interpolate (LITI: (1 - liti_eta) * the previous start + liti_eta * the last policy, parameter by "
        "parameter, for policy and value model; optimiser state reset).",
    )
    liti_eta: float = Field(
        0.5,
        ge=0,
        le=1,
        description="policy_start interpolate: the weight of the last policy (1 = "
        "continue's weights with a reset optimiser, 0 = SFT every round).",
    )
    kl_anchor: Literal["sft", "round_start"] = Field(
        "sft",
        description="The policy optimiser's KL reference: the SFT policy, or the policy as each round starts "
        "(after policy_start). eval/kl and inner evaluations measure KL from SFT either way.",
    )
    round_kl: float | None = Field(
        None,
        gt=0,
        description="Per-round policy budget by KL: end the round's policy "
        "iterations once a batch's objective/kl (to the KL anchor) reaches this; "
        "optimizer.iterations stays the maximum. null = always optimizer.iterations.",
    )
    inner_eval: InnerEvalConfig = Field(
        default_factory=InnerEvalConfig,
        description="Evaluation every N policy iterations inside a round (inner_eval.jsonl).",
    )
    proxy_gold_gap: bool = Field(
        False,
        description="Per round: eval/proxy_gold_gap (proxy minus gold mean, each in "
        "standard units of the SFT probe set under this round's proxy) and eval/proxy_gold_w1 "
        "(Wasserstein-1 between z-scored proxy and z-scored gold on the held-out samples).",
    )
    reference_mix: float = Field(
        0.0, ge=0, le=1, description="Share of annotated groups that also get the world's reference (gold) completion."
    )
    reward_source: Literal["learned", "noisy_gold", "gold"] = Field(
        "learned",
        description="What the policy optimiser's reward comes from: learned (the reward model(s) trained each "
        "round), noisy_gold (gold plus fixed noise of a set rank correlation, loop.noisy_gold; no reward model is trained) "
        "or gold. Recalibration applies to learned and noisy_gold, surgery to all three.",
    )
    noisy_gold: NoisyGoldConfig = Field(
        default_factory=NoisyGoldConfig, description="The noisy_gold source's noise level."
    )
    freeze_reward_after: int | None = Field(
        None, ge=1, description="Stop retraining the reward model after this round."
    )
    train_policy: bool = Field(
        True, description="False runs reward-model training alone (no PPO), as in the collapse study."
    )
    diagnose_train: bool = Field(
        False,
        description="Also score the reward model on its training groups each round: collapse_train/* metrics and "
        "rewards/train_round_XXX.parquet (the terminal-phase profiles of the collapse study).",
    )
    eval_prompts: int = Field(128, ge=4, description="Fixed held-out prompts for per-round evaluation.")
    bon_n: int = Field(
        0, ge=0, le=1024, description="Best-of-n curve each round from this many samples per prompt (0 = off)."
    )
    bon_prompts: int = Field(32, ge=1, description="Held-out prompts used for the best-of-n curve.")
    eval_completions: int = Field(
        4, ge=2, le=64, description="Completions per held-out prompt (reward distributions, pairwise accuracy)."
    )
    diagnose_on_eval: bool = Field(
        False,
        description="Phase 6 diagnoses the new reward model on the previous round's phase-8 held-out samples instead of a "
        "fresh draw: the same policy made them (nothing changes it in between) and the reward model never trained on them, so "
        "they are held out; it halves the evaluation's sampling. A resumed run regenerates them from the eval stream (identical).",
    )
    stop_on_stagnation: bool = Field(
        False,
        description="End the run once gold stops rising (the slope's interval over stagnation_window rounds covers 0: stagnation) "
        "or falls (interval below 0: over-optimisation) while the policy moves; the interval uses eval/gold_se.",
    )
    stagnation_window: int = Field(
        3, ge=2, description="Rounds per stagnation window (rlhfsim.diagnostics.stagnation)."
    )
    stagnation_slope: float = Field(
        0.0,
        ge=0,
        description="Smallest gold slope per round that counts: a window rises only when its "
        "slope interval lies above +stagnation_slope, falls when below -stagnation_slope, else it is flat.",
    )
    stagnation_level: float = Field(
        0.95, gt=0, lt=1, description="Two-sided level of the gold-slope interval of a stagnation window."
    )


class OutputConfig(Strict):
    """Where the run directory goes: <dir>/<experiment>/<variant>/seed<seed>/."""

    dir: str = Field("runs", description="Root of run directories.")
    experiment: str = Field("quickstart", description="Experiment name (a directory level).")
    variant: str = Field("default", description="Variant name (a directory level).")
    n_samples: int = Field(6, ge=0, description="Decoded completions saved per round in samples/round_XXX.jsonl.")
    checkpoints: bool = Field(True, description="Save the latest complete round (for --resume).")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=list,
        description="Experiment trackers that mirror metrics.jsonl and policy_steps.jsonl, and take the "
        "run's figure (figures/curves.png) as an image (any subset; "
        "each is an optional extra: pip install -e '.[tensorboard]' etc.). Files: <run>/tensorboard, <run>/wandb (offline "
        "unless logged in), <output.dir>/mlruns (or MLFLOW_TRACKING_URI), <run>/trackio.",
    )


class GuardsConfig(Strict):
    """Divergence guards (rlhfsim.guards): non-finite or exploding values end the run (exit code 3) or skip the round."""

    on_divergence: Literal["stop", "skip_round"] = Field(
        "stop",
        description="stop: log a diagnostic row, mark the run diverged and exit with code 3; skip_round: log the row, "
        "undo the round's updates (models, optimiser, KL controller, buffer) and go on with the next round.",
    )
    max_abs_reward: float = Field(
        1e4,
        gt=0,
        description="Reward explosion bound: largest tolerated |reward-model logit| on held-out samples and "
        "|mean PPO score| or |mean proxy| of a batch.",
    )
