"""The graph optimum (:func:`rlhfsim.theory.optimal_rewards_graph`) of many comparison graphs at once.

Diagnosis asks for it for every held-out prompt every round (256 graphs of 8 nodes, few repeats); one projected-Newton
solve per graph spent ~0.4 s a round in per-call overhead (issue 34). Here the Newton iterations of all graphs run as
[B, n, n] array ops, each graph leaving the batch when it converges. Bit for bit the per-graph solver: the elementwise
ops are the same per element, numpy's sums over axis 2, over axis 1 and over a flattened [B, n * n] reduce each graph in
the order the per-graph sums do (tests/test_theory_graph.py compares every value), and what is not elementwise (the
Cholesky solve on a graph's free nodes, the line search's dot products) stays per graph, the same calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from rlhfsim.theory import _as_utility, optimal_rewards_graph

SIGMA, BETA = 1e-4, 0.5  # Armijo constants of rlhfsim.theory._projected_newton


def optimal_rewards_graphs(utility: Any, prefs, tol: float = 1e-10) -> np.ndarray:
    """``prefs [B, n, n]`` comparison graphs -> ``[B, n]``: row b is ``optimal_rewards_graph(utility, prefs[b], tol)``."""
    u = _as_utility(utility)
    E = np.ascontiguousarray(np.asarray(prefs, dtype=bool))
    if E.ndim != 3 or E.shape[1] != E.shape[2]:
        raise ValueError(f"prefs must be [B, n, n], got shape {E.shape}")
    B, n = E.shape[:2]
    if B == 0 or u.name == "linear" or not u.concave:  # closed forms and vertex search: the per-graph function
        return np.stack([optimal_rewards_graph(u, e, tol) for e in E]) if B else np.zeros((0, n))
    if (E & E.transpose(0, 2, 1)).any() or E[:, np.arange(n), np.arange(n)].any():
        raise ValueError("prefs has a pair preferred both ways (or a self-preference); it is not a comparison graph")
    first: dict[bytes, int] = {}  # each distinct graph solved once
    where = np.array([first.setdefault(e.tobytes(), len(first)) for e in E])
    uniq = np.array(list(first.values())) if len(first) == B else np.unique(where, return_index=True)[1]
    return _newton_batch(u, E[uniq], float(tol))[where]


def _objective(u, r, E) -> np.ndarray:
    d = r[:, :, None] - r[:, None, :]
    return np.where(E, u(d), 0.0).reshape(len(r), -1).sum(axis=1)


def _residual(u, r, E) -> tuple[np.ndarray, np.ndarray]:
    """(relative KKT residual [B], gradient of F [B, n]) at r; rlhfsim.theory._forces and _residual per graph."""
    d = r[:, :, None] - r[:, None, :]
    g = np.where(E, u.grad(d), 0.0)
    up, down = g.sum(axis=2), g.sum(axis=1)
    grad, pull = up - down, up + down
    pg = np.where(((r <= 0.0) & (grad < 0)) | ((r >= 1.0) & (grad > 0)), 0.0, grad)
    return np.max(np.abs(pg) / np.maximum(pull, np.finfo(float).tiny), axis=1), grad


def _free_step(lap, grad, free) -> np.ndarray:
    """One graph's Newton step on its free nodes (rlhfsim.theory._projected_newton's, the same calls)."""
    h = lap[np.ix_(free, free)]
    mu = 1e-12 * max(float(np.trace(h)) / h.shape[0], 1e-12)
    h = h + mu * np.eye(h.shape[0])
    try:
        return -linalg.solve(h, grad[free], assume_a="pos")
    except (linalg.LinAlgError, ValueError):
        return -np.linalg.lstsq(h, grad[free], rcond=None)[0]


def _free_steps(lap, grad, free, p) -> None:
    """Each graph's Newton step on its free nodes into ``p``: graphs with as many free nodes solved in one batched call
    (scipy runs the same LAPACK Cholesky per matrix as for one, on the same submatrix: free nodes in node order); a
    batch with a matrix that is not positive definite (or not finite) goes graph by graph, as before."""
    order = np.argsort(~free, axis=1, kind="stable")  # free nodes first, in node order (np.ix_'s)
    count = free.sum(axis=1)
    for k in np.unique(count[count > 0]):
        bs = np.flatnonzero(count == k)
        idx = order[bs, :k]
        h = lap[bs[:, None, None], idx[:, :, None], idx[:, None, :]]
        t = np.trace(h, axis1=1, axis2=2) / k
        mu = 1e-12 * np.where(1e-12 > t, 1e-12, t)  # Python's max(t, 1e-12)
        h = h + mu[:, None, None] * np.eye(k)
        rhs = grad[bs[:, None], idx]
        try:
            if k == 1:  # scipy divides for a 1 x 1 system (LAPACK's Cholesky would round otherwise)
                if not (np.isfinite(h).all() and np.isfinite(rhs).all()):
                    raise ValueError("not finite")
                if not np.all(h != 0):
                    raise linalg.LinAlgError("singular")
                p[bs[:, None], idx] = -(rhs / h[:, 0])
            else:
                p[bs[:, None], idx] = -linalg.solve(h, rhs[:, :, None], assume_a="pos")[..., 0]
        except (linalg.LinAlgError, ValueError):
            for b in bs:
                p[b, free[b]] = _free_step(lap[b], grad[b], free[b])


def _newton_batch(u, E: np.ndarray, tol: float, max_iter: int = 200) -> np.ndarray:
    """rlhfsim.theory._projected_newton(u, n, tol, max_iter, E)[0] for every graph of ``E [B, n, n]``."""
    B, n = E.shape[:2]
    r = 0.5 + 0.25 * (E.sum(2) - E.sum(1)) / max(n - 1, 1)
    phi = -_objective(u, r, E)
    out = np.empty((B, n))
    live = np.arange(B)  # graphs still iterating; E, r, phi hold their rows only
    for _ in range(max_iter):
        res, grad = _residual(u, r, E)
        grad = -grad  # gradient of phi = -F
        done = res <= tol
        if done.any():
            out[live[done]] = r[done]
            keep = ~done
            live, E, r, phi, res, grad = live[keep], E[keep], r[keep], phi[keep], res[keep], grad[keep]
        if live.size == 0:
            return out
        step_to_box = np.max(np.abs(r - np.clip(r - grad, 0.0, 1.0)), axis=1)
        delta = np.where(step_to_box < 1e-3, step_to_box, 1e-3)[:, None]  # Python's min(1e-3, step_to_box)
        active = ((r <= delta) & (grad > 0)) | ((r >= 1.0 - delta) & (grad < 0))
        free = ~active
        d = r[:, :, None] - r[:, None, :]
        w = -(np.where(E, u.hess(d), 0.0))
        w = w + w.transpose(0, 2, 1)
        idx = np.arange(n)
        lap = np.zeros_like(w)
        lap[:, idx, idx] = w.sum(axis=2)
        lap = lap - w  # np.diag(w.sum(axis=1)) - w
        dg = np.maximum(lap[:, idx, idx], 1e-12)
        p = np.where(active, -grad / dg, 0.0)
        dec_free = np.zeros(len(r))
        _free_steps(lap, grad, free, p)
        for b in np.flatnonzero(free.any(axis=1)):
            f = free[b]
            if not np.all(np.isfinite(p[b])) or grad[b][f] @ p[b][f] >= 0:
                p[b, f] = -grad[b][f] / dg[b][f]  # fall back to scaled steepest descent
            dec_free[b] = float(-grad[b][f] @ p[b][f])
        # Armijo along the projection arc, every graph its own alpha (see rlhfsim.theory._projected_newton)
        roundoff = 64 * np.finfo(float).eps * (np.abs(phi) + 1.0)
        alpha = np.ones(len(r))
        todo = np.arange(len(r))
        stuck = np.zeros(len(r), bool)
        while todo.size:
            a = alpha[todo]
            r_new = np.clip(r[todo] + a[:, None] * p[todo], 0.0, 1.0)
            phi_new = -_objective(u, r_new, E[todo])
            dec_act = np.array([float(grad[b][active[b]] @ (r[b] - rn)[active[b]]) for b, rn in zip(todo, r_new)])
            decrease = a * dec_free[todo] + dec_act
            ok = phi[todo] - phi_new >= SIGMA * decrease
            near = ~ok & (a == 1.0) & (phi_new <= phi[todo] + roundoff[todo])
            if near.any():
                ok[near] = _residual(u, r_new[near], E[todo[near]])[0] < res[todo[near]]
            r[todo[ok]], phi[todo[ok]] = r_new[ok], phi_new[ok]
            rest = todo[~ok]
            alpha[rest] *= BETA
            gone = alpha[rest] < 1e-12  # no acceptable step at machine precision: the best point so far
            stuck[rest[gone]] = True
            todo = rest[~gone]
        if stuck.any():
            out[live[stuck]] = r[stuck]
            keep = ~stuck
            live, E, r, phi = live[keep], E[keep], r[keep], phi[keep]
            if live.size == 0:
                return out
    out[live] = r
    return out
