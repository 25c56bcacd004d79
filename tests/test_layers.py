"""The package's layers hold: every module imports only its own layer or the layers below it, siblings do not import
each other, and a function-level import of the package's own modules says why it is not at the top of the file.

Read from the source (AST), so a lazy import inside a function counts as much as one at the top: hiding an upward
import in a function does not make it downward. `if TYPE_CHECKING:` blocks are skipped (annotations only). The layers
are listed top to bottom; docs/architecture.md ("Layers") explains them. A new module must be placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlhfsim"

# top to bottom; a layer is {component: [module prefixes]}. Components of one layer are siblings: they do not import
# each other (sweep and report, for instance, share the experiment-file model below them instead).
LAYERS: list[dict[str, list[str]]] = [
    {"cli": ["rlhfsim.cli", "rlhfsim.commands", "rlhfsim.__main__"]},
    {
        "sweep": ["rlhfsim.sweep"],
        "report": ["rlhfsim.report"],
        "bench": ["rlhfsim.bench"],
        "real setup": ["rlhfsim.real.setup", "rlhfsim.real.cli"],
    },
    {"experiment-file model": ["rlhfsim.experiment"]},
    {"run command": ["rlhfsim.run_cli"]},
    {"loop": ["rlhfsim.loop", "rlhfsim.loop_phases", "rlhfsim.iterated", "rlhfsim.guards", "rlhfsim.run_figure"]},
    {"run directory": ["rlhfsim.tracking"]},
    {"trackers": ["rlhfsim.trackers", "rlhfsim.tracker_stores"]},
    {"config": ["rlhfsim.config", "rlhfsim.config_docs", "rlhfsim.loop_config"]},
    {"reward": ["rlhfsim.reward"], "ppo": ["rlhfsim.ppo"]},
    {"optim": ["rlhfsim.optim"]},
    {"diagnostics": ["rlhfsim.diagnostics"]},
    {"world": ["rlhfsim.world"]},
    {"models": ["rlhfsim.models"]},
    # pure helpers everything may use: no model, no run. reward.utilities is the utilities' math, which theory.py
    # (the finite-n optimum) builds on; real.assets names installed assets (standard library only)
    {
        "base": [
            "rlhfsim",
            "rlhfsim.version",
            "rlhfsim.schema",
            "rlhfsim.faults",
            "rlhfsim.files",
            "rlhfsim.run_files",
            "rlhfsim.ops",
            "rlhfsim.plotting",
            "rlhfsim.theory",
            "rlhfsim.theory_graph",
            "rlhfsim.reward.utilities",
            "rlhfsim.real",
            "rlhfsim.real.assets",
        ]
    },
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def place(name: str) -> tuple[int, str] | None:
    """(layer index, component) of a module: the longest prefix listed anywhere wins; None when unplaced."""
    best = None
    for i, layer in enumerate(LAYERS):
        for comp, prefixes in layer.items():
            for p in prefixes:
                exact = p in ("rlhfsim", "rlhfsim.real")  # the packages' __init__ only, not everything below them
                if name == p or (not exact and name.startswith(p + ".")):
                    if best is None or len(p) > best[0]:
                        best = (len(p), i, comp)
    return None if best is None else (best[1], best[2])


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[str, int, bool, bool]]:
    """(imported rlhfsim module, line, inside a function, a comment on its line or a comment line just above) of one
    file."""
    src = path.read_text()
    lines = src.splitlines()
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                        base = ".".join(up + ([child.module] if child.module else []))
                    subs = [f"{base}.{a.name}" for a in child.names if is_module(f"{base}.{a.name}")]
                    targets = subs or [base]
                above = lines[child.lineno - 2].strip() if child.lineno > 1 else ""
                said = "#" in lines[child.lineno - 1] or above.startswith("#")
                out.extend(
                    (t, child.lineno, in_function, said) for t in targets if t == "rlhfsim" or t.startswith("rlhfsim.")
                )
            visit(child, inner)

    visit(ast.parse(src), False)
    return out


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def violations() -> list[str]:
    bad = []
    for path in modules():
        me = module_name(path)
        mine = place(me)
        for target, line, _, _ in imports(path):
            theirs = place(target)
            if mine is None or theirs is None:
                continue  # reported by test_every_module_is_placed
            where = f"{path.relative_to(ROOT)}:{line}: {me} ({mine[1]}) imports {target} ({theirs[1]})"
            if theirs[0] < mine[0]:
                bad.append(f"{where}: an upward import")
            elif theirs[0] == mine[0] and theirs[1] != mine[1]:
                bad.append(f"{where}: siblings of one layer do not import each other")
    return bad


def test_every_module_is_placed_in_a_layer():
    unplaced = [module_name(p) for p in modules() if place(module_name(p)) is None]
    assert not unplaced, f"place these modules in tests/test_layers.py LAYERS (and docs/architecture.md): {unplaced}"


def test_modules_import_only_downward():
    bad = violations()
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


# Function-level imports between the report package's own modules, without a comment: they break import cycles among
# the report's figure and section modules, whose structure is the reports issue's (a figure registry). A ratchet: the
# number may only go down; new ones fail the test below.
REPORT_INTERNAL_LAZY = 6


def _silent_lazy() -> tuple[list[str], set[tuple[str, int]]]:
    """(function-level imports of rlhfsim modules without a comment saying why, outside the report's own modules;
    the report-internal ones as (file, line))."""
    silent, report = [], set()
    for p in modules():
        me = module_name(p)
        for t, line, lazy, said in imports(p):
            if not lazy or said:
                continue
            if me.startswith("rlhfsim.report.") and (t == "rlhfsim.report" or t.startswith("rlhfsim.report.")):
                report.add((str(p.relative_to(ROOT)), line))
            else:
                silent.append(f"{p.relative_to(ROOT)}:{line}: {t}")
    return silent, report


def test_function_level_imports_of_the_package_say_why():
    """An import of rlhfsim's own modules inside a function is a deferred heavy dependency (torch, pandas, scipy,
    matplotlib behind it, kept out of a light import path such as the CLI's start or a config load) or an optional
    one, and a comment on its line or just above says which. Anything else belongs at the top of the file."""
    silent, report = _silent_lazy()
    assert not silent, "function-level imports without a comment saying why:\n" + "\n".join(silent)
    assert len(report) <= REPORT_INTERNAL_LAZY, (
        f"{len(report)} function-level imports between report modules (at most {REPORT_INTERNAL_LAZY}): "
        "import at the top of the file, or say why in a comment"
    )


@pytest.mark.parametrize(
    "source, target, upward",
    [
        ("rlhfsim.loop", "rlhfsim.report.figures", True),
        ("rlhfsim.optim.core", "rlhfsim.ppo.core", True),
        ("rlhfsim.sweep.runner", "rlhfsim.report.load", True),  # siblings
        ("rlhfsim.report.load", "rlhfsim.experiment.spec", False),
        ("rlhfsim.loop", "rlhfsim.tracking", False),
    ],
)
def test_the_check_sees_an_upward_import(source, target, upward):
    """The rule itself, on pairs whose answer is known (an injected import is caught by test_modules_import_only_downward)."""
    a, b = place(source), place(target)
    assert (b[0] < a[0] or (b[0] == a[0] and b[1] != a[1])) == upward
