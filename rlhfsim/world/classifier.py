"""Gold from a classifier fitted on a labelled table (world.gold kind `classifier`): P(positive label) of a text.

    gold: {kind: classifier, table: "real:imdb", where: {source: imdb}, text_column: text, label_column: label, positive: 1}

The fit is deterministic (seeded hold-out split, a convex model) and cached by the table's checksum, the fit's
settings and the scikit-learn version, so every run and sweep job scores with the same function. A bag-of-words gold
is deliberate: a transformer proxy can approach it but not copy it, so proxy and gold disagree the way a learned reward
model and the preference it stands for do. scikit-learn is imported only here, only when a classifier gold is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from pathlib import Path

import numpy as np

from rlhfsim.real.assets import AssetMissing, resolve, sha256
from rlhfsim.schema import ConfigError

log = logging.getLogger(__name__)
_TAGS = re.compile(r"<[^>]+>")


def clean(text: str) -> str:
    """Lower case, markup (IMDB's <br />) as spaces: the classifier's preprocessor (module level, so it pickles)."""
    return _TAGS.sub(" ", text).lower()


def _tfidf_logreg(texts: list[str], labels: np.ndarray, cfg, seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    vec = TfidfVectorizer(
        preprocessor=clean, ngram_range=(1, cfg.ngram_max), min_df=2, max_features=cfg.max_features, sublinear_tf=True
    )
    model = make_pipeline(vec, LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed))
    return model.fit(texts, labels)


CLASSIFIERS = {
    "tfidf_logreg": _tfidf_logreg
}  # name -> fit(texts, labels in {0, 1}, cfg, seed); text_config.CLASSIFIER_NAMES


def read_table(cfg, field: str = "world.gold.table"):
    """The labelled table as a pandas DataFrame, filtered by `where`; ConfigError naming the field on any problem."""
    import pandas as pd

    try:
        path = Path(resolve(cfg.table))
    except AssetMissing as e:
        raise ConfigError(f"{field}: {e}") from None
    readers = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".json": pd.read_json,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }
    if path.suffix not in readers or not path.is_file():
        raise ConfigError(f"{field}: {cfg.table!r} must be a .csv/.parquet/.json/.jsonl file")
    df = readers[path.suffix](path)
    missing = [c for c in (cfg.text_column, cfg.label_column, *cfg.where) if c not in df.columns]
    if missing:
        raise ConfigError(f"{field}: column(s) {missing} not in {cfg.table!r}, which has {list(df.columns)}")
    for col, value in cfg.where.items():
        df = df[df[col] == value]
    if len(df) < 20 or df[cfg.label_column].nunique() < 2:
        raise ConfigError(
            f"{field}: {len(df)} rows with {df[cfg.label_column].nunique()} label value(s) after `where`; need 20+ rows of 2+ labels"
        )
    if cfg.positive not in set(df[cfg.label_column]):
        raise ConfigError(
            f"world.gold.positive: {cfg.positive!r} is not a value of {cfg.label_column!r} in the table "
            f"(values {sorted(set(df[cfg.label_column]), key=str)[:10]})"
        )
    return df.reset_index(drop=True), path


def cache_key(cfg, table_path: Path) -> str:
    import sklearn

    fields = cfg.model_dump(mode="json", exclude={"table", "reads", "temperature"})
    blob = json.dumps(
        {"table": sha256(table_path), "fit": fields, "sklearn": sklearn.__version__, "v": 1}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit(cfg, cache_dir: Path) -> tuple[object, dict]:
    """(fitted model, stats) from the cache, or fitted now and cached. stats: held-out accuracy, rows, seconds."""
    import time

    df, path = read_table(cfg)
    out = cache_dir / f"gold-{cfg.model}-{cache_key(cfg, path)}"
    if (out / "stats.json").exists():
        with open(out / "model.pkl", "rb") as f:
            return pickle.load(f), {**json.loads((out / "stats.json").read_text()), "cached": 1}
    t0 = time.perf_counter()
    order = np.random.default_rng(cfg.seed).permutation(len(df))
    n_hold = int(round(cfg.holdout_fraction * len(df)))
    hold, train = df.iloc[order[:n_hold]], df.iloc[order[n_hold:]]
    y = lambda part: (part[cfg.label_column] == cfg.positive).to_numpy(dtype=np.int64)
    model = CLASSIFIERS[cfg.model](train[cfg.text_column].astype(str).tolist(), y(train), cfg, cfg.seed)
    acc = (
        float((model.predict(hold[cfg.text_column].astype(str).tolist()) == y(hold)).mean()) if n_hold else float("nan")
    )
    stats = {
        "heldout_accuracy": acc,
        "train_rows": len(train),
        "heldout_rows": n_hold,
        "fit_s": time.perf_counter() - t0,
        "cached": 0,
    }
    log.info("gold classifier %s: held-out accuracy %.3f on %d rows (%.0f s)", cfg.model, acc, n_hold, stats["fit_s"])
    _save(out, model, stats)
    return model, stats


def _save(out: Path, model, stats: dict) -> None:
    """Write into a temporary sibling and rename: concurrent sweep jobs never read a half-written fit."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    with open(tmp / "model.pkl", "wb") as f:
        pickle.dump(model, f, protocol=5)
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
    try:
        os.replace(tmp, out)
    except OSError:  # another process got there first: theirs is the same fit
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


class ClassifierGold:
    """P(positive) of texts under the fitted classifier, sharpened or flattened by `temperature` on the logit."""

    def __init__(self, cfg, cache_dir: Path):
        self.cfg = cfg
        self.model, self.stats = fit(cfg, cache_dir)
        self._pos = list(self.model.classes_).index(1)

    def prob(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        p = self.model.predict_proba(list(texts))[:, self._pos].astype(np.float64)
        if self.cfg.temperature == 1.0:
            return p
        z = np.log(np.clip(p, 1e-12, 1)) - np.log(np.clip(1 - p, 1e-12, 1))
        return 1.0 / (1.0 + np.exp(-z / self.cfg.temperature))
