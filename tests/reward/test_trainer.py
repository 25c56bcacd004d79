import itertools

import numpy as np
import pytest
import torch

from rlhfsim.reward.trainer import listwise_loss, pairwise_loss
from rlhfsim.reward.utilities import get_utility


@pytest.mark.parametrize(
    "bounded, names", [(False, ["logsigmoid", "logsigmoid"]), (True, ["inv", "linear"]), (True, ["log", "logsigmoid"])]
)
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
            ch.append(logits[gi, a])
            rj.append(logits[gi, b])
            ti.append(type_idx[gi])
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


def test_per_type_training_accuracy():
    # type 0: both pairs right; type 1: one of two pairs right
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    prefs = torch.zeros(2, 3, 3, dtype=torch.bool)
    prefs[0, 0, 1] = prefs[0, 1, 2] = True
    prefs[1, 2, 1] = prefs[1, 0, 1] = True
    _, st = listwise_loss(logits, prefs, torch.tensor([0, 1]), [get_utility("logsigmoid")] * 3, False)
    assert st["rm/train_acc_type0"] == 1.0 and st["rm/train_acc_type1"] == 0.5 and st["rm/train_acc"] == 0.75
    assert np.isnan(st["rm/train_acc_type2"])  # no pairs of that type in the batch


def test_type_weights_equalise_the_utilities_mean_slope():
    from rlhfsim.reward.trainer import type_weights

    us = [get_utility("inv"), get_utility("linear"), get_utility("log")]
    w = type_weights(us, "range")
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ranges = [c * float(U(ends)[1] - U(ends)[0]) for c, U in zip(w, us)]
    np.testing.assert_allclose(ranges, ranges[0], rtol=1e-12)  # equal pull per type after weighting
    raw = [float(U(ends)[1] - U(ends)[0]) for U in us]
    assert raw[0] / raw[1] == pytest.approx(1 / 0.11)  # -1/(x+0.1) against x: about 9x before weighting
    assert ranges[0] == pytest.approx(np.prod(raw) ** (1 / 3))  # the geometric mean of the raw ranges
    assert type_weights(us, "raw") == [1.0, 1.0, 1.0]
    assert type_weights([get_utility("logsigmoid")] * 2, "range") == [1.0, 1.0]  # one shared utility: unchanged
    with pytest.raises(ValueError, match="raw, range"):
        type_weights(us, "pairs")


def test_weighting_leaves_each_prompts_optimum_unchanged():
    # the gradient of a weighted type is the raw one times its factor: same stationary points per prompt
    from rlhfsim.reward import regularise
    from rlhfsim.reward.trainer import type_weights

    us = [get_utility("inv"), get_utility("linear")]
    ws = regularise.scaled(us, type_weights(us, "range"))
    logits = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    prefs = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1).expand(2, 4, 4)
    grads = []
    for u in (us, ws):
        logits.grad = None
        listwise_loss(logits, prefs, torch.tensor([0, 1]), u, True)[0].backward()
        grads.append(logits.grad.clone())
    w = type_weights(us, "range")
    torch.testing.assert_close(grads[1][0], w[0] * grads[0][0])
    torch.testing.assert_close(grads[1][1], w[1] * grads[0][1])
