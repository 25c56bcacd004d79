"""Models and tokenizers from transformers checkpoints (hub name or local folder): policy, value, scorers.

    tok = load_tokenizer("EleutherAI/pythia-70m", "policy.checkpoint")
    policy, stats = checkpoint_warm_start(world, cfg, device)      # + SFT on references, + LoRA
    value = checkpoint_value_model(cfg, policy, device)             # from the policy, the reward model, or fresh

Every load failure is a ConfigError naming the field and the fix. Dropout is switched off in every model
PPO trains: the ratio must compare one deterministic function before and after an update (as TRL does).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from rlhfsim.models.parallel import fp32_head
from rlhfsim.models.policy import cache_sft, numerics_cache_key, train_sft
from rlhfsim.real.assets import AssetMissing, resolve
from rlhfsim.schema import ConfigError

log = logging.getLogger(__name__)


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1] or Path(name).exists()


def _load(fn, name: str, what: str, **kw):
    """fn(name) with a clear error: a missing local folder, an unreachable hub, or a folder without the right files."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run's own progress display owns the terminal
    try:
        name = resolve(name)  # real:<name> -> its converted or installed folder
    except AssetMissing as e:
        raise ConfigError(f"{what}: {e}") from None
    path = Path(name).expanduser()
    if _looks_local(name) and not path.exists():
        raise ConfigError(
            f"{what}: {name!r} does not exist; give a local folder written by save_pretrained or a hub name"
        )
    try:
        return fn(str(path) if path.exists() else name, **kw)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{what}: cannot load {name!r} ({first}); give a folder written by save_pretrained or a hub name "
            "this machine can reach (set HF_HUB_OFFLINE=1 to use only the local cache)"
        ) from None


def load_tokenizer(name: str, what: str):
    """AutoTokenizer with a pad token (EOS when the checkpoint has none) and right padding for scoring."""
    from transformers import AutoTokenizer

    tok = _load(AutoTokenizer.from_pretrained, name, what)
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ConfigError(
                f"{what}: tokenizer of {name!r} has neither a pad nor an EOS token; add one and save it again"
            )
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None and what.startswith("policy"):
        raise ConfigError(f"{what}: the policy tokenizer of {name!r} has no EOS token; completions could never end")
    tok.padding_side = "right"
    return tok


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.0
    return model


def max_positions(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "seq_length"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def load_causal_lm(name: str, what: str):
    from transformers import AutoModelForCausalLM

    return no_dropout(_load(AutoModelForCausalLM.from_pretrained, name, what))


def load_sequence_classifier(name: str, what: str, pad_token_id: int, seed: int):
    """A 1-logit sequence classifier; a new head (or one of another size) is initialised from `seed`."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = _load(
        AutoModelForSequenceClassification.from_pretrained, name, what, num_labels=1, ignore_mismatched_sizes=True
    )
    model.config.pad_token_id = pad_token_id  # the classifier pools at the last non-pad token (decoder models)
    return fp32_head(no_dropout(model))


def policy_tokenizer(policy_cfg):
    """The policy's tokenizer, or None for the built-in GPT-2 (whose tokenizer is the world's)."""
    if policy_cfg.checkpoint is None:
        return None
    return load_tokenizer(
        policy_cfg.tokenizer or policy_cfg.checkpoint,
        "policy.tokenizer" if policy_cfg.tokenizer else "policy.checkpoint",
    )


def apply_lora(model, spec):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError(
            "policy.lora needs the peft package: pip install 'rlhfsim[peft]' (or set policy.lora: null)"
        ) from None
    conf = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, conf)
    except ValueError as e:
        raise ConfigError(f"policy.lora: {str(e).splitlines()[0][:300]}; check policy.lora.target_modules") from None


def enable_checkpointing(model) -> None:
    if hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def sft_key(cfg, device) -> str:
    """Cache key of a checkpoint policy's SFT: world, policy (checkpoint name included) and the numerics it ran under."""
    return numerics_cache_key(
        {
            "world": cfg.world.model_dump(mode="json"),
            "policy": cfg.policy.model_dump(mode="json", exclude={"cache_dir", "temperature"}),
            "v": 1,
        },
        device,
    )


def checkpoint_warm_start(world, cfg, device) -> tuple[torch.nn.Module, dict]:
    """The checkpoint policy, SFT'd on the world's reference answers when policy.sft_demos > 0 (cached), then LoRA."""
    pc = cfg.policy
    model = load_causal_lm(pc.checkpoint, "policy.checkpoint")
    longest = max(world.prompt_lengths(), default=0) + pc.response_len
    cap = max_positions(model.config)
    if cap is not None and longest > cap:
        raise ConfigError(
            f"policy.checkpoint {pc.checkpoint!r} takes {cap} positions but prompts ({longest - pc.response_len} tokens) "
            f"+ policy.response_len ({pc.response_len}) need {longest}; lower world.max_prompt_tokens or response_len"
        )
    model.config.pad_token_id = world.tokenizer.pad_token_id
    stats: dict = {}
    if pc.sft_demos and pc.sft_epochs:
        path = Path(pc.cache_dir) / f"sft-hf-{sft_key(cfg, device)}"
        if (path / "config.json").exists():
            log.info("SFT policy from cache %s", path)
            model = load_causal_lm(str(path), f"SFT cache {path}")
            stats = {**json.loads((path / "sft_stats.json").read_text()), "sft/cached": 1}
        else:
            model.to(device)
            demos = world.demonstrations(pc.sft_demos, np.random.default_rng(0))
            stats = train_sft(model, world.tokenizer, demos, pc, device, 0)
            cache_sft(model, stats, path)
            stats = {**stats, "sft/cached": 0}
    if pc.lora is not None:
        model = apply_lora(model, pc.lora)
    if cfg.compute.gradient_checkpointing:
        enable_checkpointing(model)
    return model.to(device).eval(), stats


def _base(model):
    """The transformer body of a causal LM or sequence classifier (its `base_model_prefix` attribute)."""
    return getattr(model, model.base_model_prefix)


def checkpoint_value_model(cfg, policy, device):
    """Per-token value model: the policy's architecture with a zero 1-logit `score` head (V = 0 at the start).

    value_init: policy copies the (SFT) policy's body (LoRA policies: the checkpoint's), reward loads
    reward.checkpoint (must be a causal LM on the policy's vocabulary), fresh is random.
    """
    from transformers import AutoModelForSequenceClassification

    init = cfg.optimizer.value_init
    if init == "reward":
        rc = cfg.reward
        rtok = load_tokenizer(rc.tokenizer or rc.checkpoint, "reward.checkpoint")
        ptok = policy_tokenizer(cfg.policy)
        if rtok.get_vocab() != ptok.get_vocab():
            raise ConfigError(
                "optimizer.value_init: reward needs a reward model on the policy's tokenizer (per-token values read the "
                "policy's tokens); this reward.checkpoint has another vocabulary: use value_init: policy"
            )
        value = load_sequence_classifier(rc.checkpoint, "reward.checkpoint", ptok.pad_token_id, cfg.seed)
        if not getattr(value.config, "is_decoder", False) and value.config.model_type not in _causal_types():
            raise ConfigError(
                f"optimizer.value_init: reward needs a causal (decoder) reward model; {value.config.model_type} looks at "
                "later tokens, which a per-token value must not: use value_init: policy"
            )
    else:
        lora = hasattr(policy, "peft_config")
        conf = copy.deepcopy((policy.get_base_model() if lora else policy).config)
        conf.num_labels = 1
        if lora and init == "policy":
            value = load_sequence_classifier(cfg.policy.checkpoint, "policy.checkpoint", conf.pad_token_id, cfg.seed)
        else:
            torch.manual_seed(cfg.seed)
            value = fp32_head(AutoModelForSequenceClassification.from_config(conf))
            if init == "policy":
                _base(value).load_state_dict(_base(policy).state_dict())
    if not isinstance(getattr(value, "score", None), torch.nn.Linear):
        raise ConfigError(
            f"value model: {type(value).__name__} has no linear `score` head; use a decoder checkpoint "
            "(GPT-2, GPT-NeoX/Pythia, Llama, Qwen, ...) for the policy"
        )
    torch.nn.init.zeros_(value.score.weight)
    if value.score.bias is not None:
        torch.nn.init.zeros_(value.score.bias)
    no_dropout(value)
    if cfg.compute.gradient_checkpointing:
        enable_checkpointing(value)
    return value.to(device).eval()


def _causal_types() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
