"""What a reader sees of a report page before scrolling, measured in headless Chromium (issue 30: the first screen is
the question, the verdict and the one figure that answers it).

    python -m rlhfsim.report.first_screen reports/*/report.html                 # 1366 x 768 and 1280 x 900
    python -m rlhfsim.report.first_screen reports/optimizers/report.html --size 1280x900

A copy of the page with a probe script (the report itself stays script-free) is loaded at each window size; the
probe records where the question (the blockquote), the first verdict (the Answer box's first item) and the answering
figure (the Answer box's first image) lie. The page passes at a size when the question and the first verdict end
within the window and the figure starts within it with at least FIGURE_SHOWN of its height (and at least MIN_SHOWN_PX)
above the fold. Exit code 1 when any page fails at any size; the reasons are printed per page.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SIZES = ((1366, 768), (1280, 900))  # a typical laptop screen; the size issue 30 names
FIGURE_SHOWN = 0.5  # share of the answering figure's rendered height that must be above the fold
MIN_SHOWN_PX = 200  # ... and at least this many pixels of it
PARTS = ("question", "verdict", "figure")

PROBE = (
    "<script>window.addEventListener('load', () => { const box = e => { if (!e) return null; const r = "
    "e.getBoundingClientRect(); return [Math.round(r.top + window.scrollY), Math.round(r.bottom + window.scrollY)]; }; "
    "const out = {question: box(document.querySelector('blockquote')), verdict: box(document.querySelector("
    "'section.answer li')), figure: box(document.querySelector('section.answer img')), verdicts: "
    "document.querySelectorAll('section.answer li').length, height: window.innerHeight, width: window.innerWidth}; "
    "document.body.setAttribute('data-first-screen', JSON.stringify(out)); });</script>"
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium_command(browser: str, profile: Path) -> list[str]:
    """Headless Chromium with its own throwaway profile and nothing that reaches the network (the tests' browser too)."""
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]


@dataclass
class Screen:
    """Where the first screen's parts lie on one page at one window size (page pixels from the top; None: absent)."""

    page: str
    width: int
    height: int  # the window's inner height as the page saw it
    spans: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    verdicts: int = 0

    def problems(self) -> list[str]:
        out = []
        for part in ("question", "verdict"):
            s = self.spans.get(part)
            if s is None:
                out.append(f"no {part} on the page")
            elif s[1] > self.height:
                out.append(f"the {part} ends at {s[1]} px, below the fold at {self.height}")
        s = self.spans.get("figure")
        if s is None:
            out.append("no answering figure in the Answer box")
        else:
            shown = max(0, min(s[1], self.height) - s[0])
            need = max(MIN_SHOWN_PX, FIGURE_SHOWN * (s[1] - s[0]))
            if shown < min(need, s[1] - s[0]):
                where = f"starts at {s[0]} px" + (f", {shown} of its {s[1] - s[0]} px above the fold" if shown else "")
                out.append(
                    f"the answering figure {where} (fold at {self.height}; {self.verdicts} verdict line(s) above it)"
                )
        return out


def measure(page: str | Path, width: int, height: int, browser: str | None = None, timeout: float = 180) -> Screen:
    """Load a probed copy of the page at width x height and read where its first-screen parts lie."""
    browser = browser or chromium()
    if browser is None:
        raise RuntimeError("no chromium found (apt-get install chromium)")
    page = Path(page)
    with tempfile.TemporaryDirectory(prefix="first_screen_") as tmp:
        probed = Path(tmp) / "page.html"
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        cmd = chromium_command(browser, Path(tmp) / "profile") + [
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.resolve().as_uri(),
        ]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    m = re.search(r'data-first-screen="([^"]*)"', dom)
    if m is None:
        raise RuntimeError(f"{page}: the probe did not run (chromium printed {len(dom)} characters)")
    d = json.loads(m.group(1).replace("&quot;", '"'))
    spans = {p: tuple(d[p]) if d[p] else None for p in PARTS}
    return Screen(str(page), width, int(d["height"]) or height, spans, int(d["verdicts"]))


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlhfsim.report.first_screen", description=__doc__.split("\n\n")[0])
    ap.add_argument("pages", nargs="+", help="report.html files")
    ap.add_argument("--size", action="append", type=parse_size, help="WxH (repeatable; default 1366x768 and 1280x900)")
    args = ap.parse_args(argv)
    failed = 0
    for page in args.pages:
        for w, h in args.size or SIZES:
            s = measure(page, w, h)
            bad = s.problems()
            failed += bool(bad)
            spans = ", ".join(f"{p} {s.spans[p][0]}-{s.spans[p][1]}" if s.spans[p] else f"{p} none" for p in PARTS)
            print(
                f"{'FAIL' if bad else 'ok  '} {page} at {w}x{h} ({spans}; {s.verdicts} verdict line(s))"
                + "".join(f"\n       {b}" for b in bad)
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
