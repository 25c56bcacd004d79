"""Study -> report.html (self-contained), report.md (+ PNG figures beside it), summary.csv.

    build_report(load_study(["runs/smoke"]), "reports/smoke")

The page is shaped by the study's design kind (report/kinds.py); its figures and tables come from one registry
(report/registry.py), and both back-ends (report/page.py) write the same blocks.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rlhfsim.experiment.ids import figure_ids
from rlhfsim.plotting import pyplot
from rlhfsim.report import calibration as CAL
from rlhfsim.report import collapse_study as CS
from rlhfsim.report.answer import comparisons, endpoints, verdicts
from rlhfsim.report.dose import dose_answer_into
from rlhfsim.report.fig_iterated import iterated_answer_into
from rlhfsim.report.fig_phase import phase_answer_into
from rlhfsim.report.kinds import KINDS, answering_figures, design_kind
from rlhfsim.report.methods import methods_paragraph, reproduction
from rlhfsim.report.page import TABLE_NOTE, render_html, render_markdown  # noqa: F401 (TABLE_NOTE, render_*: re-exported)
from rlhfsim.report.page import md_table as _md_table  # noqa: F401 (the audit section's tests render with it)
from rlhfsim.report.plots import palette
from rlhfsim.report.registry import Page, all_figures, build_tables, draw_figures, proxy_free, proxy_free_rewards
from rlhfsim.report.select import skip_reasons
from rlhfsim.report.study import Study
from rlhfsim.report.tables import final_table, table_cells

# ----------------------------------------------------------------------------- round choice


def choose_rounds(study: Study, rounds: list[int] | None) -> list[int]:
    """Rounds for the distribution figures: the first round after feedback, the middle and the last one found."""
    avail = sorted({rd for r in study.runs for rd in r.reward_rounds})
    if rounds:
        for rd in rounds:
            if rd not in avail:
                study.note(
                    f"round {rd} was asked for the reward distributions but no run has rewards/round_{rd:03d}.parquet"
                )
        return [rd for rd in rounds if rd in avail]
    if not avail:
        return []
    fed = [rd for rd in avail if rd >= 1] or avail
    first, last = fed[0], fed[-1]
    out = [first]
    if last - first >= 4:
        mid = min(fed, key=lambda x: abs(x - (first + last) / 2))
        if mid not in out:
            out.append(mid)
    if last not in out:
        out.append(last)
    for r in study.runs:
        lost = [rd for rd in out if rd not in r.reward_rounds]
        if lost and r.reward_rounds:
            study.note(
                f"{r.label} ({r.path}): no rewards parquet for round(s) {', '.join(map(str, lost))} shown in the distributions"
            )
    return out


# ----------------------------------------------------------------------------- assembly


def page_palette(study: Study) -> dict:
    """A colour per arm on the whole page (issue 30: colours shared by an optimiser's arms hid the arms); the design
    factors still lay the panels out in rows (select.variant_groups), the baseline is grey."""
    return palette(study.variants, study.baseline)


@dataclass
class Report:
    out_dir: Path
    figures: list = field(default_factory=list)  # FigureResult with .png bytes
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    kind: str = ""


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def build_report(
    study: Study,
    out_dir: str | Path,
    rounds: list[int] | None = None,
    band: str = "ci",
    title: str | None = None,
    runs_root: str | None = None,
) -> Report:
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = design_kind(study)
    rep = Report(out, kind=kind)
    chosen = choose_rounds(study, rounds)
    rewards = study.rewards(chosen) if chosen else pd.DataFrame()
    comps = comparisons(study)
    page = Page(
        proxy_free(study),
        kind,
        page_palette(study),
        band,
        comps,
        chosen,
        proxy_free_rewards(study, rewards),
        skip_reasons(study),
    )
    headline = answering_figures(study, kind)
    figures, left_out = draw_figures(page, headline)
    for res in figures:
        if res.fig is not None:
            res.png = _png(res.fig)  # type: ignore[attr-defined]
            res.fig = None
            path = out / f"{res.key}.png"
            path.write_bytes(res.png)  # type: ignore[attr-defined]
            rep.files.append(path)
        rep.figures.append(res)
    # a figure this study no longer draws must not survive from an earlier report in the same folder (only the
    # report's own figure names are removed; anything else in the folder is the user's)
    for stale in sorted((set(figure_ids()) | {f.id for f in all_figures()}) - {p.stem for p in rep.files}):
        (out / f"{stale}.png").unlink(missing_ok=True)

    # summary.csv: one row per run
    study.summary.to_csv(out / "summary.csv", index=False)
    rep.files.append(out / "summary.csv")
    ft = final_table(study)
    ft.to_csv(out / "variant_table.csv", index=False)
    rep.files.append(out / "variant_table.csv")
    rep.files += CS.write_tables(study, out)
    rep.files += CAL.write_calibration(study, out)

    comps.to_csv(out / "effects.csv", index=False)
    rep.files.append(out / "effects.csv")
    ctx = _context(study, ft, chosen, band, title)
    ctx.update(kind=KINDS[kind], pal=page.pal, answer=answer_context(study, comps, headline))
    ctx["sections"], dropped = build_tables(page)
    ctx["left_out"] = left_out + dropped
    ctx["methods"], ctx["repro"] = methods_paragraph(study), reproduction(study, out_dir, runs_root)
    rep.files += dose_answer_into(study, ctx, out, endpoints(study)[0])
    rep.files += phase_answer_into(study, ctx, out)
    rep.files += iterated_answer_into(study, ctx, out, comps)  # runs with inner_eval.jsonl (issue 36): [] otherwise
    (out / "report.md").write_text(render_markdown(ctx, rep.figures))
    (out / "report.html").write_text(render_html(ctx, rep.figures))
    rep.files += [out / "report.md", out / "report.html"]
    rep.seconds = time.perf_counter() - t0
    return rep


def answer_context(study: Study, comps: pd.DataFrame, headline: list[str] | None = None) -> dict:
    primary, secondary, declared = endpoints(study)
    n_pairs = int(comps[comps["family"] == "primary"]["n"].max()) if not comps.empty else 0
    what = (
        f"Primary endpoint: {primary['endpoint']} ({primary['better']} is better), each variant minus {study.baseline} seed by "
        f"seed, 95% paired interval (paired t below 6 seeds, expanded-percentile bootstrap from 6)"
        + (", Holm over the variants" if len(study.variants) > 2 else "")
        + "."
    )
    if not declared:
        what += " The experiment file declares no primary endpoint; gold_gain is used."
    return {
        "verdicts": verdicts(study, comps),
        "what": what,
        "n_pairs": n_pairs,
        "headline": list(study.headline) if headline is None else headline,
        "versions": study.version_note(),
    }


def _context(study: Study, ft: pd.DataFrame, chosen: list[int], band: str, title: str | None) -> dict:
    diff, common = study.config_diff()
    header, rows = table_cells(study, ft)
    # runs overview: variant x seed status
    seeds = sorted({r.seed for r in study.runs if r.seed is not None})
    overview = []
    for v in study.variants:
        cells = []
        for sd in seeds:
            rs = [r for r in study.runs if r.variant == v and r.seed == sd]
            if not rs:
                cells.append("–")
                continue
            r = rs[0]
            logged = r.rounds_logged
            of = f"/{r.configured_rounds}" if r.configured_rounds is not None else ""
            cells.append(f"{r.status} ({logged if logged is not None else 0}{of} rounds)")
        overview.append([v, *cells])
    ns = ft.groupby("variant")["n"].max().to_dict() if not ft.empty else {}
    return {
        "title": title or f"rlhfsim report: {study.name}",
        "question": study.question,
        "study": study,
        "diff": diff,
        "common": common,
        "table_header": header,
        "table_rows": rows,
        "overview_header": ["variant", *[f"seed {s}" for s in seeds]],
        "overview": overview,
        "rounds": chosen,
        "band": band,
        "n_runs": len(study.runs),
        "ns": ns,
        "generated": data_time(study),
    }


def data_time(study: Study) -> str:
    """When the runs were last written (newest metrics.jsonl, UTC): the page's date, read from its data, not the clock,
    so the same runs regenerate the same page byte for byte."""
    stamps = [p.stat().st_mtime for r in study.runs if (p := Path(r.path) / "metrics.jsonl").is_file()]
    if not stamps:
        return "no run data"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(max(stamps)))
