"""issue 30: the report's plotting helpers are public (report/plots.py); no report module imports another module's
underscore names, so a figure module depends only on what its neighbours publish."""

from __future__ import annotations

import ast
from pathlib import Path

from rlhfsim.report import plots

REPORT = Path(__file__).resolve().parents[2] / "rlhfsim" / "report"


def underscore_imports(path: Path) -> list[str]:
    """`from rlhfsim.X import _name` anywhere in the file (top level or inside a function)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlhfsim"):
            out += [
                f"{path.name}:{node.lineno}: {node.module}.{a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
    return out


def test_no_report_module_imports_an_underscore_name():
    bad = [x for p in sorted(REPORT.rglob("*.py")) for x in underscore_imports(p)]
    assert not bad, "import public names (report/plots.py holds the shared plotting helpers):\n" + "\n".join(bad)


def test_the_check_sees_an_underscore_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from rlhfsim.report.figures import _plt\n")
    assert underscore_imports(f) == ["m.py:2: rlhfsim.report.figures._plt"]


def test_the_helpers_are_public():
    assert all(not n.startswith("_") and hasattr(plots, n) for n in plots.__all__)
    for n in ("FigureResult", "palette", "lineplot", "round_panels", "legend_once", "band_text", "has", "pyplot"):
        assert n in plots.__all__
