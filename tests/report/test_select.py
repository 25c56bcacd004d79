"""Figure selection: degenerate inputs are recognised."""

import pandas as pd


def test_constant_across_variants():
    from rlhfsim.report.select import constant_across_variants

    class S:
        variants = ["a", "b"]
        metrics = pd.DataFrame({"variant": ["a", "a", "b", "b"], "round": [0, 1, 0, 1], "g": [0.1, 0.2, 0.1, 0.2], "h": [0.1, 0.2, 0.1, 0.3]})

    assert constant_across_variants(S, "g") and not constant_across_variants(S, "h") and not constant_across_variants(S, "x")
