"""Preference buffer: annotated groups of completions, kept fresh, accumulated, over a window of rounds, or as a
fixed-size sample with an equal share per round (equal_share, prompt_once; issue 36)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlhfsim.world.annotator import tie_keys
from rlhfsim.world.base import Prompt

MODES = ("fresh", "accumulate", "window", "equal_share", "prompt_once")
SAMPLED = ("equal_share", "prompt_once")
SAMPLE_SEED = 3_571  # the equal-share sample of round r: default_rng([seed, SAMPLE_SEED, r])
# the offline set (rlhfsim/reward/offline.py): collected from default_rng([seed, OFFLINE_SEED]), mixed into round r
# from default_rng([seed, OFFLINE_SEED, r])
OFFLINE_SEED = 15_485_863


@dataclass
class Group:
    """One prompt's k completions as the annotator saw them."""

    prompt: Prompt
    completions: list[str]  # k texts
    gold: np.ndarray  # [k] hidden gold reward (kept for diagnostics; never used in training)
    prefs: np.ndarray  # [k, k] bool, prefs[a, b] = a preferred over b
    round: int
    is_reference: list[bool] = field(default_factory=list)  # which completions are the world's reference answer

    @property
    def n_pairs(self) -> int:
        return int(self.prefs.sum())


def annotate_group(
    world,
    annotator,
    prompt: Prompt,
    completions: list[str],
    gold: np.ndarray,
    with_reference: bool,
    rng: np.random.Generator,
    tie_salt: int,
    round_: int,
) -> Group:
    """One prompt's group as the annotator ranks it: its completions [k] with their gold [k], plus the world's
    reference answer when asked (a human-written answer in the set); ties "consistent" read keys salted by tie_salt."""
    comps, g, is_ref = list(completions), np.asarray(gold), [False] * len(completions)
    if with_reference:
        ref = world.reference_completion(prompt)
        comps, g, is_ref = comps + [ref], np.append(g, world.gold([prompt], [ref])), is_ref + [True]
    keys = tie_keys([prompt.text] * len(comps), comps, tie_salt) if annotator.ties == "consistent" else None
    return Group(prompt, comps, g, annotator(g, rng, keys), round_, is_ref)


def equal_shares(total: int, sizes: list[int]) -> list[int]:
    """Groups to draw from each round: sizes [R] (groups available per round, oldest first) -> shares [R] summing to
    min(total, sum(sizes)), as equal as the sizes allow (water-filling: a round short of its share gives the rest to
    the others; a remainder goes to the newest rounds), each share <= its size."""
    shares = [0] * len(sizes)
    remaining = min(int(total), int(sum(sizes)))
    while remaining > 0:
        open_ = [i for i, n in enumerate(sizes) if shares[i] < n]
        base, extra = divmod(remaining, len(open_))
        for j, i in enumerate(open_):
            add = min(base + (j >= len(open_) - extra), sizes[i] - shares[i])
            shares[i] += add
            remaining -= add
    return shares


def equal_share_sample(rounds: dict[int, list], total: int, rng: np.random.Generator, prompt_once: bool) -> list:
    """A fixed-size sample of `total` groups (or all there are), an equal share from each round (`equal_shares`),
    drawn without replacement and returned round by round in buffer order. prompt_once: no prompt (by text) twice;
    rounds pick newest first, each taking an equal part of what is still to draw among the rounds still to pick,
    one group per unused prompt, and a round short of its part leaves the rest to older rounds."""
    order = sorted(rounds)
    picked: dict[int, list[int]] = {}
    if not prompt_once:
        for r, n in zip(order, equal_shares(total, [len(rounds[r]) for r in order])):
            picked[r] = sorted(rng.choice(len(rounds[r]), size=n, replace=False).tolist())
    else:
        used: set[str] = set()
        left = int(total)
        for j, r in enumerate(reversed(order)):
            firsts = {}
            for i, g in enumerate(rounds[r]):  # one candidate group per prompt not used by a newer round
                if g.prompt.text not in used:
                    firsts.setdefault(g.prompt.text, i)
            cand = sorted(firsts.values())
            part = -(-left // (len(order) - j))  # ceil: newer rounds take the remainder
            take = sorted(rng.choice(cand, size=min(part, len(cand)), replace=False).tolist()) if cand else []
            used.update(rounds[r][i].prompt.text for i in take)
            picked[r], left = take, left - len(take)
    return [rounds[r][i] for r in order for i in picked[r]]


class PreferenceBuffer:
    """Rounds of annotated groups; `training_groups()` is what the reward model trains on this round."""

    def __init__(self, mode: str = "accumulate", window: int = 3, total: int | None = None, seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"buffer mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode in SAMPLED and not total:
            raise ValueError(f"buffer mode {mode!r} needs a sample size (loop.buffer_total)")
        self.mode, self.window, self.total = mode, window, total
        self.rounds: dict[int, list[Group]] = {}
        # the offline preference set (rlhfsim.reward.offline), mixed into each round's training groups; rebuilt from
        # its cache at start-up, so it is not part of state_dict
        self.offline: list[Group] = []
        self.offline_mix: float | str = 0.0
        self.seed = seed

    def set_offline(self, groups: list[Group], mix: float | str, seed: int) -> None:
        self.offline, self.offline_mix, self.seed = list(groups), mix, seed

    def add(self, round_: int, groups: list[Group]) -> None:
        self.rounds[round_] = list(groups)
        if self.mode == "fresh":
            self.rounds = {round_: self.rounds[round_]}
        elif self.mode == "window":
            keep = sorted(self.rounds)[-self.window :]
            self.rounds = {r: self.rounds[r] for r in keep}

    def training_groups(self) -> list[Group]:
        """Groups with at least one labelled pair (a group of ties teaches nothing): the buffer's rounds, then the
        offline groups mixed into the latest round (`mix`; none without an offline set)."""
        if self.mode in SAMPLED and self.rounds:  # a fresh sample each round, seeded by (seed, round): resumable
            labelled = {r: [g for g in gs if g.n_pairs > 0] for r, gs in self.rounds.items()}
            rng = np.random.default_rng([self.seed, SAMPLE_SEED, max(self.rounds)])
            online = equal_share_sample(labelled, self.total, rng, self.mode == "prompt_once")
        else:
            online = [g for r in sorted(self.rounds) for g in self.rounds[r] if g.n_pairs > 0]
        if not self.offline or not self.rounds:
            return online
        return online + mix(self.offline, len(online), self.offline_mix, self.seed, max(self.rounds))

    def __len__(self) -> int:
        return sum(len(v) for v in self.rounds.values())

    def pairs(self, round_: int | None = None) -> list[dict]:
        """TRL's explicit-prompt preference rows: {prompt, chosen, rejected} (+ our bookkeeping columns)."""
        rounds = [round_] if round_ is not None else sorted(self.rounds)
        rows = []
        for r in rounds:
            for g in self.rounds.get(r, []):
                for a, b in zip(*np.nonzero(g.prefs)):
                    rows.append(
                        {
                            "prompt": g.prompt.text,
                            "chosen": g.completions[a],
                            "rejected": g.completions[b],
                            "prompt_type": g.prompt.type,
                            "family": g.prompt.family,
                            "round": r,
                        }
                    )
        return rows

    def to_dataset(self, round_: int | None = None):
        """A `datasets.Dataset` in TRL's prompt/chosen/rejected format (RewardTrainer / DPOTrainer input)."""
        from datasets import Dataset

        rows = self.pairs(round_)
        if not rows:
            return Dataset.from_dict(
                {k: [] for k in ("prompt", "chosen", "rejected", "prompt_type", "family", "round")}
            )
        return Dataset.from_list(rows)

    # resume support: plain python containers only (safe to pickle-free JSON)
    def state_dict(self) -> dict:
        def enc(g: Group) -> dict:
            return {
                "prompt": g.prompt.__dict__,
                "completions": g.completions,
                "gold": g.gold.tolist(),
                "prefs": g.prefs.astype(int).tolist(),
                "round": g.round,
                "is_reference": g.is_reference,
            }

        return {
            "mode": self.mode,
            "window": self.window,
            "total": self.total,
            "rounds": {str(r): [enc(g) for g in gs] for r, gs in self.rounds.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.mode, self.window, self.total = state["mode"], state["window"], state.get("total")
        self.rounds = {
            int(r): [
                Group(
                    Prompt(**g["prompt"]),
                    g["completions"],
                    np.array(g["gold"]),
                    np.array(g["prefs"], dtype=bool),
                    g["round"],
                    g["is_reference"],
                )
                for g in gs
            ]
            for r, gs in state["rounds"].items()
        }


def mix(offline: list[Group], n_online: int, ratio, seed: int, round_: int) -> list[Group]:
    """The offline groups mixed into round `round_`'s training: all, or round(ratio * n_online) drawn without
    replacement (at most the whole set), in the set's order, from a stream of (seed, round) alone (resume-safe)."""
    usable = [g for g in offline if g.n_pairs > 0]
    if ratio == "all":
        return usable
    n = min(len(usable), int(round(float(ratio) * n_online)))
    if n == 0:
        return []
    idx = np.sort(np.random.default_rng([seed, OFFLINE_SEED, round_]).choice(len(usable), size=n, replace=False))
    return [usable[i] for i in idx]
