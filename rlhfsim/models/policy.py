"""Policy and value models, and the SFT warm start (cached by a hash of everything it depends on)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhfsim.models.layout import encode_prompts, encode_responses, join
from rlhfsim.models.parallel import FP32Linear, fp32_head

log = logging.getLogger(__name__)


def gpt2_config(tokenizer, n_layer: int, n_embd: int, n_head: int, n_positions: int, **kw) -> GPT2Config:
    # dropout off: PPO's ratio must compare the same deterministic function before and after an update.
    # exact (erf) GELU: on CPU its kernel is ~3x faster forward and ~1.7x backward than GPT-2's tanh
    # approximation (gelu_pytorch_tanh; HF's gelu_new is a Python composite of 8 ops, slower still). The
    # built-in models are trained from scratch, so which GELU they use is a speed choice, not a result.
    kw.setdefault("activation_function", "gelu")
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kw,
    )


# config rates that transformers' layers apply functionally (no nn.Dropout module to find), by architecture
_DROPOUT_KEYS = (
    "attn_pdrop",
    "resid_pdrop",
    "embd_pdrop",
    "attention_dropout",
    "attention_probs_dropout_prob",
    "hidden_dropout_prob",
    "hidden_dropout",
    "dropout",
)


def has_dropout(model: torch.nn.Module) -> bool:
    """Whether train mode would drop anything: an nn.Dropout with p > 0, or a dropout rate > 0 in a config."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    # read the rates as attributes: config.to_dict() deep-copies the config, and this runs on every training forward
    configs = {
        id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None and hasattr(c, "to_dict")
    }
    return any(
        isinstance(r := getattr(c, k, None), (int, float)) and r > 0 for c in configs.values() for k in _DROPOUT_KEYS
    )


def build_policy(tokenizer, cfg, n_positions: int = 64) -> GPT2LMHeadModel:
    return GPT2LMHeadModel(gpt2_config(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, n_positions))


class ValueHead(torch.nn.Module):
    """A scalar value head on the policy's own last hidden state (TRL's old `...WithValueHead` design).

    Sharing the trunk saves the rollout's value forward (the sampler's hidden states give the values)
    and one of the update's two forward+backward passes; the value loss then also shapes the trunk.
    """

    def __init__(self, n_embd: int):
        super().__init__()
        self.score = FP32Linear(n_embd, 1, bias=False)  # fp32 values under autocast (models/parallel.py)
        torch.nn.init.zeros_(self.score.weight)  # V = 0 at the start, as for the separate value model

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [B, L, H] -> [B, L]
        return self.score(hidden).squeeze(-1).float()


def build_value_model(
    policy: GPT2LMHeadModel, init: str, kind: str = "separate"
) -> GPT2ForSequenceClassification | ValueHead:
    """The value function: a separate scalar-head model on the policy's architecture (backbone copied from
    the policy when init='policy', else random), or a `ValueHead` on the policy's trunk (kind='shared')."""
    if kind == "shared":
        return ValueHead(policy.config.n_embd)
    conf = GPT2Config.from_dict(policy.config.to_dict())
    conf.num_labels = 1
    value = fp32_head(GPT2ForSequenceClassification(conf))
    if init == "policy":
        value.transformer.load_state_dict(policy.transformer.state_dict())
    torch.nn.init.zeros_(value.score.weight)  # start from V = 0: no bogus baseline in the first iteration
    return value


CHECKPOINT_FIELDS = ("checkpoint", "tokenizer", "lora")  # null for the built-in GPT-2: kept out of its cache key


def numerics_cache_key(blob: dict, device: torch.device | str) -> str:
    """Hash of what an SFT warm start depends on (`blob`) plus the numerics it ran under: device type and CPU
    thread count change the trained weights' low bits (reduction order), so a cache written under other
    settings would make a run's metrics depend on what ran before it. Likewise the precision: under autocast the key
    names its dtype, and on CUDA always (caches written there before precision was in the key trained on stale bf16
    weights); a CPU fp32 key is as it was (existing caches stay valid)."""
    kind = torch.device(device).type
    numerics = {"device": kind, "threads": torch.get_num_threads()}
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):  # other device types have no autocast state to ask
        numerics["autocast"] = str(torch.get_autocast_dtype(kind)).removeprefix("torch.")
    elif kind == "cuda":
        numerics["autocast"] = "off"
    return hashlib.sha256(json.dumps({**blob, "numerics": numerics}, sort_keys=True).encode()).hexdigest()[:16]


def sft_cache_key(world_cfg, policy_cfg, vocab: list[str], device: torch.device | str = "cpu") -> str:
    # hold-outs at their default (0) leave the key as it was before they existed: caches stay valid
    unset = {k for k in ("holdout_topics", "holdout_facts") if getattr(world_cfg, k, None) == 0}
    return numerics_cache_key(
        {
            "world": world_cfg.model_dump(mode="json", exclude=unset),
            "policy": policy_cfg.model_dump(mode="json", exclude={"cache_dir", "temperature", *CHECKPOINT_FIELDS}),
            "vocab": vocab,
            "v": 3,
        },
        device,
    )


def cache_sft(model, stats: dict, path: Path) -> None:
    """Store an SFT warm start (weights + its stats) at `path`, atomically; never a diverged one."""
    if not all(torch.isfinite(t).all() for t in model.state_dict().values()):
        # every later run would inherit it; the guards report it in this run
        log.warning("SFT produced non-finite weights; not caching them (lower policy.sft_lr)")
        return
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    (tmp / "sft_stats.json").write_text(json.dumps(stats))
    try:
        tmp.rename(path)  # atomic: a killed SFT never leaves a half-written cache entry
    except OSError:  # a concurrent run finished first: keep theirs
        pass


def train_sft(policy, tokenizer, demos, cfg, device, seed: int) -> dict:
    """Teacher-forced CE on response tokens (EOS included) of noisy demonstrations; returns stats."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    p_ids, p_mask = encode_prompts(tokenizer, [p.model_input for p, _ in demos])
    r_ids, r_mask = encode_responses(tokenizer, [c for _, c in demos], cfg.response_len)
    n = len(demos)
    steps_per_epoch = math.ceil(n / cfg.sft_batch_size)
    total = max(1, steps_per_epoch * cfg.sft_epochs)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.sft_lr, weight_decay=0.0, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    policy.train()
    loss_val = float("nan")
    for _ in range(cfg.sft_epochs):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            idx = torch.as_tensor(order[s * cfg.sft_batch_size : (s + 1) * cfg.sft_batch_size])
            seq = join(p_ids[idx], p_mask[idx], r_ids[idx], r_mask[idx])
            seq = type(seq)(
                seq.input_ids.to(device), seq.attention_mask.to(device), seq.position_ids.to(device), seq.prompt_len
            )
            out = policy(
                input_ids=seq.input_ids,
                attention_mask=seq.attention_mask,
                position_ids=seq.position_ids,
                use_cache=False,
            )
            logits = out.logits[:, seq.prompt_len - 1 : -1]  # [b, L, V]
            target = seq.response_ids.masked_fill(seq.response_mask == 0, -100)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_val = loss.item()
    policy.eval()
    return {"sft/final_loss": loss_val, "sft/steps": total, "sft/demos": n}


def warm_start_policy(world, cfg, device, sft_seed: int = 0) -> tuple[GPT2LMHeadModel, dict]:
    """The SFT policy, loaded from the cache when an identical one was trained before."""
    tok = world.tokenizer
    n_positions = 32 + cfg.policy.response_len
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    key = sft_cache_key(cfg.world, cfg.policy, vocab, device)
    path = Path(cfg.policy.cache_dir) / f"sft-{key}"
    if (path / "model.safetensors").exists():
        log.info("SFT policy from cache %s", path)
        model = GPT2LMHeadModel.from_pretrained(path).to(device).eval()
        stats = json.loads((path / "sft_stats.json").read_text()) if (path / "sft_stats.json").exists() else {}
        return model, {**stats, "sft/cached": 1}
    torch.manual_seed(sft_seed)
    model = build_policy(tok, cfg.policy, n_positions).to(device)
    stats = {}
    if cfg.policy.sft_demos and cfg.policy.sft_epochs:
        demos = world.demonstrations(cfg.policy.sft_demos, np.random.default_rng(sft_seed))
        stats = train_sft(model, tok, demos, cfg.policy, device, sft_seed)
    model.eval()
    cache_sft(model, stats, path)
    return model, {**stats, "sft/cached": 0}
