"""Reward models: transformers sequence classifiers scoring (prompt, completion) text, M members per round."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
from transformers import GPT2ForSequenceClassification

from rlhfsim.models.lean import classifier_logits
from rlhfsim.models.parallel import fp32_head
from rlhfsim.models.policy import gpt2_config
from rlhfsim.reward.stacked import Stack

SEEN_MIN_ROWS, SEEN_KEEP = (
    256,
    3,
)  # RewardModels.logits: calls this large are looked up (the optimiser's batches are not)
_ENCODED: OrderedDict = OrderedDict()  # (tokenizer id, prompts, completions) -> (ids, mask): the last few encodings
ENCODED_KEEP = 8


def encode_pairs(
    tokenizer, prompts: list[str], completions: list[str], device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [N, S] of 'prompt completion <eos>'; the classifier pools at the last non-pad token (EOS).

    The same texts are scored again and again (the fixed probe set every round; phase 8's samples again in the next
    round's phase 6; the window's groups each round), so the last ENCODED_KEEP encodings are kept (copies handed out)."""
    key = (id(tokenizer), tuple(prompts), tuple(completions))
    hit = _ENCODED.get(key)
    if hit is None:
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        # one batched (Rust) tokenizer call, then one scatter of all tokens into the padded block
        texts = [f"{p} {c}".strip() for p, c in zip(prompts, completions)]
        rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths = torch.tensor([len(r) + 1 for r in rows], dtype=torch.long)
        mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()  # [N, S]
        ids = torch.full(mask.shape, pad, dtype=torch.long)
        ids[mask.bool()] = torch.tensor([t for r in rows for t in (*r, eos)], dtype=torch.long)  # row-major
        # the entry holds the tokenizer: while it is cached no other tokenizer can take its id (the key's first part)
        hit = _ENCODED[key] = (ids, mask, tokenizer)
        while len(_ENCODED) > ENCODED_KEEP:
            _ENCODED.popitem(last=False)
    else:
        _ENCODED.move_to_end(key)
    ids, mask, _ = hit
    return ids.clone().to(device), mask.clone().to(device)


def build_reward_model(
    tokenizer, cfg, n_positions: int, seed: int, heads: int = 1, backbone=None
) -> GPT2ForSequenceClassification:
    """A GPT-2 sequence classifier with `heads` score heads (rows of one linear layer, each drawn at random).
    backbone (a GPT-2 LM, e.g. the SFT policy): its trunk (embeddings, the first cfg.n_layer blocks, final norm)
    replaces the random one (InstructGPT's reward model starts from the SFT model); the heads stay random."""
    torch.manual_seed(seed)
    if backbone is not None:
        n_positions = backbone.config.n_positions  # the copied position table fixes the length
    conf = gpt2_config(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, n_positions, num_labels=heads)
    conf.resid_pdrop = conf.embd_pdrop = conf.attn_pdrop = cfg.dropout  # active in train() only
    conf.use_cache = False  # a scorer never decodes: no KV cache built (by concatenation) and dropped per forward
    model = fp32_head(GPT2ForSequenceClassification(conf))
    if backbone is not None:
        copy_trunk(backbone, model, cfg.n_layer)
    return model


def copy_trunk(source, target, n_layer: int) -> None:
    """Load `source`'s GPT-2 trunk (wte, wpe, blocks 0..n_layer-1, ln_f) into `target`; every trunk weight must
    match in name and shape (a mismatch is a config error, caught at load time by config.py's cross-checks)."""
    src = source.transformer.state_dict()
    keep = {k: v for k, v in src.items() if not k.startswith("h.") or int(k.split(".")[1]) < n_layer}
    target.transformer.load_state_dict(keep, strict=True)  # strict: raises if any trunk weight would stay random


class MemberRewards:
    """What every reward-model ensemble shares: `members`, `bounded`, and `logits(prompts, completions)` -> [M, N]."""

    members: list  # the modules (checkpoints and guards read them); one per member, or one trunk holding all heads
    bounded: bool
    heads = False  # True: one module scores all members (rlhfsim.reward.heads)

    @property
    def n_members(self) -> int:
        """M, the leading axis of `logits`."""
        return len(self.members)

    def logits(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        raise NotImplementedError

    def rewards(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """[M, N] rewards on the trained scale: sigmoid(logit) in [0,1] when bounded, else logits."""
        z = self.logits(prompts, completions)
        return 1.0 / (1.0 + np.exp(-z)) if self.bounded else z

    def state_dict(self) -> list[dict]:
        return [m.state_dict() for m in self.members]

    def load_state_dict(self, states: list[dict]) -> None:
        for m, s in zip(self.members, states):
            m.load_state_dict(s)


class RewardModels(MemberRewards):
    """The round's built-in reward model(s). `logits` -> [M, N]; `rewards` maps them to the trained scale."""

    def __init__(self, tokenizer, cfg, device, seed: int, n_positions: int = 64, backbone=None):
        self.tokenizer, self.cfg, self.device, self.n_positions = tokenizer, cfg, device, n_positions
        self.backbone = backbone  # reward.backbone: policy -> the SFT policy, whose trunk every (re)init copies
        self.bounded = cfg.is_bounded
        self.seed = seed  # salts the held-out split of early stopping (rlhfsim.reward.early_stop.holdout_mask)
        self.stacked = getattr(cfg, "stacked", True)  # score several members in one vmapped forward
        self.members = [self._build(seed * 1000 + m) for m in range(cfg.ensemble_size)]

    def _build(self, seed: int, heads: int = 1):
        return build_reward_model(self.tokenizer, self.cfg, self.n_positions, seed, heads, self.backbone).to(
            self.device
        )

    def reinit(self, seed: int) -> None:
        self.members = [self._build(seed * 1000 + m) for m in range(len(self.members))]

    def logits(self, prompts: list[str], completions: list[str], batch_size: int = 512) -> np.ndarray:
        """[M, N] raw logits. A large call (the held-out samples, the probe set) with the weights and texts of one of
        the last SEEN_KEEP such calls returns that call's values: the same computation (same batches, same weights by
        content hash, deterministic on a CPU). The gold source's untrained models and a frozen one rescore the probe
        set and the previous round's samples every round."""
        if len(prompts) < SEEN_MIN_ROWS or torch.device(self.device).type != "cpu":
            return self._score(prompts, completions, batch_size)
        key = (self._weights_hash(), tuple(prompts), tuple(completions), batch_size)
        seen = self.__dict__.setdefault("_seen", OrderedDict())
        if key not in seen:
            seen[key] = self._score(prompts, completions, batch_size)
            while len(seen) > SEEN_KEEP:
                seen.popitem(last=False)
        seen.move_to_end(key)
        return seen[key].copy()

    def _weights_hash(self) -> str:
        h = hashlib.sha256()
        for m in self.members:
            for name, t in m.state_dict().items():
                h.update(name.encode() + t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    @torch.inference_mode()
    def _score(self, prompts: list[str], completions: list[str], batch_size: int = 512) -> np.ndarray:
        out = np.zeros((len(self.members), len(prompts)), dtype=np.float64)
        stack = None
        for s in range(0, len(prompts), batch_size):
            ids, mask = encode_pairs(
                self.tokenizer, prompts[s : s + batch_size], completions[s : s + batch_size], self.device
            )
            if s == 0 and len(self.members) > 1 and self.stacked:
                stack = Stack.build(self.members, requires_grad=False, probe=(ids, mask))
            if stack is not None:  # one vmapped forward for all members
                out[:, s : s + len(ids)] = stack.logits(ids, mask).cpu().numpy()
                continue
            for m, model in enumerate(self.members):
                model.eval()
                out[m, s : s + len(ids)] = classifier_logits(model, ids, mask).squeeze(-1).float().cpu().numpy()
        return out
