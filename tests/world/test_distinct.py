import numpy as np
import pytest

from rlhfsim.world.distinct import first_distinct


def test_keeps_first_k_distinct_in_sampling_order():
    texts = [
        "8",
        "8",
        "9",
        "8 ocean",
        "7",
        "9",
        "6",
        "5",  # prompt 0: 6 distinct among 8 samples
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
    ]
    out, counts = first_distinct(texts, n_prompts=2, k=4)
    assert out == ["8", "9", "8 ocean", "7", "a", "b", "c", "d"]
    assert counts.tolist() == [4, 4]


def test_too_few_distinct_pads_with_the_first_samples():
    out, counts = first_distinct(["x", "x", "y", "x"], n_prompts=1, k=3)
    assert out == ["x", "y", "x"] and counts.tolist() == [2]


def test_shape_errors():
    with pytest.raises(ValueError, match="split evenly"):
        first_distinct(["a", "b", "c"], n_prompts=2, k=1)
    with pytest.raises(ValueError, match="fewer than k"):
        first_distinct(["a", "b"], n_prompts=1, k=3)


def test_oversampling_by_one_is_the_identity_when_all_distinct():
    texts = [str(i) for i in range(12)]
    out, counts = first_distinct(texts, 3, 4)
    assert out == texts and np.all(counts == 4)
