"""The reward the policy optimiser sees, as one object (issue 29).

A `Proxy` owns everything between a (prompt, completion) and the number phase 7 trains on:

    source        learned:    the reward-model members (rlhfsim.reward.model), trained in phase 5
                  noisy_gold: gold + sigma * z(seed, prompt, completion), a fixed function (Gao et al.'s controlled
                              proxy: a ranking-quality dial independent of learning); the reward model is not trained
                  gold:       the gold reward itself
    aggregation   members [M, N] -> [N] (reward.aggregation; wco/uwo on per-member standardised values once the
                  loop has set a member scale, reward.standardise_members)
    rounds        reward.across_rounds (rlhfsim.reward.rounds): the members are every round's reward model [R, N]
                  (mean, min) or their parameter average [1, N]; phase 5 adds each round's snapshot (`add_round`)
    recalibration an affine map per prompt type, fitted each round by phase 6c (not for the gold source)
    surgery       per-prompt profile surgery (rlhfsim.reward.surgery), on any source

`score(prompts, texts)` is what the optimiser sees. Everything else is read-only for diagnostics: `values` (the
aggregated source with its members, before recalibration and surgery: what eval/proxy and the audits report),
`diagnostic_logits` / `diagnostic_scores` (what phase 6's agreement and collapse metrics measure). Only the loop
changes a Proxy's state, through the explicit setters (`set_member_scale`, `set_recalibration`, `set_noise_sigma`)
and phase 5's training of `rms`; no diagnostic writes to it.

For the gold source, `values` and the diagnostics read the (untrained) reward models, as they always have, so the
gold arm's eval/proxy and rm/* columns keep their meaning (an untrained model beside the truth).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import ndtri

from rlhfsim.diagnostics.advantage import within_prompt_rank_corr
from rlhfsim.reward import recalibrate, surgery
from rlhfsim.reward.ensemble import aggregate, member_scale
from rlhfsim.reward.rounds import RoundRewards

log = logging.getLogger(__name__)
SOURCES = ("learned", "noisy_gold", "gold")


# ------------------------------------------------------------------ noisy gold


def hashed_normal(seed: int, prompts: Sequence[str], texts: Sequence[str], draw: int = 0) -> np.ndarray:
    """[N] standard normals, each a fixed function of (seed, draw, prompt text, completion text).

    A stable hash (blake2b, not Python's salted hash()) -> 53 uniform bits -> the normal quantile, so the same
    completion of the same prompt always gets the same value, in any batch, process or resumed run: the proxy
    behaves like a frozen reward model. `draw` > 0 gives independent replicates (for calibration)."""
    if len(prompts) != len(texts):
        raise ValueError(f"{len(prompts)} prompts but {len(texts)} completions")
    bits = np.empty(len(texts), dtype=np.float64)
    for i, (p, t) in enumerate(zip(prompts, texts)):
        key = json.dumps([int(seed), int(draw), p, t]).encode()  # JSON: no separator can be forged by the texts
        h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
        bits[i] = ((h >> 11) + 0.5) / 2.0**53  # in (0, 1), never 0 or 1
    return ndtri(bits)


def expected_rank_corr(gold: np.ndarray, noise: np.ndarray, sigma: float) -> float:
    """Mean over noise draws of the within-prompt Spearman rho of gold + sigma * noise against gold.

    gold [P, k]; noise [D, P, k] standard normals (the same draws for every sigma, so the curve is smooth enough
    to bisect). The measure is rlhfsim.diagnostics.advantage.within_prompt_rank_corr: prompts whose gold is
    constant (a closed prompt answered wrong k times) are skipped."""
    return float(np.nanmean([within_prompt_rank_corr(gold + sigma * z, gold) for z in noise]))


def calibrate_sigma(gold: np.ndarray, noise: np.ndarray, target: float, iters: int = 30) -> tuple[float, float, bool]:
    """(sigma, expected rho at sigma, reached) with expected_rank_corr(gold, noise, sigma) ~= target, by bisection.

    Bisection on log sigma between 1e-4 and 1e2 times gold's within-prompt std (the rho curve falls from its
    tie-limited ceiling to about 0 over that range). Ties in gold cap what is reachable: any noise breaks a gold
    tie at random, and a random order within a tie counts against Spearman, so rho(sigma -> 0+) < 1 whenever gold
    has ties (e.g. about 0.77 for a closed prompt with one right answer in 4). A target above that ceiling (or
    below the curve's far end) is clamped to the nearest end and `reached` is False."""
    G = np.asarray(gold, dtype=np.float64)
    spread = float(np.nanmean(np.std(G, axis=1)))
    if not spread > 0:
        raise ValueError("noisy_gold calibration: gold is constant within every prompt; no ranking to degrade")
    lo, hi = np.log(1e-4 * spread), np.log(1e2 * spread)
    rho_lo, rho_hi = (expected_rank_corr(G, noise, float(np.exp(b))) for b in (lo, hi))
    if target >= rho_lo:
        return float(np.exp(lo)), rho_lo, bool(np.isclose(target, rho_lo))
    if target <= rho_hi:
        return float(np.exp(hi)), rho_hi, bool(np.isclose(target, rho_hi))
    for _ in range(iters):  # the curve decreases in sigma: keep rho(lo) > target > rho(hi)
        mid = 0.5 * (lo + hi)
        if expected_rank_corr(G, noise, float(np.exp(mid))) > target:
            lo = mid
        else:
            hi = mid
    sigma = float(np.exp(0.5 * (lo + hi)))
    return sigma, expected_rank_corr(G, noise, sigma), True


# ------------------------------------------------------------------ the proxy


class Proxy:
    """The optimiser's reward: source, members, aggregation, member scaling, recalibration and surgery (module doc).

    rms: the reward-model members (rlhfsim.reward.model.MemberRewards; built for every source, trained only for
    learned); gold: the world's gold function (prompts, texts) -> [N]; cfg: the run config (reward, surgery, seed,
    loop.reward_source, loop.noisy_gold). The noisy_gold source needs a sigma before it scores: the config's, or one
    the loop calibrates at run start (`set_noise_sigma`)."""

    def __init__(self, cfg, rms, gold: Callable[[Sequence, Sequence[str]], np.ndarray]):
        self.source = cfg.loop.reward_source
        if self.source not in SOURCES:
            raise ValueError(f"unknown reward source {self.source!r}; valid: {list(SOURCES)}")
        self.rms, self._gold = rms, gold
        self.seed = cfg.seed
        self.reward_cfg, self.surgery_cfg = cfg.reward, cfg.surgery
        self.member_scale = None  # per-member (mu, sd) for wco/uwo; None = raw members (set each round in phase 6)
        self.recal: dict | None = None  # this round's recalibration maps (phase 6c); None = the values as they are
        self.sigma: float | None = cfg.loop.noisy_gold.sigma if self.source == "noisy_gold" else None
        self.rounds = None  # reward.across_rounds other than last: every round's reward model (rlhfsim.reward.rounds)
        if cfg.reward.across_rounds != "last":
            self.rounds = RoundRewards(cfg.reward.across_rounds)

    # -------------------------------------------------------------- the loop's setters

    def set_member_scale(self, scale) -> None:
        """(mu [M], sd [M]) of the members on a fixed probe set (rlhfsim.reward.ensemble.member_scale), or None."""
        self.member_scale = scale

    def set_recalibration(self, params: dict | None) -> None:
        """{key: (scale, shift)} from rlhfsim.reward.recalibrate, or None (no map)."""
        if params and self.source == "gold":
            raise ValueError("the gold source is not recalibrated")
        self.recal = params

    def set_noise_sigma(self, sigma: float) -> None:
        if self.source != "noisy_gold":
            raise ValueError(f"a noise sigma belongs to the noisy_gold source, not {self.source!r}")
        if not sigma >= 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def add_round(self, round_: int) -> None:
        """Phase 5, after training: keep this round's reward model for reward.across_rounds (no-op for last)."""
        if self.rounds is not None:
            self.rounds.add(round_, self.rms)

    def fit_member_scale(self, prompts, texts: Sequence[str]):
        """(mu [M], sd [M]) of the reward-model members on a probe set, for reward.standardise_members with several
        members (across_rounds min: of the R rounds' models, one or more); None otherwise (and for noisy_gold, one
        member). Computes only: set it with set_member_scale."""
        if self.source == "noisy_gold" or not self.reward_cfg.standardise_members:
            return None
        if self.rounds is not None:
            return (
                member_scale(self.rounds.rewards([p.text for p in prompts], texts))
                if self.rounds.mode == "min"
                else None
            )
        if self.rms.n_members < 2:
            return None
        return member_scale(self.rms.rewards([p.text for p in prompts], texts))

    # -------------------------------------------------------------- what the optimiser sees

    def score(self, prompts, texts: Sequence[str]) -> np.ndarray:
        """[N] the optimiser's reward: the source (aggregated, recalibrated) with the configured surgery."""
        gold = _Lazy(lambda: self._gold(prompts, texts))  # computed at most once per call
        if self.source == "gold":
            scores = gold()
        else:
            scores = recalibrate.apply(self.recal, self.values(prompts, texts, gold)[0], [p.type for p in prompts])
        # profile surgery (off by default): keep each prompt's ranking, move its values toward one profile
        return surgery.apply(self.surgery_cfg, prompts, scores, gold, self.reward_cfg.utility)

    # -------------------------------------------------------------- read-only views for diagnostics

    def members(self, prompts, texts: Sequence[str], gold: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        """[M, N] member rewards on the trained scale (noisy_gold: one member, the noisy values; across_rounds: the
        rounds' models [R, N], or their parameter average [1, N])."""
        if self.source == "noisy_gold":
            g = gold() if gold is not None else self._gold(prompts, texts)
            return self.noisy(prompts, texts, g)[None]
        if self.rounds is not None and self.source == "learned":
            return self.rounds.rewards([p.text for p in prompts], texts)
        return self.rms.rewards([p.text for p in prompts], texts)

    def aggregate(self, members: np.ndarray) -> np.ndarray:
        """[M, N] -> [N] with reward.aggregation and this round's member scale."""
        R = self.reward_cfg
        how = self.rounds.aggregation if self.rounds is not None and self.source == "learned" else R.aggregation
        return np.asarray(aggregate(members, how, R.uwo_lambda, self.member_scale))

    def values(
        self, prompts, texts: Sequence[str], gold: Callable[[], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(aggregated source values [N], member values [M, N]): before recalibration and surgery."""
        members = self.members(prompts, texts, gold)
        return self.aggregate(members), members

    def noisy(self, prompts, texts: Sequence[str], gold: np.ndarray) -> np.ndarray:
        """[N] gold + sigma * z(seed, prompt, completion) for the noisy_gold source."""
        if self.sigma is None:
            raise RuntimeError(
                "the noisy_gold proxy has no sigma yet: set loop.noisy_gold.sigma, or calibrate it "
                "(rlhfsim.loop calls set_noise_sigma at run start)"
            )
        z = hashed_normal(self.seed, [p.text for p in prompts], texts)
        return np.asarray(gold, dtype=np.float64) + self.sigma * z

    @property
    def diagnostic_bounded(self) -> bool:
        """Whether diagnostic_logits are logits of bounded (sigmoid) rewards; the noisy values are used as they are."""
        return False if self.source == "noisy_gold" else self.rms.bounded

    def diagnostic_logits(self, prompts, texts: Sequence[str]) -> np.ndarray:
        """[M, N] what phase 6's agreement and collapse metrics measure: the reward models' logits (learned, and
        gold as before: its untrained models), or the noisy_gold proxy itself [1, N] (its ranking quality)."""
        if self.source == "noisy_gold":
            return self.members(prompts, texts)
        return self.rms.logits([p.text for p in prompts], texts)

    def diagnostic_scores(self, prompts, texts: Sequence[str]) -> np.ndarray:
        """[N] the member mean of diagnostic_logits."""
        return self.diagnostic_logits(prompts, texts).mean(0)


class _Lazy:
    """A zero-argument callable that computes its value on the first call and keeps it."""

    def __init__(self, fn: Callable[[], np.ndarray]):
        self.fn, self.done, self.value = fn, False, None

    def __call__(self) -> np.ndarray:
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


def calibrate_noisy_gold(
    proxy: Proxy, prompts, texts: Sequence[str], gold: np.ndarray, target: float | None, draws: int
) -> tuple[float, dict]:
    """(sigma, round-0 metrics) for the noisy_gold source on the SFT policy's held-out samples.

    prompts [P*k] (prompt-major), texts [P*k], gold [P, k]. With a target rho, sigma is bisected so the expected
    within-prompt Spearman over `draws` noise replicates (draw 0 being the proxy's own noise) equals it; without
    one the proxy's configured sigma stays. Returns the sigma and proxy/noisy_gold_* metrics; sets nothing."""
    G = np.asarray(gold, dtype=np.float64)
    names = [p.text for p in prompts]
    noise = np.stack([hashed_normal(proxy.seed, names, texts, draw=d).reshape(G.shape) for d in range(draws)])
    out = {}
    if target is not None:
        sigma, expected, reached = calibrate_sigma(G, noise, target)
        if not reached:
            log.warning(
                "noisy_gold: target within-prompt rho %.3f is out of reach on this world's SFT samples "
                "(gold ties cap it); using sigma %.3g, expected rho %.3f",
                target,
                sigma,
                expected,
            )
        out["proxy/noisy_gold_rho_expected"] = expected
    else:
        sigma = proxy.sigma
    out["proxy/noisy_gold_sigma"] = sigma
    out["proxy/noisy_gold_rho_sft"] = within_prompt_rank_corr(G + sigma * noise[0], G)  # the proxy's own values
    return sigma, out
