"""The text world: real prompts from a `datasets` dataset, a hidden gold reward from a model or a rule.

    world:
      name: text
      dataset: data/prompts.jsonl        # or a hub name, a .csv/.parquet/.json file, a folder of them
      prompt_column: prompt
      type_column: type                  # or type_rules: {closed: "^(what|who|when|how many)\\b"}
      reference_column: answer           # human-written answers: SFT demos, reference_mix, reference_* rules
      gold: {kind: model, checkpoint: my-org/gold-rm-1b}   # or {kind: rule, rules: {open: length, closed: reference_match}}
                                         # or {kind: classifier, table: labelled.csv} (rlhfsim.world.classifier)

The world's tokenizer is the policy checkpoint's: prompts are formatted for the policy (its chat template where it
has one, else `prompt_template`, with BOS where the tokenizer adds one) and kept as raw text for the reward and gold
models, which read text with their own tokenizers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from rlhfsim.models.scorer import TextScorer
from rlhfsim.real.assets import AssetMissing, cache_root, resolve
from rlhfsim.schema import ConfigError
from rlhfsim.world.base import Prompt, World
from rlhfsim.world.classifier import ClassifierGold
from rlhfsim.world.text_config import GoldClassifierConfig, GoldModelConfig, TextWorldConfig

log = logging.getLogger(__name__)
_MARKUP = re.compile(r"<[^>]+>")  # IMDB's <br /> line breaks
FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_TRAIN_ID_LOW, _TRAIN_ID_HIGH = 2**32, 2**62  # as in the synthetic world: training ids never collide with eval ids


def _local_files(src: str) -> tuple[str, list[str]] | None:
    """(builder, files) for a local file or folder, None for a hub name; ConfigError for a local path that is unusable."""
    path = Path(src).expanduser()
    looks_local = src.startswith((".", "/", "~")) or path.suffix in FORMATS
    if not path.exists():
        if looks_local:
            raise ConfigError(
                f"world.dataset: {src!r} does not exist; give a .json/.jsonl/.csv/.parquet file, a folder of them, or a hub name"
            )
        return None
    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.suffix in FORMATS)
    kinds = {FORMATS.get(f.suffix) for f in files}
    if not files or None in kinds or len(kinds) != 1:
        raise ConfigError(
            f"world.dataset: {src!r} must be one .json/.jsonl/.csv/.parquet file or a folder of files of one of these formats"
        )
    return kinds.pop(), [str(f) for f in files]


def load_split(src: str, config_name: str | None, split: str, field: str = "world.dataset"):
    """A `datasets.Dataset` from local files (one table, `split` unused) or the hub."""
    import datasets

    datasets.disable_progress_bars()
    try:
        src = resolve(src)  # real:<name> -> the installed file
    except AssetMissing as e:
        raise ConfigError(f"{field}: {e}") from None
    local = _local_files(src)
    try:
        if local is not None:
            return datasets.load_dataset(local[0], data_files={"train": local[1]}, split="train")
        return datasets.load_dataset(src, config_name, split=split)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:  # type: ignore[attr-defined]
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{field}: cannot load {src!r} (split {split!r}): {first}") from None


def assign_types(texts: list[str], column: list | None, cfg: TextWorldConfig) -> list[str]:
    """Each prompt's type: from the type column (checked against prompt_types) or the first matching rule."""
    if column is not None:
        types = [str(v) for v in column]
        bad = sorted(set(types) - set(cfg.prompt_types))
        if bad:
            raise ConfigError(
                f"world.type_column {cfg.type_column!r} has values {bad[:5]} outside world.prompt_types {cfg.prompt_types}; "
                "add them to prompt_types or fix the data"
            )
        return types
    rules = [(t, re.compile(p, re.IGNORECASE)) for t, p in cfg.type_rules.items()]
    return [next((t for t, rx in rules if rx.search(x)), cfg.default_type) for x in texts]


# ----------------------------------------------------------------------------- gold rules (pure)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def gold_length(text: str, target: int, decay: float) -> float:
    """min(n / target, 1) for n words, minus `decay` per word beyond the target, clipped to [0, 1]."""
    n = len(text.split())
    return float(np.clip(min(n / target, 1.0) - decay * max(0, n - target), 0.0, 1.0))


def gold_reference_match(text: str, reference: str) -> float:
    """1 iff the completion's words start with the reference's words (case and punctuation ignored)."""
    ref = _words(reference)
    return float(bool(ref) and _words(text)[: len(ref)] == ref)


def gold_reference_f1(text: str, reference: str) -> float:
    """Word-overlap F1 between completion and reference (SQuAD style), in [0, 1]."""
    a, b = _words(text), _words(reference)
    if not a or not b:
        return 0.0
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    if common == 0:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)


# ----------------------------------------------------------------------------- the world


class TextWorld(World):
    """Prompts from a dataset; gold from a gold reward model or a rule. See the module docstring."""

    def __init__(self, cfg: TextWorldConfig, policy_tokenizer=None, device=None, score_batch: int = 256):
        if policy_tokenizer is None:
            raise ConfigError(
                "world.name: text needs policy.checkpoint: prompts are formatted with the policy's tokenizer"
            )
        self.cfg, self.tokenizer = cfg, policy_tokenizer
        self.prompt_types = list(cfg.prompt_types)
        self._adds_bos: bool | None = None
        self._gold_model = self._classifier = None
        if isinstance(cfg.gold, GoldModelConfig):
            self._gold_model = TextScorer(
                cfg.gold.checkpoint,
                cfg.gold.tokenizer,
                cfg.gold.max_length,
                device,
                "world.gold.checkpoint",
                batch_size=score_batch,
                seed=cfg.seed,
            )
        elif isinstance(cfg.gold, GoldClassifierConfig):
            self._classifier = ClassifierGold(cfg.gold, cache_root())
        train = self._table(load_split(cfg.dataset, cfg.config_name, cfg.split))
        if cfg.eval_split is not None:
            src = cfg.eval_split if _local_files_or_none(cfg.eval_split) else cfg.dataset
            evals = self._table(load_split(src, cfg.config_name, cfg.eval_split, "world.eval_split"))
        else:
            order = np.random.default_rng(cfg.seed).permutation(len(train))
            n_eval = max(1, int(round(cfg.eval_fraction * len(train))))
            if len(train) - n_eval < 1:
                raise ConfigError(
                    f"world.dataset: {len(train)} usable prompts cannot be split into train and eval; add data or set eval_split"
                )
            evals, train = [train[i] for i in order[:n_eval]], [train[i] for i in order[n_eval:]]
        if cfg.type_by_gold is not None:
            self._type_by_gold(train + evals)
        self.train, self.evals = train, evals
        self.families = sorted({r["family"] for r in train + evals})

    def _type_by_gold(self, rows: list[dict]) -> None:
        """prompt_types[1] where gold reads the prompt itself at or above type_by_gold, else prompt_types[0].

        Why: with IMDB openings and a sentiment gold, an opening already read as negative leaves a continuation far
        more gold to gain (and the policy a different shape of reward to climb) than one already read as positive,
        so the two types differ in the within-prompt reward spread that prompt-aware utilities and the per-type
        collapse metrics act on."""
        texts = [r["text"] for r in rows]
        score = (
            self._score([""] * len(texts), texts)
            if self._gold_model is None
            else 1.0 / (1.0 + np.exp(-self._gold_model.logits([""] * len(texts), texts)))
        )
        low, high = self.prompt_types
        for r, s in zip(rows, score):
            r["type"] = high if s >= self.cfg.type_by_gold else low
            if self.cfg.family_column is None:
                r["family"] = r["type"]

    def _score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The classifier gold of (prompt, completion) texts."""
        if self.cfg.gold.reads == "completion":
            return self._classifier.prob(completions)
        return self._classifier.prob([p + c for p, c in zip(prompts, completions)])

    # ------------------------------------------------------------------ data

    def format_prompt(self, text: str) -> str:
        """The prompt as the policy sees it: chat template, or prompt_template with the tokenizer's BOS."""
        tok = self.tokenizer
        if self.cfg.chat_template == "auto" and getattr(tok, "chat_template", None):
            return tok.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        body = self.cfg.prompt_template.format(prompt=text)
        if self._adds_bos is None:  # asked once: the world formats every row of a table
            self._adds_bos = tok.bos_token_id is not None and tok("x")["input_ids"][:1] == [tok.bos_token_id]
        return (tok.bos_token + body) if self._adds_bos else body

    def _table(self, ds) -> list[dict]:
        c = self.cfg
        cols = [x for x in (c.prompt_column, c.type_column, c.family_column, c.reference_column) if x is not None]
        missing = [x for x in cols if x not in ds.column_names]
        if missing:
            raise ConfigError(
                f"world: column(s) {missing} not in the dataset {c.dataset!r}, which has {ds.column_names}; "
                "set world.prompt_column / type_column / family_column / reference_column"
            )
        if c.max_rows is not None:
            ds = ds.select(range(min(c.max_rows, len(ds))))
        ds = self._subset(ds)
        texts = [str(x) for x in ds[c.prompt_column]]
        if c.prompt_words is not None:
            texts = [" ".join(_MARKUP.sub(" ", x).split()[: c.prompt_words]) for x in texts]
        types = assign_types(texts, ds[c.type_column] if c.type_column else None, c)
        fams = [str(x) for x in ds[c.family_column]] if c.family_column else types
        refs = (
            [None if x is None else str(x) for x in ds[c.reference_column]]
            if c.reference_column
            else [None] * len(texts)
        )
        rows, dropped = [], 0
        for text, t, f, ref in zip(texts, types, fams, refs):
            shown = self.format_prompt(text)
            n_tok = len(self.tokenizer.encode(shown, add_special_tokens=False))
            if not text.strip() or n_tok > c.max_prompt_tokens:
                dropped += 1
                continue
            rows.append({"text": text, "shown": shown, "type": t, "family": f, "reference": ref, "tokens": n_tok})
        if dropped:
            log.info("text world: dropped %d empty prompts or prompts over %d tokens", dropped, c.max_prompt_tokens)
        if not rows:
            raise ConfigError(
                f"world.dataset {c.dataset!r}: no usable prompt (all empty or over world.max_prompt_tokens = {c.max_prompt_tokens})"
            )
        return rows

    def _subset(self, ds):
        """Rows matching `where`, then a seeded sample of `sample_rows` of them (in table order)."""
        c = self.cfg
        missing = [k for k in c.where if k not in ds.column_names]
        if missing:
            raise ConfigError(
                f"world.where: column(s) {missing} not in the dataset {c.dataset!r}, which has {ds.column_names}"
            )
        keep = np.ones(len(ds), dtype=bool)
        for col, value in c.where.items():
            keep &= np.asarray([v == value for v in ds[col]])
        rows = np.flatnonzero(keep)
        if c.sample_rows is not None and c.sample_rows < len(rows):
            rows = np.sort(np.random.default_rng(c.seed).choice(rows, size=c.sample_rows, replace=False))
        return ds if len(rows) == len(ds) else ds.select(rows.tolist())

    def prompt_lengths(self) -> list[int]:
        return [r["tokens"] for r in self.train + self.evals]

    def _prompt(self, row: dict, pid: int) -> Prompt:
        return Prompt(
            id=pid,
            family=row["family"],
            type=row["type"],
            text=row["text"],
            answer=row["reference"],
            policy_text=row["shown"],
        )

    # ------------------------------------------------------------------ World interface

    def sample_prompts(self, n: int, rng: np.random.Generator) -> list[Prompt]:
        rows = rng.integers(0, len(self.train), size=n)
        ids = rng.integers(_TRAIN_ID_LOW, _TRAIN_ID_HIGH, size=n)
        return [self._prompt(self.train[int(r)], int(i)) for r, i in zip(rows, ids)]

    def eval_prompts(self, n: int) -> list[Prompt]:
        if n > len(self.evals):
            log.warning("text world: %d eval prompts asked for, %d held out; using them all", n, len(self.evals))
        return [self._prompt(r, i) for i, r in enumerate(self.evals[:n])]

    def demonstrations(self, n: int, rng: np.random.Generator) -> list[tuple[Prompt, str]]:
        """(prompt, reference answer) pairs drawn from the training prompts that have one."""
        have = [r for r in self.train if r["reference"]]
        if not have:
            raise ConfigError(
                "SFT: no training prompt has a reference answer in world.reference_column; set policy.sft_demos: 0"
            )
        picks = rng.integers(0, len(have), size=n)
        return [(self._prompt(have[int(i)], int(j)), have[int(i)]["reference"]) for j, i in enumerate(picks)]

    def reference_completion(self, prompt: Prompt) -> str:
        if prompt.answer is None:
            raise ConfigError(
                "loop.reference_mix needs a reference answer for every prompt; some rows of world.reference_column are empty"
            )
        return prompt.answer

    def gold(self, prompts: list[Prompt], completions: list[str]) -> np.ndarray:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        if self._classifier is not None:
            return self._score([p.text for p in prompts], completions)
        if self._gold_model is not None:
            t = self.cfg.gold.temperature
            z = self._gold_model.logits([p.text for p in prompts], completions)
            return 1.0 / (1.0 + np.exp(-z / t))
        g = self.cfg.gold
        out = np.zeros(len(prompts), dtype=np.float64)
        for i, (p, text) in enumerate(zip(prompts, completions)):
            rule = g.rules[p.type]
            if rule == "length":
                out[i] = gold_length(text, g.length_target, g.length_decay)
            elif rule == "reference_match":
                out[i] = gold_reference_match(text, p.answer or "")
            else:
                out[i] = gold_reference_f1(text, p.answer or "")
        return out


def _local_files_or_none(src: str) -> bool:
    try:
        return _local_files(src) is not None
    except ConfigError:
        return True  # a local-looking path: let load_split report it
