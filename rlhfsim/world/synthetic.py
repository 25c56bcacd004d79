"""The synthetic world: small additions, hidden facts, and "write about <topic>".

Three prompt families over a vocabulary of about 125 words, so tiny models learn them in minutes:

    add   "add 3 5 ="          closed: the one right answer is "8"          gold 1 or 0
    fact  "fact e12 ="         closed: a value "v<j>" from a hidden table   gold 1 or 0
    open  "write about ocean"  open: graded on topic, diversity and length  gold in [0, 1]

The open-prompt gold has a length optimum, so a reward model that learns "longer is better" from
early (short) completions is right only up to the optimum: room for Goodhart. Demonstrations are
deliberately noisy (near-miss sums, wrong facts, open texts of mixed quality) so that the SFT policy
starts with a real spread of quality.
"""

from __future__ import annotations

import numpy as np

from rlhfsim.world.base import Prompt, World
from rlhfsim.world.config import FILLER_POOL, OPEN_DEMO_KINDS, SHIFTS, TOPIC_POOL, SyntheticWorldConfig  # noqa: F401  (re-exported)
from rlhfsim.world.tokenizer import build_word_tokenizer

PROMPT_WORDS = ("add", "fact", "write", "about", "=")
FAMILY_TYPE = {"add": "closed", "fact": "closed", "open": "open"}
_TRAIN_ID_LOW, _TRAIN_ID_HIGH = 2**32, 2**62  # training ids never collide with eval ids 0..n-1


class SyntheticWorld(World):
    """The synthetic world built from a `SyntheticWorldConfig`; stateless apart from its seed-fixed tables.

    Gold rewards (completion words w_1..w_n, split on whitespace):
      add / fact: 1.0 iff the words are exactly [answer], else 0.0 (a stray word after the answer is wrong).
      open:       0.0 if n = 0, else  topic**a * diversity**b * length**c  with
                    topic     = share of words in the prompt topic's set (its name + its words);
                                filler, numbers and other topics' words are off topic
                    diversity = distinct words / n
                    length    = n / L*                           for n <= L*  (L* = open_length_optimum)
                              = max(0, 1 - decay * (n - L*))     for n >  L*
                    (a, b, c) = (open_w_topic, open_w_diversity, open_w_length).
    The product makes every failure costly: a long repetitive text ("wave wave wave ...") scores far below
    a moderate, diverse on-topic answer, and padding with filler lowers both topic share and diversity.
    """

    prompt_types = ["open", "closed"]
    families = ["add", "fact", "open"]
    # eval_prompts(n, shift=...): distributions the training stream never shows (see `shifted_prompt`)
    shifts = list(SHIFTS)

    def __init__(self, cfg: SyntheticWorldConfig | None = None):
        self.cfg = cfg = cfg if cfg is not None else SyntheticWorldConfig()
        topic_rng = np.random.default_rng([cfg.seed, 0])
        facts_rng = np.random.default_rng([cfg.seed, 1])
        names = sorted(topic_rng.choice(len(TOPIC_POOL), cfg.n_topics, replace=False))
        pool = list(TOPIC_POOL.items())
        # topic name -> its words (order kept from the pool so texts read naturally)
        self.topics: dict[str, list[str]] = {
            pool[i][0]: [
                pool[i][1][j] for j in sorted(topic_rng.choice(len(pool[i][1]), cfg.words_per_topic, replace=False))
            ]
            for i in names
        }
        self.topic_sets: dict[str, frozenset[str]] = {t: frozenset([t, *ws]) for t, ws in self.topics.items()}
        self.fillers = list(FILLER_POOL[: cfg.n_filler])
        self.entities = [f"e{i}" for i in range(cfg.n_facts)]
        self.values = [f"v{j}" for j in range(cfg.n_fact_values)]
        drawn = facts_rng.integers(cfg.n_fact_values, size=cfg.n_facts)
        self.fact_table: dict[str, str] = {e: self.values[j] for e, j in zip(self.entities, drawn)}  # entity -> value
        self.numbers = [str(i) for i in range(2 * cfg.max_operand + 1)]
        self.vocab: list[str] = [
            *PROMPT_WORDS, *self.numbers, *self.entities, *self.values, *self.topics,
            *(w for ws in self.topics.values() for w in ws), *self.fillers,
        ]  # fmt: skip
        self.tokenizer = build_word_tokenizer(self.vocab)
        self.family_mix = np.array([cfg.add_frac, cfg.fact_frac, cfg.open_frac])
        self.max_completion_words: int = cfg.max_demo_words  # longest demonstration; a hint for response_len

    # ------------------------------------------------------------------ prompts

    def make_prompt(self, family: str, rng: np.random.Generator, id: int) -> Prompt:
        """One prompt of `family` with content drawn from `rng` (held-out topics and entities excluded)."""
        if family == "add":
            a, b = (int(x) for x in rng.integers(0, self.cfg.max_operand + 1, size=2))
            return Prompt(id, "add", "closed", f"add {a} {b} =", answer=str(a + b))
        if family == "fact":
            e = self.entities[rng.integers(len(self.entities) - self.cfg.holdout_facts)]
            return Prompt(id, "fact", "closed", f"fact {e} =", answer=self.fact_table[e])
        if family == "open":
            t = list(self.topics)[rng.integers(len(self.topics) - self.cfg.holdout_topics)]
            return Prompt(id, "open", "open", f"write about {t}", topic=t)
        raise ValueError(f"unknown family {family!r}; this world has {self.families}")

    def shifted_prompt(self, shift: str, rng: np.random.Generator, id: int) -> Prompt:
        """One prompt from a distribution the training stream never shows.

        operands: an addition with one operand above max_operand (the sum stays inside the vocabulary's numbers);
        topics / facts: an open prompt on a held-out topic / a look-up of a held-out entity (need world.holdout_*).
        """
        c = self.cfg
        if shift == "operands":
            top = 2 * c.max_operand
            a = int(rng.integers(c.max_operand + 1, top + 1))
            b = int(rng.integers(0, top - a + 1))
            a, b = (a, b) if rng.random() < 0.5 else (b, a)
            return Prompt(id, "add", "closed", f"add {a} {b} =", answer=str(a + b))
        if shift in ("topics", "facts"):
            held = c.holdout_topics if shift == "topics" else c.holdout_facts
            if held == 0:
                raise ValueError(
                    f"eval shift {shift!r} needs world.holdout_{shift} >= 1 (nothing is held out of training)"
                )
            if shift == "facts":
                e = self.entities[len(self.entities) - held + int(rng.integers(held))]
                return Prompt(id, "fact", "closed", f"fact {e} =", answer=self.fact_table[e])
            t = list(self.topics)[len(self.topics) - held + int(rng.integers(held))]
            return Prompt(id, "open", "open", f"write about {t}", topic=t)
        raise ValueError(f"unknown eval shift {shift!r}; this world has {self.shifts}")

    def sample_prompts(self, n: int, rng: np.random.Generator) -> list[Prompt]:
        """n training prompts; families drawn i.i.d. from the config mix.

        Ids are drawn from `rng` in [2**32, 2**62): disjoint from eval ids, unique with overwhelming
        probability, and reproduced by a resumed run (the world keeps no counter).
        """
        fams = rng.choice(len(self.families), size=n, p=self.family_mix)
        ids = rng.integers(_TRAIN_ID_LOW, _TRAIN_ID_HIGH, size=n)
        return [self.make_prompt(self.families[f], rng, int(i)) for f, i in zip(fams, ids)]

    def eval_prompts(self, n: int, shift: str | None = None) -> list[Prompt]:
        """The fixed held-out set: ids 0..n-1, family counts stratified by the mix, drawn from the world seed.

        shift: one of `shifts` for a shifted set instead (every prompt from that distribution; own seed stream).
        """
        if shift is not None:
            rng = np.random.default_rng([self.cfg.seed, 3, self.shifts.index(shift) if shift in self.shifts else 99])
            return [self.shifted_prompt(shift, rng, i) for i in range(n)]
        rng = np.random.default_rng([self.cfg.seed, 2])
        raw = self.family_mix * n
        counts = np.floor(raw).astype(int)
        # largest remainders get the leftover prompts, so counts sum to n and track the mix exactly
        counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
        fams = rng.permutation(np.repeat(np.arange(len(self.families)), counts))
        return [self.make_prompt(self.families[f], rng, i) for i, f in enumerate(fams)]

    # ------------------------------------------------------------------ truth

    def answer(self, prompt: Prompt) -> str:
        """The right answer of a closed prompt, recomputed from its text (the world is the authority)."""
        words = prompt.text.split()
        if prompt.family == "add":
            return str(int(words[1]) + int(words[2]))
        if prompt.family == "fact":
            return self.fact_table[words[1]]
        raise ValueError(f"prompt family {prompt.family!r} has no single answer")

    def topic_of(self, prompt: Prompt) -> str:
        return prompt.topic if prompt.topic is not None else prompt.text.split()[-1]

    def open_gold(self, topic: str, words: list[str]) -> float:
        """Gold of an open completion (formula in the class docstring)."""
        n = len(words)
        if n == 0:
            return 0.0
        c = self.cfg
        on = sum(w in self.topic_sets[topic] for w in words) / n
        div = len(set(words)) / n
        opt = c.open_length_optimum
        length = n / opt if n <= opt else max(0.0, 1.0 - c.open_length_decay * (n - opt))
        return float(on**c.open_w_topic * div**c.open_w_diversity * length**c.open_w_length)

    def gold(self, prompts: list[Prompt], completions: list[str]) -> np.ndarray:
        """Gold reward, float64 [N] in [0, 1]; completions are space-separated words without special tokens."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        out = np.zeros(len(prompts), dtype=np.float64)
        for i, (p, text) in enumerate(zip(prompts, completions)):
            words = text.split()
            if p.family == "open":
                out[i] = self.open_gold(self.topic_of(p), words)
            elif p.family in ("add", "fact"):
                out[i] = float(words == [self.answer(p)])
            else:
                raise ValueError(f"unknown family {p.family!r}; this world has {self.families}")
        return out

    def reference_completion(self, prompt: Prompt) -> str:
        """The right answer (closed) or the topic's first `open_length_optimum` on-topic words (open, gold 1)."""
        if prompt.family == "open":
            t = self.topic_of(prompt)
            return " ".join([t, *self.topics[t]][: self.cfg.open_length_optimum])
        return self.answer(prompt)

    # ------------------------------------------------------------------ demonstrations

    def demonstrations(self, n: int, rng: np.random.Generator) -> list[tuple[Prompt, str]]:
        """n noisy (prompt, completion) pairs: families from the mix, quality from the demo_* fields."""
        return [(p, self.demo_completion(p, rng)) for p in self.sample_prompts(n, rng)]

    def demo_completion(self, prompt: Prompt, rng: np.random.Generator) -> str:
        c = self.cfg
        if prompt.family == "open":
            kind = OPEN_DEMO_KINDS[
                rng.choice(len(OPEN_DEMO_KINDS), p=[getattr(c, f"demo_open_{k}") for k in OPEN_DEMO_KINDS])
            ]
            return " ".join(self.open_demo(self.topic_of(prompt), kind, rng))
        right = self.answer(prompt)
        if prompt.family == "add":
            ans = right if rng.random() < c.p_correct_add else self.near_miss(int(right), rng)
        else:
            wrong = [v for v in self.values if v != right]
            ans = right if rng.random() < c.p_correct_fact else wrong[rng.integers(len(wrong))]
        words = [ans]
        if rng.random() < c.closed_junk_rate:
            stray = self.fillers + [w for ws in self.topics.values() for w in ws]
            words += [stray[i] for i in rng.integers(len(stray), size=rng.integers(1, 3))]
        return " ".join(words)

    def near_miss(self, total: int, rng: np.random.Generator) -> str:
        """A wrong sum total +-1..near_miss_spread, kept inside the vocabulary's numbers."""
        top = 2 * self.cfg.max_operand
        options = [
            total + s * d for d in range(1, self.cfg.near_miss_spread + 1) for s in (-1, 1) if 0 <= total + s * d <= top
        ]
        return str(options[rng.integers(len(options))])

    def open_demo(self, topic: str, kind: str, rng: np.random.Generator) -> list[str]:
        """Words of one open demonstration of a quality `kind` (see OPEN_DEMO_KINDS)."""
        c = self.cfg
        own = [topic, *self.topics[topic]]
        opt, top = c.open_length_optimum, c.max_demo_words

        def distinct(k: int) -> list[str]:
            # distinct on-topic words as long as they last, then repeats
            return [str(w) for w in np.resize(rng.permutation(own), k)]

        if kind == "good":
            return distinct(int(rng.integers(max(1, opt - 1), min(opt + 1, len(own), top) + 1)))
        if kind == "short":
            return distinct(int(rng.integers(1, max(1, opt // 2) + 1)))
        if kind == "long":
            return distinct(int(rng.integers(min(opt + 2, top), top + 1)))
        if kind == "repetitive":
            base = rng.choice(own, size=int(rng.integers(1, 3)), replace=False)
            return [str(w) for w in np.resize(base, int(rng.integers(opt, top + 1)))]
        if kind == "offtopic":
            others = self.fillers + [w for t, ws in self.topics.items() if t != topic for w in ws]
            k = int(rng.integers(max(1, opt - 2), min(opt + 1, top) + 1))
            if not others:
                return distinct(k)
            return [
                own[rng.integers(len(own))] if rng.random() < 0.5 else others[rng.integers(len(others))]
                for _ in range(k)
            ]
        raise ValueError(f"unknown open demo kind {kind!r}; valid: {OPEN_DEMO_KINDS}")
