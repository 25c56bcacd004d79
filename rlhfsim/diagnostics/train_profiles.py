"""Collapse on the training groups: the reward model scored on the rankings it was trained on.

Song et al.'s reward collapse is a statement about the terminal phase of training: a model that
interpolates its training rankings reaches the finite-n optimum of sum_{i<j} U(r_i - r_j) on every
training prompt, whatever the prompt. The held-out metrics (:mod:`rlhfsim.diagnostics.collapse`)
show how much of that carries over to new prompts; these show the terminal phase itself.

A group's known order is read off its preference matrix: ``rank = 1 + number of group members it
is preferred over`` (1 = worst), which is the position in a total order when every pair is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.collapse import collapse_metrics, to_unit_interval
from rlhfsim.theory import optimal_rewards_graph


@dataclass
class GroupMatrices:
    """Training groups laid out as ``[G, K]`` matrices (NaN / -1 padding for short groups)."""

    prompts: list  # [G*K_valid] flat Prompt of each valid slot (group-major)
    texts: list[str]  # [G*K_valid] flat completion of each valid slot
    valid: np.ndarray  # [G, K] bool
    gold: np.ndarray  # [G, K] gold reward, NaN where padded
    rank: np.ndarray  # [G, K] annotator position (1 = worst), NaN where padded
    prefs: np.ndarray  # [G, K, K] bool, a preferred over b
    types: list[str]  # [G]
    prompt_ids: np.ndarray  # [G]
    rounds: np.ndarray  # [G] round the group was annotated in


def group_matrices(groups) -> GroupMatrices:
    """Buffer groups (``reward.buffer.Group``) -> matrices. Raises ValueError on an empty list."""
    if not groups:
        raise ValueError("no training groups to diagnose")
    K = max(len(g.completions) for g in groups)
    G = len(groups)
    valid = np.zeros((G, K), dtype=bool)
    gold = np.full((G, K), np.nan)
    rank = np.full((G, K), np.nan)
    prefs = np.zeros((G, K, K), dtype=bool)
    prompts, texts = [], []
    for i, g in enumerate(groups):
        n = len(g.completions)
        valid[i, :n] = True
        gold[i, :n] = g.gold
        prefs[i, :n, :n] = g.prefs
        rank[i, :n] = 1 + np.asarray(g.prefs).sum(axis=1)
        prompts.extend([g.prompt] * n)
        texts.extend(g.completions)
    return GroupMatrices(
        prompts,
        texts,
        valid,
        gold,
        rank,
        prefs,
        [g.prompt.type for g in groups],
        np.array([g.prompt.id for g in groups]),
        np.array([g.round for g in groups]),
    )


def order_accuracy(L: np.ndarray, prefs: np.ndarray) -> float:
    """Share of labelled pairs (``prefs [G, K, K]``) whose scores ``L [G, K]`` are strictly in the labelled order."""
    d = L[:, :, None] - L[:, None, :]
    n = int(prefs.sum())
    return float(((d > 0) & prefs).sum() / n) if n else float("nan")


def objective_gap(R: np.ndarray, prefs: np.ndarray, utility) -> float:
    """How far the trained rewards are from the optimum *value* of the training objective, per group then averaged.

    ``R [G, K]`` rewards in [0, 1] (NaN padding), ``prefs [G, K, K]`` each group's comparison graph (labelled
    pairs: ties dropped, reference answers included). For each group: mean over its labelled pairs of
    ``U(o_a - o_b) - U(r_a - r_b)`` with ``o`` the group's graph optimum (:func:`rlhfsim.theory.optimal_rewards_graph`):
    >= 0, and 0 exactly at the optimum. Unlike the profile deviation it is not fooled by a model whose sorted
    values are right but whose order is not.
    """
    gaps = []
    for r, P in zip(R, prefs):
        n = int(np.isfinite(r).sum())
        if not P.any():
            continue
        P, r = P[:n, :n], r[:n]
        o = optimal_rewards_graph(utility, P)
        gaps.append(float(np.mean(utility(o[:, None] - o[None, :])[P]) - np.mean(utility(r[:, None] - r[None, :])[P])))
    return float(np.mean(gaps)) if gaps else float("nan")


def train_diagnostics(
    gm: GroupMatrices, logits_flat: np.ndarray, bounded: bool, theory: dict | None
) -> tuple[dict, pd.DataFrame]:
    """(metrics, per-completion table) of the reward model on its training groups.

    ``logits_flat [N_valid]`` are the model's logits of ``gm.texts`` in order; ``theory`` {type: Utility as
    trained} (bounded rewards only). Metrics are the ``collapse/*`` metrics of :func:`collapse_metrics` (the
    graph optimum on the annotator's comparison graphs) renamed ``collapse_train/*``, plus
    ``collapse_train/order_acc`` (agreement with the annotator's labels, see :func:`order_accuracy`) and
    ``collapse_train/{t}_objective_gap``.
    """
    L = np.full(gm.valid.shape, np.nan)
    L[gm.valid] = np.asarray(logits_flat, dtype=np.float64)
    full = collapse_metrics(L, gm.types, bounded=bounded, gold=gm.gold, theory=theory, prefs=gm.prefs)
    m = {k.replace("collapse/", "collapse_train/", 1): v for k, v in full.items() if k.startswith("collapse/")}
    m["collapse_train/order_acc"] = order_accuracy(L, gm.prefs)
    R = to_unit_interval(L, bounded) if bounded else L
    for t, U in (theory or {}).items() if bounded else ():
        sel = np.asarray(gm.types) == t
        if sel.any():
            m[f"collapse_train/{t}_objective_gap"] = objective_gap(R[sel], gm.prefs[sel], U)
    g_idx, slot = np.nonzero(gm.valid)
    table = pd.DataFrame(
        {
            "group": g_idx,
            "prompt_id": gm.prompt_ids[g_idx],
            "prompt_type": np.asarray(gm.types, dtype=object)[g_idx],
            "round_added": gm.rounds[g_idx],
            "slot": slot,
            "rank": gm.rank[g_idx, slot].astype(int),
            "gold": gm.gold[g_idx, slot],
            "logit": L[g_idx, slot],
            "reward": R[g_idx, slot],
        }
    )
    return m, table
