"""The run's own figure: the curves it plots (a constructed metrics.jsonl), and PNG bytes that follow the rows only."""

import io

import pytest

from rlhfsim.run_figure import PANELS, curves, draw_curves

ROWS = [
    {"round": 0, "eval/gold": 0.30, "eval/kl": 0.0, "sft/loss": 1.2},  # the SFT round has no proxy
    {"round": 1, "eval/gold": 0.35, "eval/proxy": 0.5, "eval/kl": 0.1, "time/round": 3.0},
    {"round": 2, "eval/gold": None, "eval/proxy": "nan", "eval/kl": 0.3, "guard/skipped": 1},  # a skipped round
    {"round": 3, "eval/gold": 0.40, "eval/proxy": 1.5, "eval/kl": 0.4},
]


def test_curves_are_the_panel_metrics_finite_values_by_round():
    d = curves(ROWS)
    got = {m: list(zip(g["round"], g["value"])) for m, g in d.groupby("metric")}
    assert got == {
        "eval/gold": [(0, 0.30), (1, 0.35), (3, 0.40)],
        "eval/proxy": [(1, 0.5), (3, 1.5)],
        "eval/kl": [(0, 0.0), (1, 0.1), (2, 0.3), (3, 0.4)],
    }
    assert set(d["metric"]) <= set(PANELS)  # timings, SFT and guard columns are not drawn
    assert curves([]).empty and curves([{"round": 0, "time/round": 1.0}]).empty


def test_figure_bytes_follow_the_rows_only():
    from PIL import Image

    png = draw_curves(ROWS, "tiny/default/seed0")
    assert png == draw_curves(ROWS, "tiny/default/seed0")  # no timestamp or version in the file
    assert png != draw_curves([{**r, "eval/kl": 2 * (r["eval/kl"] or 0)} for r in ROWS], "tiny/default/seed0")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (720, 224)  # 9 x 2.8 in at 80 dpi
    assert "Software" not in img.info
    assert Image.open(io.BytesIO(draw_curves(ROWS[:1]))).size == img.size  # one round, no proxy: still drawn


@pytest.mark.parametrize("rows", [[{"round": 0}], [{"round": 0, "eval/gold": 0.3}]])
def test_missing_metrics_leave_a_labelled_panel(rows):
    assert draw_curves(rows)[:4] == b"\x89PNG"
