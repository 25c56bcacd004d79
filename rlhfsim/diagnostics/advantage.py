"""Does PPO's learning signal still point the right way? Advantage and reward-signal diagnostics.

Because the simulator knows the gold reward, it can run GAE twice on the same rollouts -- once with
the proxy score, once with the gold score -- and compare the two advantage fields token by token.
Inputs may be numpy arrays or torch tensors; ``[B, T]`` arrays are batch x response tokens with a
``mask [B, T]`` (1 on real response tokens, 0 on padding). Metric ranges are in ``docs/metrics.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["advantage_fidelity", "kl_share", "ppo_signal_metrics", "signal_to_noise", "within_prompt_rank_corr"]


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


def within_prompt_rank_corr(proxy, gold) -> float:
    """Mean over prompts of Spearman's rho between proxy ``[P, k]`` and gold ``[P, k]`` rewards.

    The within-prompt ranking is what a group of completions teaches the policy. Prompts with
    fewer than 2 scored completions or a constant proxy / gold row are skipped (rho undefined).
    Range ``[-1, 1]``; NaN when no prompt qualifies.
    """
    x, y = _np(proxy), _np(gold)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected equal [P, k] arrays, got {x.shape} and {y.shape}")
    rhos = []
    for r, g in zip(x, y):
        ok = np.isfinite(r) & np.isfinite(g)
        r, g = r[ok], g[ok]
        if r.size < 2 or np.ptp(r) == 0 or np.ptp(g) == 0:
            continue
        rhos.append(_pearson(stats.rankdata(r), stats.rankdata(g)))
    rhos = [v for v in rhos if np.isfinite(v)]
    return float(np.mean(rhos)) if rhos else float("nan")


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


def ppo_signal_metrics(adv, scores, gold, logprobs, ref_logprobs, values, mask, beta: float,
                       estimator: str, gamma: float, lam: float, non_score=None) -> dict[str, float]:
    """Every ``adv/*`` metric of one PPO rollout batch (torch tensors on any device).

    ``adv [B, T]`` are the raw (not yet whitened) GAE advantages PPO computed from the proxy
    ``scores [B]``; the same GAE is run again with ``gold [B]`` in the score's place, with the same
    ``values [B, T]`` baseline and the same KL penalty from ``logprobs`` / ``ref_logprobs [B, T]``
    (``beta``, ``estimator``), so only the score differs. ``mask [B, T]`` is the response mask;
    ``non_score [B, T]`` the caller's per-token KL penalty, recomputed when not given.

    Returns :func:`advantage_fidelity`'s four fields plus ``adv/std_raw`` (masked std of ``adv``
    before whitening), ``adv/snr`` (:func:`signal_to_noise`) and ``adv/kl_share`` (:func:`kl_share`
    of the proxy scores and the per-token KL penalty).
    """
    from rlhfsim.ppo import core  # ppo.trainer imports this module; keep the import graph one-way at load time

    if non_score is None:
        _, _, non_score = core.compute_rewards(scores, logprobs, ref_logprobs, mask, beta, estimator)
    gold_rewards, _, _ = core.compute_rewards(gold, logprobs, ref_logprobs, mask, beta, estimator)
    adv_gold, _ = core.compute_gae(gold_rewards, values, mask, gamma, lam)
    out = advantage_fidelity(adv, adv_gold, mask)
    out["adv/std_raw"] = float(core.masked_var(adv, mask).sqrt())
    out["adv/snr"] = signal_to_noise(adv, mask)
    out["adv/kl_share"] = kl_share(scores, non_score, mask)
    return out
