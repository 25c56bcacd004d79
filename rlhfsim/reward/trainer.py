"""Listwise reward-model training: each completion scored once, every ranked pair read off the score matrix.

For a prompt with k completions and preference matrix P[a, b] (a preferred over b) the objective is
    maximise  sum_{a,b} P[a, b] * U_t(r_a - r_b)
with U_t the utility for the prompt's type t and r = sigmoid(logit) (bounded) or the logit itself.
A pairwise implementation would run two forwards per pair (k(k-1)/2 pairs); the listwise one runs k.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from rlhfsim.models.lean import classifier_logits
from rlhfsim.reward import regularise, schedule
from rlhfsim.reward.early_stop import EarlyStopper, head_orders, holdout_mask, member_orders
from rlhfsim.reward.model import encode_pairs
from rlhfsim.reward.stacked import Stack, clip_grad_norm_per_member

log = logging.getLogger(__name__)


def to_reward_scale(logits: torch.Tensor, bounded: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if bounded else logits


def listwise_loss(
    logits: torch.Tensor,  # [G, K] one score per completion (padding where ~valid)
    prefs: torch.Tensor,  # [G, K, K] bool, prefs[g, a, b] = a preferred over b
    type_idx: torch.Tensor,  # [G] index into `utilities`
    utilities: list,  # Utility callables, one per prompt type present
    bounded: bool,
    weights: torch.Tensor | None = None,  # [G] per-group weights (bootstrap counts of ensemble heads); None = 1
) -> tuple[torch.Tensor, dict]:
    """Negative mean utility over labelled pairs, and (loss, stats) with pairwise training accuracy.
    With `weights`, a group's pairs count `weights[g]` times in the sums and in the pair count, as if the
    group appeared that many times in the batch."""
    r = to_reward_scale(logits, bounded)
    diff = r[:, :, None] - r[:, None, :]  # [G, K, K] r_a - r_b
    p = prefs.to(r.dtype)
    if weights is not None:
        p = p * weights.to(r.dtype)[:, None, None]
    util = torch.zeros_like(diff)
    for t, U in enumerate(utilities):
        sel = type_idx == t
        if sel.any():
            util[sel] = U(diff[sel])
    n_pairs = p.sum().clamp(min=1.0)
    loss = -(util * p).sum() / n_pairs
    right = (diff > 0).to(r.dtype) * p
    st = {"rm/loss": loss.item(), "rm/train_acc": (right.sum() / n_pairs).item(), "rm/pairs": int(p.sum().item())}
    per_pairs, per_right = p.sum((1, 2)), right.sum((1, 2))  # [G]
    for t in range(len(utilities)):  # per-type accuracy (NaN for a type without pairs in this batch)
        n_t = per_pairs[type_idx == t].sum()
        st[f"rm/train_acc_type{t}"] = (per_right[type_idx == t].sum() / n_t).item() if n_t > 0 else float("nan")
    return loss, st


def pairwise_loss(chosen_logits: torch.Tensor, rejected_logits: torch.Tensor, pair_type_idx: torch.Tensor, utilities: list, bounded: bool) -> torch.Tensor:
    """Reference implementation over explicit pairs ([Npairs] each); equals `listwise_loss` on the same scores."""
    d = to_reward_scale(chosen_logits, bounded) - to_reward_scale(rejected_logits, bounded)
    util = torch.zeros_like(d)
    for t, U in enumerate(utilities):
        sel = pair_type_idx == t
        if sel.any():
            util[sel] = U(d[sel])
    return -util.mean()


def group_layout(groups, type_names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each group's completions sit in the flat list of all completions, and what was preferred.

    Returns index [G, K] (flat position of completion j of group i; -1 pads groups with fewer than K),
    prefs [G, K, K] (prefs[i, a, b]: a was preferred to b) and type_idx [G] (prompt type of each group).
    """
    k = max(len(g.completions) for g in groups)
    index = torch.full((len(groups), k), -1, dtype=torch.long)
    prefs = torch.zeros((len(groups), k, k), dtype=torch.bool)
    pos = 0
    for i, g in enumerate(groups):
        n = len(g.completions)
        index[i, :n] = torch.arange(pos, pos + n)
        prefs[i, :n, :n] = torch.as_tensor(g.prefs)
        pos += n
    return index, prefs, torch.tensor([type_names.index(g.prompt.type) for g in groups])


class GroupTensors:
    """All groups of the buffer tokenised once: flat ids [N, S] plus the [G, K] index of each completion."""

    def __init__(self, tokenizer, groups, type_names: list[str], device):
        prompts = [g.prompt.text for g in groups for _ in g.completions]
        comps = [c for g in groups for c in g.completions]
        self.ids, self.mask = encode_pairs(tokenizer, prompts, comps, device)
        self.index, self.prefs, self.type_idx = (t.to(device) for t in group_layout(groups, type_names))

    def __len__(self) -> int:
        return self.index.shape[0]

    def member_batch(self, gidx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every member its own groups ``gidx [M, b]``: ids, mask ``[M, b*K, S]`` (padding slots repeat
        row 0 so shapes match across members) and ``valid [M, b, K]``."""
        index = self.index[gidx]  # [M, b, K]
        M = index.shape[0]
        flat = index.clamp(min=0).reshape(M, -1)
        return self.ids[flat], self.mask[flat], index >= 0

    def forward(self, model, gidx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores [g, K] (0 on padding), prefs [g, K, K], type_idx [g] for the groups `gidx`."""
        index = self.index[gidx]
        valid = index >= 0
        flat = index[valid]
        z = classifier_logits(model, self.ids[flat], self.mask[flat]).squeeze(-1).float()
        logits = torch.zeros(index.shape, dtype=z.dtype, device=z.device)
        logits[valid] = z
        return logits, self.prefs[gidx], self.type_idx[gidx]


def utilities_for(cfg, type_names: list[str]) -> list:
    """One Utility per prompt type: the prompt-aware map where it names the type, else the shared utility."""
    aware = cfg.prompt_aware or {}
    return [(aware[t] if t in aware else cfg.utility).build() for t in type_names]


def type_weights(utilities: list, mode: str) -> list[float]:
    """Per-type factors on the utilities (config ``reward.type_weighting``).

    ``raw``: 1 for every type (the paper: raw utilities averaged over all labelled pairs). ``range``: type t's
    utility is divided by its range over the reward interval, ``U_t(1) - U_t(0)`` (its mean slope on [0, 1]),
    and multiplied by the geometric mean of those ranges: every type then pulls with the same average
    strength (``-1/(x+0.1)`` has range 9.09 against 1 for ``x``, so raw averaging lets open prompts dominate),
    and a single shared utility is left exactly as it is. A positive factor per type leaves each prompt's
    optimum unchanged; only the balance between types moves.
    """
    if mode == "raw":
        return [1.0] * len(utilities)
    if mode != "range":
        raise ValueError(f"unknown reward.type_weighting {mode!r}; valid: raw, range")
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ranges = np.array([float(U(ends)[1] - U(ends)[0]) for U in utilities])
    if (ranges <= 0).any() or not np.isfinite(ranges).all():
        raise ValueError(f"utilities must rise on [0, 1] to be weighted by range; got ranges {ranges.tolist()}")
    gm = float(np.exp(np.log(ranges).mean()))
    return [gm / r if not np.isclose(gm, r, rtol=1e-12) else 1.0 for r in ranges]


def training_utilities(cfg, type_names: list[str]) -> list:
    """The utilities the reward model trains on: per-type weighting (``reward.type_weighting``), then the margin."""
    us = utilities_for(cfg, type_names)
    us = regularise.scaled(us, type_weights(us, cfg.type_weighting))
    return regularise.with_margin(us, cfg.margin)




class LoopEngine:
    """Members trained one after another (the fallback where stacking fails, and M = 1)."""

    stacked = False

    def __init__(self, rms, cfg, steps: int):
        self.models = rms.members
        self.opts = [torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True) for m in self.models]
        self.scheds = [schedule.make_scheduler(o, cfg.lr_schedule, cfg.warmup, steps) for o in self.opts]
        self._centring(cfg, steps)
        for m in self.models:
            m.train()

    def _centring(self, cfg, steps: int) -> None:
        self.center_coef0, self.center_schedule, self.steps, self.t = cfg.center_coef, cfg.center_schedule, steps, 0

    def _update(self, loss: torch.Tensor, clip) -> None:
        """One step of the single-optimiser engines (stacked, heads): backward, `clip()`, AdamW, lr schedule."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.t += 1

    @property
    def center_coef(self) -> float:
        """reward.center_coef at this optimiser step (reward.center_schedule)."""
        return self.center_coef0 * schedule.decay_factor(self.center_schedule, self.t, self.steps)

    def step(self, data: GroupTensors, gidx: torch.Tensor, utilities, bounded: bool) -> list[dict]:
        stats = []
        for m, (model, opt) in enumerate(zip(self.models, self.opts)):
            logits, prefs, tidx = data.forward(model, gidx[m])
            loss, st = listwise_loss(logits, prefs, tidx, utilities, bounded)
            loss = loss + regularise.centring_penalty(logits, data.index[gidx[m]] >= 0, self.center_coef)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if self.scheds[m] is not None:
                self.scheds[m].step()
            stats.append(st)
        self.t += 1
        return stats

    @torch.no_grad()
    def score(self, data: GroupTensors) -> torch.Tensor:
        """Scores ``[M, G, K]`` of every group of ``data`` (0 on padding)."""
        g = torch.arange(len(data), device=data.index.device)
        for m in self.models:  # no dropout while scoring
            m.eval()
        out = torch.stack([data.forward(model, g)[0] for model in self.models])
        for m in self.models:
            m.train()
        return out

    def snapshot(self):
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.models]

    def restore(self, snap) -> None:
        for m, s in zip(self.models, snap):
            m.load_state_dict(s)

    def finish(self) -> None:
        for m in self.models:
            m.eval()


class StackedEngine(LoopEngine):
    """All members in one vmapped forward/backward over stacked weights; one AdamW over the stack
    (AdamW is elementwise, so this is M independent optimisers) and gradient clipping per member."""

    stacked = True

    def __init__(self, rms, cfg, steps: int, stack: Stack):
        self.models, self.stack = rms.members, stack
        self.params = list(stack.params.values())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        self.sched = schedule.make_scheduler(self.opt, cfg.lr_schedule, cfg.warmup, steps)
        self._centring(cfg, steps)

    def step(self, data: GroupTensors, gidx: torch.Tensor, utilities, bounded: bool) -> list[dict]:
        ids, mask, valid = data.member_batch(gidx)
        M, b, K = valid.shape
        self.stack.template.train()  # dropout (reward.dropout) applies in training steps only
        z = self.stack.logits(ids, mask, per_member_inputs=True).view(M, b, K)
        logits = torch.where(valid, z, torch.zeros_like(z))  # [M, b, K]
        total, stats = 0.0, []
        for m in range(M):  # per-member loss on [b, K] scores; the members' graphs are independent
            loss, st = listwise_loss(logits[m], data.prefs[gidx[m]], data.type_idx[gidx[m]], utilities, bounded)
            loss = loss + regularise.centring_penalty(logits[m], valid[m], self.center_coef)
            total, stats = total + loss, stats + [st]
        self._update(total, lambda: clip_grad_norm_per_member(self.params, 1.0))
        return stats

    @torch.no_grad()
    def score(self, data: GroupTensors) -> torch.Tensor:
        self.stack.template.eval()
        valid = data.index >= 0
        z = self.stack.logits(data.ids[data.index[valid]], data.mask[data.index[valid]])  # [M, n_valid]
        out = torch.zeros((self.stack.M, *valid.shape), dtype=z.dtype, device=z.device)
        out[:, valid] = z
        return out

    def snapshot(self):
        return self.stack.snapshot()

    def restore(self, snap) -> None:
        self.stack.restore(snap)

    def finish(self) -> None:
        self.stack.unstack_into(self.models)
        for m in self.models:
            m.eval()


def make_engine(rms, cfg, data: GroupTensors, weights: np.ndarray | None = None) -> LoopEngine:
    """Heads for a shared-trunk ensemble (`weights` [M, n]: their bootstrap group weights); stacked when there
    are several members and the architecture stacks; else the loop."""
    steps = schedule.total_steps(len(data), cfg.batch_groups, cfg.epochs)
    if rms.heads:
        from rlhfsim.reward.heads import HeadsEngine

        return HeadsEngine(rms, cfg, weights, steps)
    if len(rms.members) > 1 and cfg.stacked:
        stack = Stack.build(rms.members, requires_grad=True, probe=(data.ids, data.mask))
        if stack is not None:
            return StackedEngine(rms, cfg, steps, stack)
    return LoopEngine(rms, cfg, steps)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x[np.isfinite(x)].mean()) if np.isfinite(x).any() else float("nan")


def heldout_eval(engine: LoopEngine, data: GroupTensors, type_names: list[str], utilities, bounded: bool) -> dict:
    """Held-out loss and pairwise accuracy (mean over members), and the shape dependence and saturation
    of the members' mean rewards on the held-out groups (rlhfsim.diagnostics.collapse; no gold used)."""
    from rlhfsim.diagnostics.collapse import collapse_metrics, shape_dependence

    logits = engine.score(data)  # [M, H, K]
    with torch.no_grad():
        per = [listwise_loss(lg, data.prefs, data.type_idx, utilities, bounded)[1] for lg in logits]
    valid = (data.index >= 0).cpu().numpy()
    L = np.where(valid, logits.mean(0).cpu().numpy(), np.nan)  # [H, K], NaN on padding
    types = [type_names[i] for i in data.type_idx.tolist()]
    cm = collapse_metrics(L, types, bounded=bounded)
    return {
        "loss": float(np.mean([s["rm/loss"] for s in per])),
        "accuracy": float(np.mean([s["rm/train_acc"] for s in per])),
        "collapse_index": shape_dependence(1 / (1 + np.exp(-L)) if bounded else L),
        "saturation": cm["collapse/saturation"],
    }


def train_reward_models(rms, groups, cfg, type_names: list[str], rng: np.random.Generator) -> dict:
    """Train every member of `rms` on `groups` for up to cfg.epochs (early stopping: cfg.early_stop).

    Members differ by init seed and, per `cfg.ensemble_data`, by data order or a bootstrap resample;
    they train stacked (one vmapped forward for all members) where the architecture allows. Heads of a
    shared trunk (rlhfsim.reward.heads) share one order and differ by init and bootstrap weights.
    Returns the round's `rm/*` training stats (docs/metrics.md).
    """
    es = cfg.early_stop
    if not groups:
        return {"rm/loss": float("nan"), "rm/train_acc": float("nan"), "rm/pairs": 0, "rm/groups": 0, "rm/epochs": 0}
    held = holdout_mask(groups, es.holdout, rms.seed) if es.mode != "none" else np.zeros(len(groups), dtype=bool)
    no_heldout = es.mode != "none" and (held.all() or not held.any())
    if no_heldout:  # too few groups to split: train on everything for the maximum number of epochs
        held[:] = False
    utilities = training_utilities(cfg, type_names)
    data = GroupTensors(rms.tokenizer, [g for g, h in zip(groups, held) if not h], type_names, rms.device)
    hdata = GroupTensors(rms.tokenizer, [g for g, h in zip(groups, held) if h], type_names, rms.device) if held.any() else None
    M, n = rms.n_members, len(data)
    if rms.heads:  # one shared order [1, E, n] and per-head bootstrap weights [M, n] (or None)
        orders, weights = head_orders(n, M, cfg.epochs, cfg.ensemble_data, rng)
    else:
        orders, weights = member_orders(n, M, cfg.epochs, cfg.ensemble_data, rng), None  # [M, E, n]
    orders = torch.as_tensor(orders, device=rms.device)
    engine = make_engine(rms, cfg, data, weights)
    mode = es.mode if hdata is not None else "none"
    stopper = EarlyStopper(mode, es.monitor, es.patience, es.min_delta, es.min_epochs, cfg.epochs, es.min_collapse_index, es.max_saturation)
    snaps: dict[int, object] = {}
    for epoch in range(1, cfg.epochs + 1):
        stats: list[dict] = []
        for s in range(0, n, cfg.batch_groups):
            stats += engine.step(data, orders[:, epoch - 1, s : s + cfg.batch_groups], utilities, rms.bounded)
        h = heldout_eval(engine, hdata, type_names, utilities, rms.bounded) if mode != "none" else {}
        stop = stopper.update(epoch, h)
        log.debug("reward epoch %d: held-out %s", epoch, h)
        if mode != "none":  # keep only the weights a stop could go back to
            snaps = {e: v for e, v in snaps.items() if e == stopper.keep_epoch}
            snaps[epoch] = engine.snapshot()
        if stop:
            break
    if stopper.keep_epoch != epoch:
        engine.restore(snaps[stopper.keep_epoch])
    engine.finish()
    out = {
        "rm/loss": float(np.mean([s["rm/loss"] for s in stats])),  # the last trained epoch, mean over members
        "rm/train_acc": float(np.mean([s["rm/train_acc"] for s in stats])),
        **{f"rm/{t}_train_acc": _nanmean([s.get(f"rm/train_acc_type{i}", np.nan) for s in stats]) for i, t in enumerate(type_names)},
        "rm/pairs": int(data.prefs.sum().item()),
        "rm/groups": n,
        "rm/epochs": epoch,
        "rm/stacked": int(engine.stacked),
    }
    if es.mode != "none":
        kept = stopper.history[stopper.keep_epoch - 1] if mode != "none" else {}
        out.update({
            "rm/heldout_groups": 0 if hdata is None else len(hdata),
            "rm/heldout_loss": kept.get("loss", float("nan")),
            "rm/heldout_acc": kept.get("accuracy", float("nan")),
            "rm/heldout_shape_dep": kept.get("collapse_index", float("nan")),
            "rm/heldout_saturation": kept.get("saturation", float("nan")),
            "rm/kept_epoch": stopper.keep_epoch,
            "rm/early_stopped": int(stopper.reason != "max_epochs" and not no_heldout),
            "rm/stop_reason": "no_heldout" if no_heldout else stopper.reason,
        })
    return out
