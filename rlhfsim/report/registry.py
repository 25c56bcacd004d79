"""The report's figures and tables, each declared once: its id, the design kinds whose pages carry it, the data it
needs, when it is degenerate or not applicable, how to draw it and (for a bare figure) its title and caption. One loop
(`draw_figures`, `build_tables`) makes a page's figures and tables; render.py writes them with its Markdown and HTML
back-ends.

    page = Page(study, kind, pal, band, comps, rounds, rewards, skip)
    figures, left_out = draw_figures(page, headline)    # drawn FigureResults in page order; [(id, why)] left out
    sections, left_out = build_tables(page)             # Sections in page order

Adding a figure is one file in rlhfsim/report/figs/ whose name is its id, declaring `FIGURE = Figure(...)` (found
by `plugins()`; docs/architecture.md, "Adding a figure"); the built-in ones are CORE_FIGURES below.

A figure draws from `page.study`, in which the proxy and reward-model columns of arms that optimise gold itself
(loop.reward_source: gold) are blanked: such an arm's reward model is never used, so no proxy figure shows it, and a
study of gold arms only draws no proxy figure at all.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from rlhfsim.report import alarm_detection as AD
from rlhfsim.report import audit as AU
from rlhfsim.report import calibration as CAL
from rlhfsim.report import collapse_study as CS
from rlhfsim.report import dynamics as D
from rlhfsim.report import fig_rewards as R
from rlhfsim.report import figures as F
from rlhfsim.report.answer import endpoints, fig_effect_sizes, seed_section
from rlhfsim.report.cost import cost_section
from rlhfsim.report.fig_audits import fig_audits
from rlhfsim.report.fig_dose import fig_dose_response
from rlhfsim.report.fig_iterated import fig_iterated_frontiers, fig_iterated_gap
from rlhfsim.report.fig_mitigation import fig_mitigation
from rlhfsim.report.fig_phase import fig_phase_diagram
from rlhfsim.report.kinds import ALL_KINDS
from rlhfsim.report.manipulation import manipulation_section
from rlhfsim.report.matched import matched_kl_section
from rlhfsim.report.plots import FigureResult, Section, has
from rlhfsim.report.select import PROXY_PREFIXES, audits_on, gold_source_variants
from rlhfsim.report.study import Study

REWARD_MODEL_COLUMNS = ("proxy",)  # rewards parquet columns of the reward model (proxy, proxy_m<k>)


@dataclass(frozen=True)
class Page:
    """What a page's figures and tables are made from."""

    study: Study  # the gold-source arms' proxy columns blanked (proxy_free)
    kind: str  # report/kinds.py
    pal: dict = field(default_factory=dict)  # colour per arm
    band: str = "ci"
    comps: pd.DataFrame = field(default_factory=pd.DataFrame)  # answer.comparisons
    rounds: list[int] = field(default_factory=list)  # rounds of the reward-distribution figures
    rewards: pd.DataFrame = field(default_factory=pd.DataFrame)  # per-completion rewards of those rounds
    skip: dict[str, str] = field(default_factory=dict)  # select.skip_reasons: figure id -> why degenerate


Need = str | Callable[[Page], bool]  # a metric column that must be logged, or a test of the page


@dataclass(frozen=True)
class Figure:
    """A figure, declared once. `draw(page)` returns a FigureResult, or a bare matplotlib figure (None: nothing to
    draw) that takes `title` and `caption` from here."""

    id: str
    draw: Callable[[Page], object]
    kinds: tuple[str, ...] = ALL_KINDS  # design kinds whose pages carry it (a headline figure is on any page)
    needs: tuple[Need, ...] = ()  # not met: not applicable (left out without a word when quiet, unless a headline)
    when: Callable[[Page], str | None] | None = None  # why it is degenerate here (always said), None when it applies
    title: str = ""
    caption: str = ""
    quiet: bool = False  # an optional diagnostic: when it cannot be drawn, it is left out without a word


@dataclass(frozen=True)
class Table:
    """A table section (or several), declared once; `build(page)` returns Sections, one Section or None."""

    id: str
    build: Callable[[Page], object]
    kinds: tuple[str, ...] = ALL_KINDS
    when: Callable[[Page], str | None] | None = None


# ----------------------------------------------------------------------------- applicability


def proxy_free(study: Study) -> Study:
    """The study with the proxy and reward-model columns of its gold-source arms blanked (NaN)."""
    gold = gold_source_variants(study)
    if not gold:
        return study
    runs = []
    for r in study.runs:
        if r.variant in gold and r.metrics is not None:
            m = r.metrics.copy()
            m[[c for c in m.columns if str(c).startswith(PROXY_PREFIXES)]] = np.nan
            r = replace(r, metrics=m)
        runs.append(r)
    return replace(study, runs=runs)


def proxy_free_rewards(study: Study, rewards: pd.DataFrame) -> pd.DataFrame:
    """Per-completion rewards with the gold-source arms' reward-model columns blanked."""
    gold = gold_source_variants(study)
    if rewards.empty or not gold:
        return rewards
    out = rewards.copy()
    cols = [c for c in out.columns if str(c).startswith(REWARD_MODEL_COLUMNS)]
    out.loc[out["variant"].isin(gold), cols] = np.nan
    return out


def _met(need: Need, page: Page) -> bool:
    return need(page) if callable(need) else has(page.study.metrics, need)


def audits_off(page: Page) -> str | None:
    if page.study.runs and not any(audits_on(r) for r in page.study.runs):
        return "audits are off in every run (audit.enabled: false): no alarm is an audit's"
    return None


def _primary(study: Study) -> tuple[str, float | None]:
    """(endpoint, declared equivalence margin per unit dose, or None: none declared, or a contrast is tested) of the
    study's primary."""
    p = endpoints(study)[0]
    return p["endpoint"], None if p.get("contrast") else p.get("margin")


def _phase_page(page: Page) -> str | None:
    return (
        "the phase diagram and its tables show the dial effect per source and optimiser"
        if page.kind == "phase"
        else None
    )


# ----------------------------------------------------------------------------- the built-in figures, in page order

NOT_DOSE = (
    "ab",
    "overopt",
    "calibration",
    "iterated",
    "audit",
)  # an effect against one baseline misreads a dose design
COLLAPSE = ("ab", "dose", "phase")  # the reward distributions: pages whose question can be the reward model's collapse
NOT_OVEROPT = tuple(
    k for k in ALL_KINDS if k != "overopt"
)  # over-optimisation pages: gold against KL, not the reward model
CORE_FIGURES: list[Figure] = [
    Figure("effect_sizes", lambda p: fig_effect_sizes(p.study, p.comps), kinds=NOT_DOSE),
    Figure(
        "fig12_terminal_profiles",
        lambda p: CS.fig_terminal_profiles(p.study, p.band),
        needs=(lambda p: CS.has_train_rewards(p.study),),
        quiet=True,
    ),
    Figure("fig1_gold_proxy_kl", lambda p: F.fig_gold_proxy(p.study, p.pal, p.band)),
    Figure("fig2_by_prompt_type", lambda p: F.fig_by_type(p.study, p.pal, p.band)),
    Figure("fig3_gold_vs_sqrt_kl", lambda p: F.fig_gao(p.study, p.pal, p.band), kinds=("overopt",)),
    Figure(
        "fig4_reward_distributions", lambda p: R.fig_distributions(p.study, p.pal, p.rewards, p.rounds), kinds=COLLAPSE
    ),
    Figure("fig5_sorted_profiles", lambda p: R.fig_profiles(p.study, p.pal, p.rewards, p.rounds), kinds=COLLAPSE),
    Figure("fig6_collapse", lambda p: F.fig_collapse(p.study, p.pal, p.band), kinds=NOT_OVEROPT),
    Figure("fig7_advantage_fidelity", lambda p: F.fig_advantage(p.study, p.pal, p.band)),
    Figure("fig8_best_of_n", lambda p: D.fig_best_of_n(p.study, p.pal, p.band), needs=("bon/gold_n1",), quiet=True),
    Figure(
        "fig9_proxy_and_gold_vs_sqrt_kl",
        lambda p: D.fig_proxy_gold_kl(p.study, p.pal, p.band),
        needs=("eval/proxy", "eval/sqrt_kl"),
        quiet=True,
    ),
    Figure("fig10_learning_signal", lambda p: D.fig_signal(p.study, p.pal, p.band), quiet=True),
    Figure(
        "fig11_audits",
        lambda p: fig_audits(p.study, p.pal, p.band),
        needs=("audit/alarms",),
        when=audits_off,
        quiet=True,
    ),
    Figure("fig13_reward_training", lambda p: fig_mitigation(p.study, p.pal, p.band), quiet=True),
    Figure(
        "dose_response",
        lambda p: fig_dose_response(
            p.study, p.pal, p.band, *_primary(p.study), where=endpoints(p.study)[0].get("where")
        ),
        kinds=("dose", "phase"),
        when=_phase_page,
        quiet=True,
    ),
    Figure("calibration", lambda p: CAL.fig_calibration(p.study, p.pal, p.band), kinds=("calibration",), quiet=True),
    Figure("phase_diagram", lambda p: fig_phase_diagram(p.study, p.pal, p.band), kinds=("phase",), quiet=True),
    Figure(
        "iterated_frontiers", lambda p: fig_iterated_frontiers(p.study, p.pal, p.band), kinds=("iterated",), quiet=True
    ),
    Figure("iterated_gap", lambda p: fig_iterated_gap(p.study, p.pal, p.band), kinds=("iterated",), quiet=True),
]

# ----------------------------------------------------------------------------- the built-in tables, in page order

# against the one baseline: not on dose pages (the dial effect is read within each group) nor on phase pages (their own
# per-seed and per-cell matched-KL tables)
CORE_TABLES: list[Table] = [
    Table("per_seed", lambda p: seed_section(p.study), kinds=NOT_DOSE),
    Table(
        "manipulation_check", lambda p: manipulation_section(p.study), kinds=("ab",)
    ),  # what each arm did to the rewards
    Table("matched_kl", lambda p: matched_kl_section(p.study), kinds=NOT_DOSE),
    Table("calibration_table", lambda p: CAL.calibration_section(p.study), kinds=("calibration",)),
    Table("overopt_fits", lambda p: D.overopt_section(p.study), kinds=("overopt", "ab", "audit")),
    Table("gao_shapes", lambda p: D.gao_shape_section(p.study), kinds=("overopt",)),
    Table("stagnation", lambda p: D.stagnation_section(p.study)),
    Table("propagation", lambda p: D.propagation_section(p.study), kinds=("ab", "dose", "phase", "calibration")),
    Table(
        "audits",
        lambda p: AU.sections(p.study),
        when=lambda p: audits_off(p) if "audit/alarms" in p.study.metrics else None,
    ),
    Table(
        "alarm_detection",
        lambda p: AD.sections(p.study),
        when=lambda p: audits_off(p) if "audit/alarms" in p.study.metrics else None,
    ),
    Table("cost", lambda p: cost_section(p.study)),
]


PLUGIN_PACKAGE = "rlhfsim.report.figs"  # one module per plug-in figure, named by its id


def plugins(package: str | None = None) -> list[Figure]:
    """The figures declared in the plug-in package (each module's FIGURE; its file name is its id), by name."""
    pkg = importlib.import_module(package or PLUGIN_PACKAGE)  # the plug-ins import this module: found on first use
    out = []
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        fig = getattr(importlib.import_module(f"{pkg.__name__}.{mod.name}"), "FIGURE", None)
        if not isinstance(fig, Figure) or fig.id != mod.name:
            raise TypeError(f"{pkg.__name__}.{mod.name} must declare FIGURE = Figure({mod.name!r}, ...)")
        out.append(fig)
    return out


def all_figures() -> list[Figure]:
    return CORE_FIGURES + plugins()


# ----------------------------------------------------------------------------- the loops


def _result(f: Figure, out) -> FigureResult:
    if isinstance(out, FigureResult):
        out.key = f.id  # in place: builders hang extra results on it (e.g. fig3's fits)
        return out
    if out is None:
        return FigureResult(f.id, f.title or f.id, f.caption, None, "nothing to draw")
    return FigureResult(f.id, f.title or f.id, f.caption, out)


def draw_figures(
    page: Page, headline: list[str], figures: list[Figure] | None = None
) -> tuple[list[FigureResult], list[tuple[str, str]]]:
    """(drawn figures, [(id, why)] left out): every figure of the page's kind, and any the headline names, in headline
    order first, then in declaration order. A non-quiet figure whose builder drew nothing stays in the list with its
    reason (`skipped`), which the page prints as "Not drawn"."""
    drawn, left_out = [], []
    for f in all_figures() if figures is None else figures:
        named = f.id in headline
        if page.kind not in f.kinds and not named:
            continue
        why = page.skip.get(f.id) or (f.when(page) if f.when else None)
        if why:
            left_out.append((f.id, why))
            continue
        if not all(_met(n, page) for n in f.needs):
            if named or not f.quiet:
                left_out.append((f.id, "the runs did not log what it draws"))
            continue
        res = _result(f, f.draw(page))
        if res.fig is None and f.quiet:
            if named:
                left_out.append((f.id, res.skipped or "nothing to draw"))
            continue
        drawn.append(res)
    rank = {k: i for i, k in enumerate(headline)}
    drawn.sort(key=lambda r: rank.get(r.key, len(rank)))
    return drawn, left_out


def build_tables(page: Page, tables: list[Table] | None = None) -> tuple[list[Section], list[tuple[str, str]]]:
    """(the page kind's table sections in declaration order, [(id, why)] left out as degenerate)."""
    out, left_out = [], []
    for t in CORE_TABLES if tables is None else tables:
        if page.kind not in t.kinds:
            continue
        why = t.when(page) if t.when else None
        if why:
            left_out.append((t.id, why))
            continue
        built = t.build(page)
        out += [s for s in (built if isinstance(built, list) else [built]) if s is not None]
    return out, left_out
