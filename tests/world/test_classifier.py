"""world.gold kind `classifier`: a classifier fitted on a small labelled table (fit, cache, errors), and a text world
that takes review openings from it and types them by gold (needs scikit-learn, a dev extra)."""

import re

import numpy as np
import pandas as pd
import pytest

from rlhfsim.config import ConfigError, config_from_dict
from rlhfsim.models.hf import load_tokenizer
from rlhfsim.world import build_world
from rlhfsim.world.text_config import CLASSIFIER_NAMES, GoldClassifierConfig, TextWorldConfig

pytest.importorskip("sklearn")

from rlhfsim.world.classifier import CLASSIFIERS, ClassifierGold, fit  # noqa: E402

GOOD = ["great", "wonderful", "loved", "superb", "moving"]
BAD = ["awful", "boring", "hated", "dull", "terrible"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """200 'reviews': positive ones use GOOD words, negative ones BAD words, both some neutral filler and markup."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        label = i % 2
        words = list(rng.choice(GOOD if label else BAD, 3)) + list(
            rng.choice(["film", "plot", "actor", "scene", "the"], 5)
        )
        rng.shuffle(words)
        rows.append(
            {
                "review": "This movie<br /><br />" + " ".join(words),
                "sentiment": "pos" if label else "neg",
                "source": "a" if i < 160 else "b",
            }
        )
    path = tmp_path_factory.mktemp("table") / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def gold_cfg(table, **kw):
    return GoldClassifierConfig(
        **{
            "table": table,
            "text_column": "review",
            "label_column": "sentiment",
            "positive": "pos",
            "max_features": 100,
            "holdout_fraction": 0.25,
            **kw,
        }
    )


def test_registry_matches_the_config_names():
    assert set(CLASSIFIERS) == set(CLASSIFIER_NAMES)


def test_fit_scores_sentiment_and_is_cached(table, tmp_path):
    cfg = gold_cfg(table, where={"source": "a"})
    gold = ClassifierGold(cfg, tmp_path)
    assert gold.stats["cached"] == 0 and gold.stats["train_rows"] == 120 and gold.stats["heldout_rows"] == 40
    assert gold.stats["heldout_accuracy"] >= 0.9
    p = gold.prob(["a wonderful superb film", "an awful boring film", ""])
    assert p[0] > 0.7 > 0.3 > p[1] and 0 <= p[2] <= 1
    again = ClassifierGold(cfg, tmp_path)
    assert again.stats["cached"] == 1 and np.array_equal(again.prob(["a wonderful superb film"]), p[:1])
    other = ClassifierGold(gold_cfg(table, where={"source": "a"}, C=0.01), tmp_path)  # other settings: another fit
    assert other.stats["cached"] == 0
    sharp = ClassifierGold(gold_cfg(table, where={"source": "a"}, temperature=0.5), tmp_path)  # same fit, sharper
    assert sharp.stats["cached"] == 1 and sharp.prob(["a wonderful superb film"])[0] > p[0]


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"text_column": "body"}, "column(s) ['body']"),
        ({"positive": "yes"}, "world.gold.positive"),
        ({"where": {"source": "z"}}, "0 rows"),
    ],
)
def test_bad_tables_name_the_field(table, tmp_path, kw, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        fit(gold_cfg(table, **kw), tmp_path)


def test_unknown_classifier_lists_the_names(table):
    with pytest.raises(ValueError, match="tfidf_logreg"):
        gold_cfg(table, model="bert")


def test_openings_typed_by_gold(table, tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFSIM_REAL_CACHE", str(tmp_path))
    cfg = TextWorldConfig(
        dataset=table,
        prompt_column="review",
        where={"source": "a"},
        sample_rows=100,
        prompt_words=4,
        prompt_types=["negative", "positive"],
        type_by_gold=0.5,
        eval_fraction=0.2,
        gold=gold_cfg(table).model_dump(),
    )
    w = build_world(cfg, policy_tokenizer=load_tokenizer(tiny_checkpoints["gpt2"], "policy.checkpoint"))
    rows = w.train + w.evals
    assert len(rows) == 100 and len(w.evals) == 20
    for r in rows:
        assert "<br" not in r["text"] and len(r["text"].split()) == 4 and r["text"].startswith("This movie")
        g = w._classifier.prob([r["text"]])[0]
        assert r["type"] == ("positive" if g >= 0.5 else "negative") and r["family"] == r["type"]
    assert {r["type"] for r in rows} == {"negative", "positive"}
    p = w.eval_prompts(2)
    assert np.allclose(
        w.gold(p, ["wonderful superb", "awful dull"]), w._classifier.prob(["wonderful superb", "awful dull"])
    )


def test_type_by_gold_needs_a_gold_model_and_two_types(table):
    with pytest.raises(ValueError, match="gold model"):
        TextWorldConfig(dataset=table, prompt_types=["negative", "positive"], type_by_gold=0.5)
    with pytest.raises(ValueError, match="exactly 2 prompt_types"):
        TextWorldConfig(
            dataset=table, prompt_types=["a", "b", "c"], type_by_gold=0.5, gold=gold_cfg(table).model_dump()
        )


def test_config_error_for_a_missing_table():
    with pytest.raises(ConfigError, match="world.gold.table"):
        config_from_dict(
            {"world": {"name": "text", "dataset": "x.csv", "gold": {"kind": "classifier", "table": "./no/such.csv"}}}
        )
