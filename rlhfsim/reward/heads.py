"""Shared-trunk ensembles (`reward.ensemble_kind: heads`): ONE GPT-2 trunk with M score heads.

Bootstrapped DQN (Osband et al. 2016) shares a torso between K heads, each trained on its own bootstrap
mask; Zhang et al. 2024 ("Improving RLHF with efficient reward model ensemble") ensemble only the final
linear layer of a reward model. Here the M heads are the M rows of the classifier's score layer
(`GPT2ForSequenceClassification` with `num_labels = M`, each row drawn at random), so one forward gives all
M scores ``[N, M]`` and an ensemble costs about one reward model. Per step each head's listwise loss is
computed on the same scores (with its own bootstrap group weights under `ensemble_data: bootstrap`,
rlhfsim.reward.early_stop.head_orders), and the model is trained on the MEAN of the heads' losses: the
trunk follows the average head gradient (one head is exactly a single reward model), and each head gets
its own gradient / M, which AdamW's per-parameter scaling undoes.

Members differ less than full models do: they share the trunk's features, its data order and its dropout
masks, and differ by their head's init and (with bootstrap) their group weights.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim.models.lean import classifier_logits
from rlhfsim.reward import regularise
from rlhfsim.reward.engines import Engine
from rlhfsim.reward.listwise import GroupTensors, listwise_loss
from rlhfsim.reward.model import RewardModels, encode_pairs


class HeadRewardModels(RewardModels):
    """`RewardModels` whose M members are the heads of one module: `members` holds that module (checkpoints and
    guards read it), `n_members` is M and `logits` -> ``[M, N]`` as for full members."""

    heads = True

    def __init__(self, tokenizer, cfg, device, seed: int, n_positions: int = 64, backbone=None):
        self.tokenizer, self.cfg, self.device, self.n_positions = tokenizer, cfg, device, n_positions
        self.backbone = backbone
        self.bounded, self.seed, self.stacked = cfg.is_bounded, seed, False
        self.reinit(seed)

    @property
    def n_members(self) -> int:
        return self.cfg.ensemble_size

    def reinit(self, seed: int) -> None:
        # seed * 1000 is member 0's seed under `members`: with one head this is exactly the single reward model
        self.members = [self._build(seed * 1000, heads=self.cfg.ensemble_size)]

    @torch.inference_mode()
    def _score(self, prompts: list[str], completions: list[str], batch_size: int = 512) -> np.ndarray:
        """[M, N] raw logits, one row per head (RewardModels.logits looks large calls up first)."""
        model = self.members[0]
        model.eval()
        out = np.zeros((self.n_members, len(prompts)), dtype=np.float64)
        for s in range(0, len(prompts), batch_size):
            ids, mask = encode_pairs(
                self.tokenizer, prompts[s : s + batch_size], completions[s : s + batch_size], self.device
            )
            out[:, s : s + len(ids)] = classifier_logits(model, ids, mask).float().T.cpu().numpy()
        return out


class HeadsEngine(Engine):
    """One optimiser step per minibatch for all heads: one forward, M listwise losses, their mean backpropagated."""

    def __init__(self, rms: HeadRewardModels, cfg, weights: np.ndarray | None, steps: int = 1):
        self.models = rms.members
        self.model, self.M = rms.members[0], rms.n_members
        super().__init__(cfg, steps, [list(self.model.parameters())])  # one optimiser over trunk and heads
        # [M, n] bootstrap multiplicities of the training groups, or None (every group weight 1)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=rms.device)
        self.model.train()

    def _scores(self, data: GroupTensors, g: torch.Tensor) -> torch.Tensor:
        """Scores ``[M, len(g), K]`` (0 on padding) of the groups ``g`` from one forward."""
        index = data.index[g]
        valid = index >= 0
        flat = index[valid]
        z = classifier_logits(self.model, data.ids[flat], data.mask[flat]).float()  # [n_valid, M]
        out = z.new_zeros((self.M, *index.shape))
        out[:, valid] = z.T
        return out

    def step(self, data: GroupTensors, gidx: torch.Tensor, utilities, bounded: bool) -> list[dict]:
        g = gidx[0]  # [b]: heads share one order (gidx is [1, b])
        logits = self._scores(data, g)  # [M, b, K]
        valid = data.index[g] >= 0
        total, stats = 0.0, []
        for m in range(self.M):
            w = None if self.weights is None else self.weights[m, g]
            loss, st = listwise_loss(logits[m], data.prefs[g], data.type_idx[g], utilities, bounded, w)
            loss = loss + regularise.centring_penalty(logits[m], valid, self.center_coef)
            total, stats = total + loss, stats + [st]
        self._update(total / self.M)
        self.t += 1
        return stats

    @torch.no_grad()
    def score(self, data: GroupTensors) -> torch.Tensor:
        """Scores ``[M, G, K]`` of every group of ``data`` (0 on padding), per head."""
        self.model.eval()  # no dropout while scoring
        out = self._scores(data, torch.arange(len(data), device=data.index.device))
        self.model.train()
        return out
