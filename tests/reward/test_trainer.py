import itertools

import numpy as np
import pytest
import torch

from rlhfsim.reward.trainer import listwise_loss, pairwise_loss
from rlhfsim.reward.utilities import get_utility


@pytest.mark.parametrize("bounded, names", [(False, ["logsigmoid", "logsigmoid"]), (True, ["inv", "linear"]), (True, ["log", "logsigmoid"])])
def test_listwise_equals_pairwise(bounded, names):
    g = torch.Generator().manual_seed(0)
    G, K = 5, 4
    logits = torch.randn(G, K, generator=g)
    gold = torch.randint(0, 3, (G, K), generator=g)  # ties on purpose: tied pairs carry no preference
    prefs = gold[:, :, None] > gold[:, None, :]
    type_idx = torch.tensor([0, 1, 0, 1, 1])
    utils = [get_utility(n) for n in names]
    lw, stats = listwise_loss(logits, prefs, type_idx, utils, bounded)
    ch, rj, ti = [], [], []
    for gi, a, b in itertools.product(range(G), range(K), range(K)):
        if prefs[gi, a, b]:
            ch.append(logits[gi, a]); rj.append(logits[gi, b]); ti.append(type_idx[gi])
    pw = pairwise_loss(torch.stack(ch), torch.stack(rj), torch.stack(ti), utils, bounded)
    assert torch.allclose(lw, pw, atol=1e-6)
    assert stats["rm/pairs"] == len(ch)


def test_listwise_gradient_orders_scores():
    logits = torch.zeros(1, 3, requires_grad=True)
    prefs = torch.tensor([[[False, True, True], [False, False, True], [False, False, False]]])
    loss, _ = listwise_loss(logits, prefs, torch.tensor([0]), [get_utility("logsigmoid")], False)
    loss.backward()
    # descending the loss raises the best completion and lowers the worst
    assert logits.grad[0, 0] < 0 < logits.grad[0, 2]
