"""Does the optimiser's learning signal still point the right way? Advantage fidelity for every optimiser.

Because the simulator knows the gold reward, each optimiser's applied advantages can be compared with a gold
advantage on the same completions that borrows nothing from the proxy: the group formula on gold scores
(GRPO, Dr. GRPO, RLOO; PPO with group_size > 1 uses gold group baselines), a per-type gold baseline (PPO with
group_size 1), or, for online DPO, gold's order of its training pairs.

Applied and score-only fidelity: the applied advantages (and their gold counterpart) both carry the same KL terms
(RLOO's/GRPO's KL penalty in the shaped score, PPO's per-token -beta KL reward), which agree by construction; the more
the KL weighs, the higher the applied fidelity, whatever the proxy. :func:`score_fidelity` compares advantages built
from the scores alone (the KL part removed from both sides), so it measures only what the proxy contributes.
Inputs may be numpy arrays or torch tensors; ``[B, T]`` arrays are batch x response tokens with a
``mask [B, T]`` (1 on real response tokens, 0 on padding). Metric ranges are in ``docs/metrics.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "advantage_fidelity",
    "fidelity_metrics",
    "score_fidelity",
    "gold_token_advantages",
    "group_mean",
    "kl_share",
    "pair_fidelity",
    "pg_cosine",
    "signal_to_noise",
    "within_prompt_rank_corr",
]


def _np(x) -> np.ndarray:
    """numpy float64 view of a numpy array or (possibly CUDA / grad-tracking) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of finite pairs; NaN when fewer than 2 pairs or either side is constant."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    # checked on the raw values: centring a constant leaves rounding dust, not zeros
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float(np.clip((x * y).sum() / denom, -1.0, 1.0))


def _check_bt(*arrays: np.ndarray) -> None:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"expected equal [B, T] arrays, got shapes {[a.shape for a in arrays]}")


def advantage_fidelity(adv_proxy, adv_gold, mask) -> dict[str, float]:
    """Agreement between advantages computed from the proxy score and from the gold score.

    Args:
        adv_proxy: ``[B, T]`` advantages PPO actually used (proxy score).
        adv_gold: ``[B, T]`` advantages of the same rollouts under the gold score (same value
            function and KL penalty, only the score differs).
        mask: ``[B, T]`` response mask.

    Returns:
        ``adv/gold_corr``: Pearson correlation over masked tokens, ``[-1, 1]``.
        ``adv/sign_agree``: share of masked tokens where both advantages have the same sign
        (``[0, 1]``; 1 = every token pushed in the gold direction).
        ``adv/gold_corr_seq``: Pearson correlation of per-sequence advantage sums over the batch.
        ``adv/sign_agree_seq``: sign agreement of per-sequence sums.
        Correlations are NaN when either side has zero variance; all are NaN on an empty mask.
    """
    p, g, m = _np(adv_proxy), _np(adv_gold), _np(mask) > 0
    _check_bt(p, g, m)
    nan = float("nan")
    tok_p, tok_g = p[m], g[m]
    seq_p, seq_g = np.where(m, p, 0.0).sum(1), np.where(m, g, 0.0).sum(1)
    has = m.any(1)
    seq_p, seq_g = seq_p[has], seq_g[has]
    return {
        "adv/gold_corr": _pearson(tok_p, tok_g),
        "adv/sign_agree": float(np.mean(np.sign(tok_p) == np.sign(tok_g))) if tok_p.size else nan,
        "adv/gold_corr_seq": _pearson(seq_p, seq_g),
        "adv/sign_agree_seq": float(np.mean(np.sign(seq_p) == np.sign(seq_g))) if seq_p.size else nan,
    }


def score_fidelity(adv_score, adv_gold_score, mask) -> dict[str, float]:
    """Fidelity of the score part alone: :func:`advantage_fidelity`'s token correlation and sign agreement on advantages
    built from the proxy / gold scores without any KL term (``[B, T]`` each, same mask).

    ``adv/gold_corr_score`` in ``[-1, 1]``, ``adv/sign_agree_score`` in ``[0, 1]``: 1 when the proxy ranks like gold
    within the baseline groups, about 0 / 0.5 for a proxy independent of gold, whatever the KL coefficient.
    """
    f = advantage_fidelity(adv_score, adv_gold_score, mask)
    return {"adv/gold_corr_score": f["adv/gold_corr"], "adv/sign_agree_score": f["adv/sign_agree"]}


def within_prompt_rank_corr(proxy, gold) -> float:
    """Mean over prompts of Spearman's rho between proxy ``[P, k]`` and gold ``[P, k]`` rewards.

    The within-prompt ranking is what a group of completions teaches the policy. Prompts with
    fewer than 2 scored completions or a constant proxy / gold row are skipped (rho undefined).
    Range ``[-1, 1]``; NaN when no prompt qualifies.
    """
    x, y = _np(proxy), _np(gold)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected equal [P, k] arrays, got {x.shape} and {y.shape}")
    complete = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    rho = np.full(x.shape[0], np.nan)
    if x.shape[1] >= 2:
        rho[complete] = _spearman_rows(x[complete], y[complete])
    for i in np.flatnonzero(~complete):  # rows with missing entries, one at a time
        ok = np.isfinite(x[i]) & np.isfinite(y[i])
        r, g = x[i][ok], y[i][ok]
        if r.size >= 2 and np.ptp(r) != 0 and np.ptp(g) != 0:
            rho[i] = _pearson(stats.rankdata(r), stats.rankdata(g))
    rhos = rho[np.isfinite(rho)]
    return float(np.mean(rhos)) if rhos.size else float("nan")


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each complete row pair ``[P, k]`` -> ``[P]`` (NaN where a row is constant): `_pearson` of the
    rows' average ranks bit for bit. Ranks are multiples of 1/2, so their means, deviations and sums of squares and
    products are exact in any summation order; only the final sqrt and division round, as in `_pearson`."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip((rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1)), -1.0, 1.0)
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    return np.where(constant, np.nan, rho)


def signal_to_noise(adv_raw, mask) -> float:
    """Sequence-level signal over token-level noise in an advantage field ``[B, T]``.

    With a sequence-level score (paid on the last token) and ``gamma = 1``, what tells completions
    apart is an advantage shared by all tokens of a sequence; fluctuation *within* a sequence
    comes from the per-token KL penalty and value-function error. With ``s_b`` the masked mean
    advantage of sequence ``b``::

        SNR = Var_b(s_b) / mean_b( Var_t(A_bt - s_b) )

    variances with ddof=0, the within term averaged over tokens of all sequences (so long
    sequences weigh more). Scale-free, so whitened and raw advantages give the same value.
    Range ``[0, inf)``: > 1 means the advantages mostly carry a per-completion verdict; << 1 means
    token noise dominates. ``inf`` when there is no within-sequence variation but some
    between-sequence variation; NaN when both are zero or the mask is empty.
    """
    a, m = _np(adv_raw), _np(mask) > 0
    _check_bt(a, m)
    n = m.sum(1)
    has = n > 0
    if not has.any():
        return float("nan")
    a, m, n = a[has], m[has], n[has]
    s = np.where(m, a, 0.0).sum(1) / n
    between = float(s.var())
    within = float((np.where(m, a - s[:, None], 0.0) ** 2).sum() / n.sum())
    # zero up to rounding, relative to the advantages' own scale
    tiny = 1e-20 * float((np.where(m, a, 0.0) ** 2).sum() / n.sum())
    if within <= tiny:
        return float("inf") if between > tiny else float("nan")
    return between / within


def kl_share(score, non_score_rewards, mask) -> float:
    """Share of the total reward magnitude coming from the KL penalty.

    ``score [B]`` is the (proxy) score paid at the end of each sequence, ``non_score_rewards
    [B, T]`` the per-token ``-beta * KL_t`` terms, ``mask [B, T]`` the response mask::

        kl_share = sum|non_score * mask| / (sum|non_score * mask| + sum|score|)

    Range ``[0, 1]``: 0 = the KL anchor is silent (beta 0 or policy at the reference), near 1 =
    the penalty dominates what PPO optimises. NaN when both magnitudes are zero.
    """
    sc, ns, m = _np(score), _np(non_score_rewards), _np(mask) > 0
    _check_bt(ns, m)
    if sc.shape != (ns.shape[0],):
        raise ValueError(f"score must have shape [{ns.shape[0]}], got {sc.shape}")
    kl_mag = float(np.abs(np.where(m, ns, 0.0)).sum())
    total = kl_mag + float(np.abs(sc).sum())
    return kl_mag / total if total > 0 else float("nan")


def group_mean(x, ids) -> np.ndarray:
    """``[B]`` mean of ``x [B]`` over the rows sharing each row's id ``ids [B]`` (a prompt group or a prompt type)."""
    x, ids = _np(x), np.asarray(ids)
    _, inv = np.unique(ids, return_inverse=True)
    sums, counts = np.bincount(inv, weights=x), np.bincount(inv)
    return (sums / counts)[inv]


def gold_token_advantages(gold, non_score, mask, gamma: float, ids) -> np.ndarray:
    """PPO's gold advantage, borrowing nothing from the proxy's critic: the gold return-to-go minus a gold baseline.

    ``gold [B]`` is paid on each row's last real token, ``non_score [B, T]`` is the same per-token KL penalty PPO's
    rewards carry, discount ``gamma``. R_t = sum_{k>=t} gamma^(k-t) r_k; the baseline of a row is the mean over the
    rows with its id (``ids [B]``: the prompt group when group_size > 1, else the prompt type) of their whole-response
    return R_0, so A_t = R_t - b. Returns ``[B, T]``, 0 on padding.
    """
    g, ns, m = _np(gold), _np(non_score), _np(mask) > 0
    _check_bt(ns, m)
    r = np.where(m, ns, 0.0)
    last = np.where(m.any(1), m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1), -1)
    has = last >= 0
    r[np.flatnonzero(has), last[has]] += g[has]
    ret = np.zeros_like(r)
    acc = np.zeros(r.shape[0])
    for t in range(r.shape[1] - 1, -1, -1):  # padding has r = 0, so right padding adds nothing
        acc = r[:, t] + gamma * acc
        ret[:, t] = acc
    first = np.where(has, np.argmax(m, axis=1), 0)
    b = group_mean(ret[np.arange(len(g)), first], ids)
    return np.where(m, ret - b[:, None], 0.0)


def pg_cosine(logprobs, adv_a, adv_b, mask, params) -> float:
    """Cosine between the policy-gradient directions sum_bt A_bt grad log pi(y_bt) of two advantage fields.

    ``logprobs [B, T]`` torch, with its autograd graph to ``params``; ``adv_a``, ``adv_b``, ``mask`` ``[B, T]`` torch.
    Two backward passes (autograd.grad: the optimiser's .grad buffers are not touched). Scale-free in each field;
    NaN when either gradient is zero.
    """
    import torch

    params = [p for p in params if p.requires_grad]
    grads = []
    for adv in (adv_a, adv_b):
        obj = (logprobs * (adv * mask).detach().to(logprobs.dtype)).sum()
        gs = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)  # freed with `logprobs`
        grads.append(
            torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double() for g, p in zip(gs, params)])
        )
    na, nb = grads[0].norm(), grads[1].norm()
    if na == 0 or nb == 0:
        return float("nan")
    return float(torch.dot(grads[0], grads[1]) / (na * nb))


def fidelity_metrics(adv_applied, adv_gold, mask, scores, non_score, ids) -> dict[str, float]:
    """The ``adv/*`` fidelity of one batch, the same for every optimiser that applies advantages.

    ``adv_applied [B, T]``: the advantages the optimiser actually applies (PPO: whitened GAE; group optimisers: their
    per-sequence advantage on every token); ``adv_gold [B, T]``: the same optimiser's gold advantage on the same
    completions (:func:`gold_token_advantages` for PPO, the group formula on gold scores otherwise); ``scores [B]`` the
    proxy scores, ``non_score [B, T]`` the per-token KL term (times -beta), ``ids [B]`` baseline groups.
    Returns :func:`advantage_fidelity`'s fields and ``adv/kl_share`` on the score centred within its baseline group.
    """
    out = advantage_fidelity(adv_applied, adv_gold, mask)
    sc = _np(scores)
    out["adv/kl_share"] = kl_share(sc - group_mean(sc, ids), non_score, mask)
    return out


def pair_fidelity(gold_chosen, gold_rejected, proxy_margin) -> dict[str, float]:
    """Online DPO's fidelity on its training pairs (chosen/rejected by the proxy), ``[P]`` each.

    ``adv/pair_agree``: share of pairs gold orders the same way (gold_c > gold_r), ``[0, 1]``;
    ``adv/pair_gold_tie``: share gold cannot order (gold_c == gold_r);
    ``adv/pair_agree_margin``: the same agreement weighted by the proxy margin (r_c - r_r >= 0), so confident pairs
    count more; invariant to a positive affine map of the proxy. NaN without pairs (or with zero margins).
    """
    gc, gr, m = _np(gold_chosen), _np(gold_rejected), _np(proxy_margin)
    if gc.size == 0:
        return {
            "adv/pair_agree": float("nan"),
            "adv/pair_gold_tie": float("nan"),
            "adv/pair_agree_margin": float("nan"),
        }
    agree = (gc > gr).astype(float)
    return {
        "adv/pair_agree": float(agree.mean()),
        "adv/pair_gold_tie": float((gc == gr).mean()),
        "adv/pair_agree_margin": float((m * agree).sum() / m.sum()) if m.sum() > 0 else float("nan"),
    }
