"""Utility functions for ranking-based reward-model training.

A reward model is trained, for each prompt and each ranked pair (better, worse), to maximise
``U(d)`` with ``d = r_better - r_worse`` (Song, Cai, Lee, Su 2023, "Reward Collapse in Aligning
LLMs"). The choice of ``U`` fixes the reward distribution the model collapses to; see
:mod:`rlhfsim.theory` for the finite-n optimum and the large-n closed forms.

Families (``get_utility(name, **params)``):

==============  =================  ==========================================  ===============
name            aliases            U on d >= 0 (d < 0: linear, see below)      params
==============  =================  ==========================================  ===============
``logsigmoid``  ``log_sigmoid``    ``log sigmoid(scale * d)`` (all d)          scale=1
``linear``      ``x``              ``d`` (all d)                               none
``power``       ``x2`` (g=2)       ``(d + eps)^g - eps^g``                     g>0, eps
``log``                            ``log(d + eps) - log(eps)``                 eps
``neg_power``   ``x_inv2`` (g=2)   ``eps^-g - (d + eps)^-g``                   g>0, eps
``inv``         ``-1/x``,          ``1/eps - 1/(d + eps)`` (= neg_power g=1)   eps
                ``x_inv``
==============  =================  ==========================================  ===============

The ``eps`` shift and the extension below 0
-------------------------------------------
``x^g`` (g < 1), ``log x`` and ``-x^(-g)`` have an infinite (or undefined) value or slope at
``x = 0``, and a trained model sees ``d <= 0`` whenever it ties or mis-orders a pair. Every
bounded family (all but ``logsigmoid`` and ``linear``) is therefore used in the shifted form

    U(d) = f(d + eps) - f(eps)        for d >= 0,
    U(d) = f'(eps) * d                for d <  0,

where ``f`` is the textbook utility. The default is ``eps = 0.1`` (:data:`DEFAULT_EPS`), the value
used by the paper's reference training code, which also uses this shift and a linear extension
below 0. Consequences, all deliberate:

* ``U(0) = 0`` and ``U`` is C^1 at the junction: the slope for ``d < 0`` is the slope at ``0+``,
  ``f'(eps)`` (e.g. ``1/eps = 10`` for ``log``, ``1/eps^2 = 100`` for ``inv``).
* ``U'(d) > 0`` for every real ``d``, so gradient ascent pushes a mis-ordered pair (``d < 0``)
  the right way, and does so with the largest slope the utility has.
* For concave ``f`` (``power`` with g <= 1, ``log``, ``neg_power``), ``U`` is increasing and
  concave on the whole real line, in particular on ``[-1, 1]``, the reachable range of
  differences of rewards in ``[0, 1]``. ``power`` with ``g > 1`` (the paper's ``x^2``) is
  increasing but *convex*; it is accepted because the paper studies it, and flagged by
  ``Utility.concave == False``.
* The finite slope at 0 puts atoms at the end points of the finite-n optimum; the theory module
  solves the problem for the shifted utility exactly as trained.

``logsigmoid`` (the Bradley-Terry loss) is meant for unbounded reward logits
(``needs_bounded == False``); all other families expect ``d`` to be a difference of rewards in
``[0, 1]`` (``needs_bounded == True``), e.g. of the reward model's sigmoid outputs.

A :class:`Utility` is callable on torch tensors (differentiable, dtype and device preserved),
numpy arrays and Python floats; :meth:`Utility.grad` and :meth:`Utility.hess` give the analytic
first and second derivatives for the theory solver (the second derivative at exactly ``d = 0``
is the right-hand one).
"""

from __future__ import annotations

import difflib
import math
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

__all__ = [
    "DEFAULT_EPS",
    "UTILITIES",
    "Utility",
    "UtilityFamily",
    "get_utility",
    "utility_from_spec",
]

#: Default shift of the bounded utilities (the paper's reference training code uses 0.1).
DEFAULT_EPS = 0.1


# --------------------------------------------------------------------------------------------
# array backends: the same formulas on torch tensors and numpy arrays
# --------------------------------------------------------------------------------------------


def _torch_if_tensor(x: Any):
    """The torch module if ``x`` is a torch tensor, else None (torch is never imported here)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return None


class _NumpyOps:
    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def clamp_min0(x):
        return np.maximum(x, 0.0)

    @staticmethod
    def log(x):
        return np.log(x)

    @staticmethod
    def pow(x, p):
        return np.power(x, p)

    @staticmethod
    def logsigmoid(x):
        return -np.logaddexp(0.0, -x)

    @staticmethod
    def sigmoid(x):
        return special.expit(x)

    @staticmethod
    def ones_like(x):
        return np.ones_like(x)


class _TorchOps:
    def __init__(self, torch):
        self.t = torch

    def where(self, c, a, b):
        return self.t.where(c, a, b)

    def clamp_min0(self, x):
        return self.t.clamp(x, min=0.0)

    def log(self, x):
        return self.t.log(x)

    def pow(self, x, p):
        return self.t.pow(x, p)

    def logsigmoid(self, x):
        return self.t.nn.functional.logsigmoid(x)

    def sigmoid(self, x):
        return self.t.sigmoid(x)

    def ones_like(self, x):
        return self.t.ones_like(x)


_NP = _NumpyOps()


def _prepare(d):
    """(ops, array, scalar_input) for ``d``; floats and lists go through numpy as float64."""
    torch = _torch_if_tensor(d)
    if torch is not None:
        if not d.is_floating_point():
            d = d.to(torch.get_default_dtype())
        return _TorchOps(torch), d, False
    scalar = np.ndim(d) == 0 and not isinstance(d, np.ndarray)
    arr = np.asarray(d, dtype=np.float64) if not isinstance(d, np.ndarray) else d
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return _NP, arr, scalar


def _finish(out, scalar: bool):
    return float(out) if scalar else out


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtilityFamily:
    """One registry entry: a canonical family, or an alias that may fix some parameters."""

    family: str  # canonical family name
    defaults: Mapping[str, float]  # settable parameters and their defaults
    fixed: Mapping[str, float] = field(default_factory=dict)  # parameters an alias pins
    formula: str = ""


_EPS = {"eps": DEFAULT_EPS}

#: Every accepted name (canonical names and aliases) -> its family description.
UTILITIES: dict[str, UtilityFamily] = {
    "logsigmoid": UtilityFamily("logsigmoid", {"scale": 1.0}, {}, "log sigmoid(scale*d)"),
    "log_sigmoid": UtilityFamily("logsigmoid", {"scale": 1.0}, {}, "log sigmoid(scale*d)"),
    "linear": UtilityFamily("linear", {}, {}, "d"),
    "x": UtilityFamily("linear", {}, {}, "d"),
    "power": UtilityFamily("power", {"g": None, **_EPS}, {}, "(d+eps)^g - eps^g"),
    "x2": UtilityFamily("power", dict(_EPS), {"g": 2.0}, "(d+eps)^2 - eps^2"),
    "log": UtilityFamily("log", dict(_EPS), {}, "log(d+eps) - log(eps)"),
    "neg_power": UtilityFamily("neg_power", {"g": None, **_EPS}, {}, "eps^-g - (d+eps)^-g"),
    "x_inv2": UtilityFamily("neg_power", dict(_EPS), {"g": 2.0}, "eps^-2 - (d+eps)^-2"),
    "inv": UtilityFamily("neg_power", dict(_EPS), {"g": 1.0}, "1/eps - 1/(d+eps)"),
    "-1/x": UtilityFamily("neg_power", dict(_EPS), {"g": 1.0}, "1/eps - 1/(d+eps)"),
    "x_inv": UtilityFamily("neg_power", dict(_EPS), {"g": 1.0}, "1/eps - 1/(d+eps)"),
}

_BOUNDED_FAMILIES = ("power", "log", "neg_power")


def _check_positive(name: str, key: str, value: Any) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and value > 0
    if not ok:
        raise ValueError(f"utility {name!r}: parameter {key!r} must be a finite number > 0, got {value!r}")
    return value


def _resolve(name: str, params: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """Validate a (name, params) pair; return (family, full parameter dict)."""
    if not isinstance(name, str):
        raise ValueError(f"utility name must be a string, got {name!r}")
    key = name.strip().lower()
    entry = UTILITIES.get(key)
    if entry is None:
        valid = ", ".join(sorted(UTILITIES))
        close = difflib.get_close_matches(key, list(UTILITIES), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown utility {name!r}.{hint} Valid names: {valid}.")
    out: dict[str, float] = {}
    for pkey, pval in params.items():
        if pkey in entry.fixed:
            if not (isinstance(pval, numbers.Real) and float(pval) == entry.fixed[pkey]):
                raise ValueError(
                    f"utility {name!r} fixes {pkey}={entry.fixed[pkey]:g}; use {entry.family!r} to choose {pkey}"
                )
            continue
        if pkey not in entry.defaults:
            settable = ", ".join(entry.defaults) or "none"
            raise ValueError(f"utility {name!r} has no parameter {pkey!r}; valid parameters: {settable}")
        out[pkey] = _check_positive(name, pkey, pval)
    for pkey, default in entry.defaults.items():
        if pkey not in out:
            if default is None:
                raise ValueError(f"utility {name!r} needs parameter {pkey!r} (a finite number > 0)")
            out[pkey] = float(default)
    out.update({k: float(v) for k, v in entry.fixed.items()})
    if entry.family in ("power", "neg_power"):
        out = {"g": out["g"], "eps": out["eps"]}  # stable order for repr / specs
    return entry.family, out


# --------------------------------------------------------------------------------------------
# the utility object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=True)
class Utility:
    """A utility ``U(d)`` of the reward difference ``d = r_better - r_worse``.

    Build it with :func:`get_utility`. ``name`` is the canonical family name
    (``logsigmoid``, ``linear``, ``power``, ``log``, ``neg_power``) and ``params`` holds every
    parameter with its resolved value (defaults included), so ``get_utility(u.name, **u.params)``
    rebuilds ``u``.
    """

    name: str
    params: dict = field(default_factory=dict)
    needs_bounded: bool = True
    concave: bool = True

    # -- formulas -----------------------------------------------------------------------------
    # For the bounded families U(d) = f(d+eps) - f(eps) on d >= 0 and s0 * d below, s0 = f'(eps).

    def _f(self, ops, x):
        g = self.params.get("g")
        if self.name == "power":
            return ops.pow(x, g)
        if self.name == "log":
            return ops.log(x)
        return -ops.pow(x, -g)  # neg_power

    def _f_scalar(self, x: float) -> float:
        return float(self._f(_NP, np.float64(x)))

    def _df(self, ops, x):
        g = self.params.get("g")
        if self.name == "power":
            return g * ops.pow(x, g - 1.0)
        if self.name == "log":
            return 1.0 / x
        return g * ops.pow(x, -g - 1.0)  # neg_power

    def _d2f(self, ops, x):
        g = self.params.get("g")
        if self.name == "power":
            return g * (g - 1.0) * ops.pow(x, g - 2.0)
        if self.name == "log":
            return -1.0 / (x * x)
        return -g * (g + 1.0) * ops.pow(x, -g - 2.0)  # neg_power

    @property
    def slope_at_zero(self) -> float:
        """``U'(0)``: the slope used for every mis-ordered pair of a bounded utility."""
        return float(self.grad(0.0))

    def __call__(self, d):
        """``U(d)``, elementwise; differentiable on torch tensors."""
        ops, x, scalar = _prepare(d)
        if self.name == "linear":
            out = x * 1.0
        elif self.name == "logsigmoid":
            out = ops.logsigmoid(self.params["scale"] * x)
        else:
            eps = self.params["eps"]
            s0 = self._df(_NP, eps)
            # clamp first so the unused branch never produces nan / inf (and nan gradients)
            pos = self._f(ops, ops.clamp_min0(x) + eps) - self._f_scalar(eps)
            out = ops.where(x >= 0, pos, s0 * x)
        return _finish(out, scalar)

    def grad(self, d):
        """Analytic ``U'(d)`` (numpy in, numpy out; also accepts floats and torch tensors)."""
        ops, x, scalar = _prepare(d)
        if self.name == "linear":
            out = ops.ones_like(x)
        elif self.name == "logsigmoid":
            s = self.params["scale"]
            out = s * ops.sigmoid(-s * x)
        else:
            eps = self.params["eps"]
            s0 = self._df(_NP, eps)
            out = ops.where(x >= 0, self._df(ops, ops.clamp_min0(x) + eps), s0 * ops.ones_like(x))
        return _finish(out, scalar)

    def hess(self, d):
        """Analytic ``U''(d)``; at ``d = 0`` the right-hand value of the bounded families."""
        ops, x, scalar = _prepare(d)
        if self.name == "linear":
            out = 0.0 * x
        elif self.name == "logsigmoid":
            s = self.params["scale"]
            out = -(s * s) * ops.sigmoid(s * x) * ops.sigmoid(-s * x)
        else:
            eps = self.params["eps"]
            out = ops.where(x >= 0, self._d2f(ops, ops.clamp_min0(x) + eps), 0.0 * x)
        return _finish(out, scalar)

    # -- description ----------------------------------------------------------------------------

    def spec(self) -> dict:
        """A plain dict ``{"name": ..., **params}`` accepted by :func:`utility_from_spec`."""
        return {"name": self.name, **self.params}

    def label(self) -> str:
        """Short human-readable label, e.g. ``neg_power(g=1, eps=0.1)``."""
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({inner})" if inner else self.name

    def __repr__(self) -> str:
        return f"Utility({self.label()})"

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))


def get_utility(name: str, **params: Any) -> Utility:
    """Build a utility by registry name (see the module docstring for names and parameters).

    Raises ValueError for an unknown name (suggesting the closest valid one), an unknown or
    missing parameter, or a parameter that is not a finite number > 0.
    """
    family, resolved = _resolve(name, params)
    concave = not (family == "power" and resolved["g"] > 1.0)
    return Utility(
        name=family,
        params=resolved,
        needs_bounded=family in _BOUNDED_FAMILIES or family == "linear",
        concave=concave,
    )


def utility_from_spec(spec: Any) -> Utility:
    """Build a utility from a name (``"inv"``), a mapping (``{"name": "power", "g": 0.5}`` or
    ``{"name": "power", "params": {"g": 0.5}}``) or an existing :class:`Utility` (returned as is)."""
    if isinstance(spec, Utility):
        return spec
    if isinstance(spec, str):
        return get_utility(spec)
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"utility spec needs a 'name' key, got {spec!r}")
        name = spec.pop("name")
        nested = spec.pop("params", None) or {}
        if not isinstance(nested, Mapping):
            raise ValueError(f"utility spec 'params' must be a mapping, got {nested!r}")
        overlap = set(nested) & set(spec)
        if overlap:
            raise ValueError(f"utility spec gives {sorted(overlap)} both inline and under 'params'")
        return get_utility(name, **nested, **spec)
    raise ValueError(f"utility spec must be a name, a mapping or a Utility, got {type(spec).__name__}")
