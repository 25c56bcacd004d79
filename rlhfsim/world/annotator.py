"""Simulated annotators: pairwise preferences among one prompt's completions, from gold plus noise.

    annotate = get_annotator("plackett_luce", temperature=0.05, flip_rate=0.0, ties="keep")
    P = annotate(gold, rng)            # gold [k] -> bool [k, k]; P[a, b] iff a is preferred over b
    Ps = annotate.annotate_groups(G, rng)   # G [n_groups, k] (NaN pads short groups) -> bool [n_groups, k, k]

Every matrix is antisymmetric in the sense that at most one of P[a, b], P[b, a] is set, with a false
diagonal. A pair with neither set carries no label. The steps, in order:
  1 noise model   plackett_luce: one total order per group, sorted by gold/temperature + Gumbel noise
                  (temperature 0: exact sort by gold, ties in random order);
                  bradley_terry: each pair on its own, P(a > b) = sigmoid((g_a - g_b) / temperature).
  2 ties          "keep": pairs with equal gold get no label (real ties leave no pairs, e.g. a group
                  whose completions are all wrong); "break": they get a random direction;
                  "consistent": they get the direction of fixed per-completion keys (`tie_keys`), so the
                  same (prompt, completion) pair is ordered the same way whenever it is seen again.
  3 label flips   each labelled pair is reversed with probability flip_rate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

TIE_ATOL = 1e-12  # gold values this close count as equal (identical texts score identically anyway)


class Annotator(ABC):
    """Shared tie handling, label flips and NaN padding; subclasses supply the noise model."""

    def __init__(self, temperature: float = 0.05, flip_rate: float = 0.0, ties: str = "keep"):
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 <= flip_rate <= 0.5:
            raise ValueError(f"flip_rate must be in [0, 0.5], got {flip_rate}")
        if ties not in ("keep", "break", "consistent"):
            raise ValueError(f"ties must be 'keep', 'break' or 'consistent', got {ties!r}")
        self.temperature, self.flip_rate, self.ties = float(temperature), float(flip_rate), ties

    def __repr__(self) -> str:
        return f"{type(self).__name__}(temperature={self.temperature}, flip_rate={self.flip_rate}, ties={self.ties!r})"

    @abstractmethod
    def _directions(self, gold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Raw preferences before ties and flips: gold [G, k] (finite) -> bool [G, k, k], exactly one
        of P[a, b], P[b, a] set for every a != b."""

    def __call__(self, gold: np.ndarray, rng: np.random.Generator, keys: np.ndarray | None = None) -> np.ndarray:
        """Preferences among one prompt's k completions: gold [k] -> bool [k, k] (keys [k]: see annotate_groups)."""
        gold = np.asarray(gold, dtype=np.float64)
        if gold.ndim != 1:
            raise ValueError(f"gold must be 1-d [k], got shape {gold.shape}; use annotate_groups for [G, k]")
        return self.annotate_groups(gold[None], rng, None if keys is None else np.asarray(keys)[None])[0]

    def annotate_groups(self, gold: np.ndarray, rng: np.random.Generator, keys: np.ndarray | None = None) -> np.ndarray:
        """Preferences for G groups at once: gold [G, k] with NaN for missing completions -> bool [G, k, k].

        A NaN slot takes part in no pair. keys [G, k]: with ties "consistent", the higher key wins an exact
        gold tie (after the noise model); required there, ignored otherwise.
        """
        gold = np.asarray(gold, dtype=np.float64)
        if gold.ndim != 2:
            raise ValueError(f"gold must be 2-d [G, k], got shape {gold.shape}")
        if self.ties == "consistent" and (keys is None or np.shape(keys) != gold.shape):
            raise ValueError(f"ties 'consistent' needs keys of shape {gold.shape} (rlhfsim.world.annotator.tie_keys)")
        valid = ~np.isnan(gold)
        # padding gets a finite stand-in so the noise models need no NaN cases; it is masked below
        P = self._directions(np.where(valid, gold, 0.0), rng)
        both = valid[:, :, None] & valid[:, None, :]
        tie = (np.abs(gold[:, :, None] - gold[:, None, :]) <= TIE_ATOL) & ~np.eye(gold.shape[1], dtype=bool)
        if self.ties == "keep":
            both &= ~tie
        elif self.ties == "consistent":  # exact gold ties follow the keys, whatever the noise model drew
            P = np.where(tie, keys[:, :, None] > keys[:, None, :], P)
        P &= both
        if self.flip_rate > 0:
            k = gold.shape[1]
            upper = np.triu(np.ones((k, k), dtype=bool), 1)
            flip = (rng.random(P.shape) < self.flip_rate) & upper
            flip |= flip.transpose(0, 2, 1)
            P = np.where(flip, P.transpose(0, 2, 1), P)
        return P


class PlackettLuce(Annotator):
    """One total order per group: argsort of gold/temperature + Gumbel (a Plackett-Luce sample with
    weights exp(gold/temperature)); temperature 0 sorts by gold exactly, ties in random order."""

    def _directions(self, gold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.temperature > 0:
            key = gold / self.temperature + rng.gumbel(size=gold.shape)
        else:
            key = gold.copy()
        tiebreak = rng.random(gold.shape)  # orders exact ties (temperature 0, or identical gold)
        gt = key[:, :, None] > key[:, None, :]
        eq = key[:, :, None] == key[:, None, :]
        return gt | (eq & (tiebreak[:, :, None] > tiebreak[:, None, :]))


class BradleyTerry(Annotator):
    """Every pair on its own: P(a > b) = sigmoid((g_a - g_b) / temperature); temperature 0 prefers the
    higher gold for sure, equal gold by a coin flip."""

    def _directions(self, gold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        diff = gold[:, :, None] - gold[:, None, :]  # [G, k, k]
        if self.temperature > 0:
            p = 0.5 * (1.0 + np.tanh(diff / (2.0 * self.temperature)))  # sigmoid without overflow
        else:
            p = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
        k = gold.shape[1]
        upper = np.triu(np.ones((k, k), dtype=bool), 1)
        a_wins = (rng.random(p.shape) < p) & upper  # decide each pair once, on the upper triangle
        b_wins = ~a_wins & upper
        return a_wins | b_wins.transpose(0, 2, 1)


def tie_keys(prompt_texts: list[str], completions: list[str], salt: int) -> np.ndarray:
    """A fixed key in [0, 1) per (prompt, completion) text, salted (e.g. by the run seed): the annotator's
    hidden taste among gold-equal completions under ties "consistent". [N] float64."""
    import hashlib

    out = np.empty(len(completions))
    for i, (p, c) in enumerate(zip(prompt_texts, completions)):
        h = hashlib.blake2b(f"{salt}\x00{p}\x00{c}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "big") / 2.0**64
    return out


ANNOTATORS: dict[str, type[Annotator]] = {"plackett_luce": PlackettLuce, "bradley_terry": BradleyTerry}


def get_annotator(name: str, **params) -> Annotator:
    """The annotator registered as `name`, built with `params` (temperature, flip_rate, ties)."""
    if name not in ANNOTATORS:
        raise ValueError(f"unknown annotator {name!r}; valid names: {sorted(ANNOTATORS)}")
    try:
        return ANNOTATORS[name](**params)
    except TypeError as e:  # an unknown keyword: say which ones exist
        raise ValueError(f"annotator {name!r}: {e}; valid params: temperature, flip_rate, ties") from e
