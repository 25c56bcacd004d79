"""issue 30: the first screen of a page is the question, the verdict and the one figure that answers it, whatever the
number of verdicts (report/first_screen.py measures it in headless Chromium; report/page.py lays the Answer box out)."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from rlhfsim.cli import main
from rlhfsim.report.first_screen import SIZES, Screen, chromium, measure
from rlhfsim.report.first_screen import main as first_screen_main
from rlhfsim.report.page import WIDE, answer_lead, png_aspect
from tests.fixtures.studies import fab_run

# whole report builds over fabricated studies (seconds each): the full suite runs them, the fast lane does not
pytestmark = pytest.mark.slow


LONG_QUESTION = (
    "With a reward model that carries signal, which of six KL weights reaches the most held-out gold at the end of the "
    "last round, does the ordering the weak regime showed survive, and how far apart are the arms once the paired "
    "seeds' noise is taken into account, including the ones that differ in KL by a factor of four or more?"
)


def _png(w: int, h: int) -> bytes:
    """A valid w x h grey PNG."""

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80" * w for _ in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------- without a browser


def test_the_answer_box_lays_verdicts_beside_an_ordinary_figure_and_around_a_wide_one():
    verdicts = ["In summary, 3 arms", "a: better", "b: worse", "c: no effect"]
    tall = SimpleNamespace(png=_png(600, 500), key="effect_sizes", title="T", caption="C")
    wide = SimpleNamespace(png=_png(1400, 200), key="effect_sizes", title="T", caption="C")
    assert png_aspect(tall.png) == pytest.approx(1.2) and png_aspect(wide.png) == pytest.approx(7.0) and WIDE < 7.0
    two = answer_lead(verdicts, [tall])
    assert two.startswith("<div class='lead two'><div><ul>") and two.index("c: no effect") < two.index("<figure>")
    assert two.count("<li>") == 4 and base64.b64encode(tall.png).decode() in two
    lead = answer_lead(verdicts, [wide])  # the first verdict (the summary), the figure at full width, the others
    assert lead.startswith("<div class='lead wide'>")
    assert lead.index("In summary") < lead.index("<figure>") < lead.index("a: better") < lead.index("c: no effect")
    assert lead.count("<li>") == 4 and lead.count("<ul>") == 2
    assert answer_lead(verdicts[:1], [wide]).count("<ul>") == 1  # no empty list under the figure
    none = answer_lead(verdicts, [])
    assert (
        none
        == "<div class='lead'><div><ul>"
        + "".join(f"<li><strong>{v}</strong></li>" for v in verdicts)
        + "</ul></div></div>"
    )


def test_the_first_screen_rule():
    ok = Screen("p", 1366, 625, {"question": (146, 241), "verdict": (318, 368), "figure": (344, 709)}, 9)
    assert ok.problems() == []  # 281 of the figure's 365 px above the fold
    low = Screen("p", 1366, 625, {"question": (146, 241), "verdict": (382, 432), "figure": (666, 837)}, 4)
    assert low.problems() == ["the answering figure starts at 666 px (fold at 625; 4 verdict line(s) above it)"]
    sliver = Screen("p", 1280, 757, {"question": (146, 241), "verdict": (382, 432), "figure": (666, 837)}, 4)
    assert "91 of its 171 px above the fold" in sliver.problems()[0]
    small = Screen("p", 1366, 625, {"question": (146, 241), "verdict": (291, 341), "figure": (348, 470)}, 1)
    assert small.problems() == []  # a figure shorter than MIN_SHOWN_PX counts when all of it shows
    gone = Screen("p", 1366, 625, {"question": (146, 700), "verdict": None, "figure": None}, 0)
    assert gone.problems() == [
        "the question ends at 700 px, below the fold at 625",
        "no verdict on the page",
        "no answering figure in the Answer box",
    ]


# ----------------------------------------------------------------------------- in headless Chromium


ARMS = {"kl0.01": 0.01, "kl0.02": 0.02, "kl0.05": 0.05, "kl0.1": 0.1, "kl0.2": 0.2, "kl0.3": 0.3, "kl0.5": 0.5}


def _study(tmp: Path, name: str, secondary: bool) -> Path:
    """Seven arms x 2 seeds (a summary sentence and six verdicts in the Answer box) with a four-line question; with
    secondary endpoints the effect-size figure is three panels wide (a wide figure)."""
    root = tmp / "runs" / name
    for seed in (0, 1):
        for i, (arm, kl) in enumerate(ARMS.items()):
            fab_run(root, arm, seed, kl, 0.01 * i)
    exp = {
        "name": name,
        "question": LONG_QUESTION,
        "base_overrides": {"device": "cpu"},
        "seeds": [0, 1],
        "baseline": "kl0.01",
        "variants": {arm: {"optimizer.kl_coef": kl} for arm, kl in ARMS.items()},
        "primary": {"endpoint": "gold_gain"},
    }
    if secondary:
        exp["secondary"] = [{"endpoint": "gold_peak"}, {"endpoint": "kl_final"}]
    (root / "experiment.yaml").write_text(yaml.safe_dump(exp))
    return root


@pytest.fixture(scope="module", params=[False, True], ids=["ordinary_figure", "wide_figure"])
def many_verdicts(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first_screen")
    out = tmp / "rep"
    assert main(["report", str(_study(tmp, "kl_sweep", request.param)), "-o", str(out)]) == 0
    return out / "report.html", request.param


@pytest.mark.skipif(chromium() is None, reason="chromium not installed")
def test_a_page_with_many_verdicts_shows_question_verdict_and_figure_on_the_first_screen(many_verdicts):
    page, wide = many_verdicts
    html = page.read_text()
    box = html.split("<section class='answer' id='answer'>", 1)[1].split("</section>", 1)[0]
    assert box.count("<li>") == 7 and "In summary, 6 arms" in box and "effect_sizes.png" in box
    assert ("<div class='lead wide'>" in box) == wide and ("<div class='lead two'>" in box) == (not wide)
    for w, h in SIZES:  # a laptop screen (1366 x 768) and issue 30's 1280 x 900
        s = measure(page, w, h)
        assert s.verdicts == 7 and s.height <= h  # the window's inner height (new headless Chromium: less its own bars)
        assert s.problems() == [], (w, h, s.spans)
    assert first_screen_main([str(page), "--size", "1366x768"]) == 0
