"""Study -> report.html (self-contained), report.md (+ PNG figures beside it), summary.csv.

    build_report(load_study(["runs/smoke"]), "reports/smoke")
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rlhfsim.experiment.ids import FIGURE_IDS
from rlhfsim.report import audit as audit_section
from rlhfsim.report.answer import comparisons, endpoints, fig_effect_sizes, verdicts
from rlhfsim.report.dose import dose_answer_into
from rlhfsim.report.fig_iterated import fig_iterated_frontiers, fig_iterated_gap, iterated_answer_into
from rlhfsim.report.methods import html_methods as _html_methods
from rlhfsim.report.methods import md_methods as _md_methods
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
                study.note(f"round {rd} was asked for the reward distributions but no run has rewards/round_{rd:03d}.parquet")
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
            study.note(f"{r.label} ({r.path}): no rewards parquet for round(s) {', '.join(map(str, lost))} shown in the distributions")
    return out


# ----------------------------------------------------------------------------- assembly


def page_palette(study: Study) -> dict:
    """A colour per arm on the whole page (issue 30: colours shared by an optimiser's arms hid the arms); the design
    factors still lay the panels out in rows (select.variant_groups), the baseline is grey."""
    from rlhfsim.report.figures import palette

    return palette(study.variants, study.baseline)


@dataclass
class Report:
    out_dir: Path
    figures: list = field(default_factory=list)  # FigureResult with .png bytes
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def build_report(study: Study, out_dir: str | Path, rounds: list[int] | None = None, band: str = "ci", title: str | None = None,
                 runs_root: str | None = None) -> Report:
    from rlhfsim.report import calibration as CAL
    from rlhfsim.report import collapse_study as CS
    from rlhfsim.report import dynamics as D
    from rlhfsim.report import fig_rewards as R
    from rlhfsim.report import figures as F
    from rlhfsim.report.fig_audits import fig_audits
    from rlhfsim.report.fig_dose import fig_dose_response
    from rlhfsim.report.fig_mitigation import fig_mitigation
    from rlhfsim.report.fig_phase import fig_phase_diagram, phase_answer_into
    from rlhfsim.report.phase import phase_design

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(out)
    pal = page_palette(study)

    chosen = choose_rounds(study, rounds)
    rewards = study.rewards(chosen) if chosen else pd.DataFrame()
    skip = skip_reasons(study)
    if phase_design(study) is not None:  # a dose figure per source x optimiser would be 10 columns; the phase diagram has them
        skip["dose_response"] = "the phase diagram and its tables show the dial effect per source and optimiser"
    comps = comparisons(study)
    builders = [("effect_sizes", lambda: fig_effect_sizes(study, comps)),
                ("fig1_gold_proxy_kl", lambda: F.fig_gold_proxy(study, pal, band)),
                ("fig2_by_prompt_type", lambda: F.fig_by_type(study, pal, band)),
                ("fig3_gold_vs_sqrt_kl", lambda: F.fig_gao(study, pal, band)),
                ("fig4_reward_distributions", lambda: R.fig_distributions(study, pal, rewards, chosen)),
                ("fig5_sorted_profiles", lambda: R.fig_profiles(study, pal, rewards, chosen)),
                ("fig6_collapse", lambda: F.fig_collapse(study, pal, band)),
                ("fig7_advantage_fidelity", lambda: F.fig_advantage(study, pal, band))]
    # the diagnostics figures are optional (e.g. best-of-n only with loop.bon_n > 1): left out, not "not drawn", when n/a
    optional = [("fig8_best_of_n", D.fig_best_of_n), ("fig9_proxy_and_gold_vs_sqrt_kl", D.fig_proxy_gold_kl),
                ("fig10_learning_signal", D.fig_signal), ("fig11_audits", fig_audits),
                ("fig13_reward_training", fig_mitigation), ("dose_response", fig_dose_response),
                ("calibration", CAL.fig_calibration), ("phase_diagram", fig_phase_diagram),
                ("iterated_frontiers", fig_iterated_frontiers), ("iterated_gap", fig_iterated_gap)]  # runs with inner_eval.jsonl
    results, left_out = [], []
    for key, build in builders:
        res = build() if key not in skip else None
        if res is None:
            left_out.append((key, skip[key]))
        else:
            results.append(res)
    if CS.has_train_rewards(study):  # runs with loop.diagnose_train: the collapse study's terminal-phase profiles
        results.insert(1, CS.fig_terminal_profiles(study, band))
    for key, build in optional:
        if key in skip:
            left_out.append((key, skip[key]))
            continue
        res = build(study, pal, band)
        if res.fig is not None:
            results.append(res)
        elif key in study.headline:  # a headline figure the runs cannot support yet says why
            left_out.append((key, res.skipped or "nothing to draw"))
    # headline figures first, in the experiment's order
    rank = {k: i for i, k in enumerate(study.headline)}
    results.sort(key=lambda r: rank.get(r.key, len(rank)))
    for res in results:
        if res.fig is not None:
            res.png = _png(res.fig)  # type: ignore[attr-defined]
            res.fig = None
            path = out / f"{res.key}.png"
            path.write_bytes(res.png)  # type: ignore[attr-defined]
            rep.files.append(path)
        rep.figures.append(res)
    # a figure this study no longer draws must not survive from an earlier report in the same folder (only the
    # report's own figure names are removed; anything else in the folder is the user's)
    for stale in sorted(set(FIGURE_IDS) - {p.stem for p in rep.files}):
        (out / f"{stale}.png").unlink(missing_ok=True)

    # summary.csv: one row per run
    s = study.summary
    s.to_csv(out / "summary.csv", index=False)
    rep.files.append(out / "summary.csv")
    ft = final_table(study)
    ft.to_csv(out / "variant_table.csv", index=False)
    rep.files.append(out / "variant_table.csv")
    rep.files += CS.write_tables(study, out)
    rep.files += CAL.write_calibration(study, out)

    comps.to_csv(out / "effects.csv", index=False)
    rep.files.append(out / "effects.csv")
    ctx = _context(study, ft, chosen, band, title)
    ctx["answer"] = answer_context(study, comps)
    ctx["left_out"] = left_out
    from rlhfsim.report.methods import methods_paragraph, reproduction

    ctx["methods"], ctx["repro"] = methods_paragraph(study), reproduction(study, out_dir, runs_root)
    ctx["sections"] = D.sections(study)
    if phase_design(study) is None:  # a phase study has its own per-seed and per-cell matched-KL tables
        from rlhfsim.report.answer import seed_section
        from rlhfsim.report.matched import matched_kl_section

        ctx["sections"] = [x for x in (seed_section(study), matched_kl_section(study)) if x is not None] + ctx["sections"]
    rep.files += dose_answer_into(study, ctx, out, endpoints(study)[0])
    rep.files += phase_answer_into(study, ctx, out)
    rep.files += iterated_answer_into(study, ctx, out, comps)  # runs with inner_eval.jsonl (issue 36): [] otherwise
    (out / "report.md").write_text(render_markdown(ctx, rep.figures))
    (out / "report.html").write_text(render_html(ctx, rep.figures))
    rep.files += [out / "report.md", out / "report.html"]
    rep.seconds = time.perf_counter() - t0
    return rep


def answer_context(study: Study, comps: pd.DataFrame) -> dict:
    primary, secondary, declared = endpoints(study)
    n_pairs = int(comps[comps["family"] == "primary"]["n"].max()) if not comps.empty else 0
    what = (f"Primary endpoint: {primary['endpoint']} ({primary['better']} is better), each variant minus {study.baseline} seed by "
            f"seed, 95% paired interval (paired t below 6 seeds, expanded-percentile bootstrap from 6)" + (", Holm over the variants" if len(study.variants) > 2 else "") + ".")
    if not declared:
        what += " The experiment file declares no primary endpoint; gold_gain is used."
    return {"verdicts": verdicts(study, comps), "what": what, "n_pairs": n_pairs, "headline": list(study.headline),
            "versions": study.version_note()}


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


def _intro(ctx) -> list[str]:
    st = ctx["study"]
    n_seeds = len({r.seed for r in st.runs})
    return [
        f"{ctx['n_runs']} run(s): {len(st.variants)} variant(s) x {n_seeds} seed(s). Baseline: **{st.baseline}**. "
        f"Sources: {', '.join(st.sources)}. Runs last written {ctx['generated']}."
    ]


TABLE_NOTE = ("Mean ± sample standard deviation over seeds (runs with a summary.json); Δ is the mean paired difference to the "
              "baseline (variant minus baseline, seed by seed: runs of one seed share the SFT policy and the prompts) with its 95% "
              "paired interval (paired t below 6 seeds, expanded-percentile bootstrap from 6), not corrected for multiplicity (the Answer and effect-size sections are). "
              "Rounds are round numbers (0 = SFT policy). \"Censored\" counts runs where the quantity is not fully observed: gold "
              "peaking in the last round (the peak may come later) or never stalling (no stagnation round; n then counts the runs "
              "where it is defined).")


# ----------------------------------------------------------------------------- markdown


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(ctx: dict, figures: list) -> str:
    st = ctx["study"]
    L = [f"# {ctx['title']}", ""]
    L += ["## Question", "", f"> {ctx['question']}" if ctx["question"] else "_No question recorded (see Missing data)._", ""]
    a = ctx["answer"]
    L += ["## Answer", ""] + [f"- **{_md_escape(v)}**" for v in a["verdicts"]] + [""]
    for f in _headline(ctx, figures)[:1]:  # the answering figure right under the verdicts, the method below it
        L += [f"[![{f.title}]({f.key}.png)]({f.key}.png)", ""]
    L += [a["what"], ""]
    L += (_md_table(*a["table"]) + [""]) if a.get("table") else []
    if a["versions"]:
        L += [f"> **Code versions:** {_md_escape(a['versions'])}", ""]
    L += _md_methods(ctx)
    L += _intro(ctx) + [""]
    L += ["## Runs", ""] + _md_table(ctx["overview_header"], ctx["overview"]) + [""]
    L += ["## What differs between variants", ""]
    diff: pd.DataFrame = ctx["diff"]
    if diff.empty:
        L += ["_The resolved configs (config.yaml) do not differ between variants, apart from seeds and names._" if st.variants else "_No configs._", ""]
    else:
        L += _md_table(list(diff.columns), diff.astype(str).values.tolist()) + [""]
    if st.variant_overrides:
        L += ["Overrides per variant, as written in the experiment:", ""]
        for v in st.variants:
            ov = st.variant_overrides.get(v)
            if ov is not None:
                L.append(f"- `{v}`: " + (", ".join(f"`{k}={_short(x)}`" for k, x in ov.items()) or "base config"))
        L.append("")
    L += ["## Final table per variant", ""]
    rows = [[m if not s else f"{m}<br>{s}" for m, s in r] for r in ctx["table_rows"]]
    L += _md_table(ctx["table_header"], rows) + ["", TABLE_NOTE, ""]
    L += audit_section.markdown(st, _md_table)
    L += ["## Figures", ""]
    for f in figures:
        L += [f"### {f.title}", ""]
        if getattr(f, "png", None) is not None:
            L += [f"[![{f.title}]({f.key}.png)]({f.key}.png)", "", f.caption, ""]
        else:
            L += [f"_Not drawn: {f.skipped}._", ""]
    if ctx.get("left_out"):
        L += ["Left out, because the runs cannot support them:", ""] + [f"- `{k}`: {why}" for k, why in ctx["left_out"]] + [""]
    for sec in ctx.get("sections", []):
        L += [f"## {sec.title}", ""] + (_md_table(sec.header, sec.rows) if sec.rows else ["_No finished runs._"]) + ["", sec.note, ""]
    L += ["## Missing data", ""]
    L += [f"- {_md_escape(m)}" for m in st.missing] if st.missing else ["Nothing missing: every run has its config, metrics, rewards and summary."]
    L += ["", "<details><summary>Settings common to all variants</summary>", "", "```"]
    L += [f"{k}: {v}" for k, v in ctx["common"].items()] + ["```", "", "</details>", ""]
    return "\n".join(L)


def _headline(ctx, figures) -> list:
    drawn = {f.key: f for f in figures if getattr(f, "png", None) is not None}
    return [drawn[k] for k in ctx["answer"]["headline"] if k in drawn]


def _short(x) -> str:
    import json

    return json.dumps(x) if isinstance(x, (dict, list)) else str(x)


# ----------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em} h3{margin-bottom:.3em}
blockquote{font-size:1.15em;border-left:4px solid #4c72b0;margin:0;padding:.4em 1em;background:#f4f7fb}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right} .sub{display:block;color:#555;font-size:.84em}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:1em 0 2em 0} figure img{max-width:100%;max-height:1500px;width:auto;height:auto;border:1px solid #eee}
.answer{border:2px solid #2a6f3e;background:#f3faf4;padding:.6em 1.1em;margin:1em 0;border-radius:4px}
.answer h2{border:none;margin:.2em 0 .4em 0} .answer li{font-size:1.08em;margin:.2em 0} .answer img{max-height:min(640px,58vh)}
.versions{border-left:4px solid #c77d00;background:#fff7e8;padding:.4em 1em} figcaption{color:#444;font-size:.92em;margin-top:.4em}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.35em;vertical-align:-.1em}
.missing li{color:#8a4b00} code,pre{background:#f6f6f6} pre{padding:.6em;overflow-x:auto;font-size:.85em} .note{color:#555;font-size:.9em}
nav a{margin-right:1em}
"""


def _e(s) -> str:
    return html.escape(str(s))


def _html_table(header, rows, cls="") -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            if isinstance(c, tuple):
                main, sub = c
                cells.append(f"<td class='num'>{_e(main)}" + (f"<span class='sub'>{_e(sub)}</span>" if sub else "") + "</td>")
            else:
                cells.append(f"<td>{_e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table class='{cls}'><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def render_html(ctx: dict, figures: list) -> str:
    st = ctx["study"]
    pal = page_palette(st)

    def sw(v):
        r, g, b = (int(255 * x) for x in pal.get(v, (0.5, 0.5, 0.5))[:3])
        return f"<span class='swatch' style='background:rgb({r},{g},{b})'></span>"

    P = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(ctx['title'])}</title>",
         f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
         f"<h1>{_e(ctx['title'])}</h1>",
         "<nav><a href='#answer'>Answer</a><a href='#question'>Question</a><a href='#diff'>Differences</a><a href='#table'>Final table</a>"
         "<a href='#audits'>Audits</a><a href='#figures'>Figures</a><a href='#missing'>Missing data</a></nav>",
         "<h2 id='question'>Question</h2>",
         f"<blockquote>{_e(ctx['question'])}</blockquote>" if ctx["question"] else "<p><em>No question recorded (see Missing data).</em></p>"]
    a = ctx["answer"]
    box = ["<section class='answer' id='answer'><h2>Answer</h2><ul>" + "".join(f"<li><strong>{_e(v)}</strong></li>" for v in a["verdicts"])
           + "</ul>"]
    for f in _headline(ctx, figures)[:1]:  # the answering figure right under the verdicts, the method below it
        b64 = base64.b64encode(f.png).decode("ascii")
        box.append(f"<figure><a href='{_e(f.key)}.png'><img alt='{_e(f.title)}' src='data:image/png;base64,{b64}'></a>"
                   f"<figcaption>{_e(f.title)} (full size: <a href='{_e(f.key)}.png'>{_e(f.key)}.png</a>)</figcaption></figure>")
    box.append(f"<p class='note'>{_e(a['what'])}</p>")
    box += [_html_table(*a["table"])] if a.get("table") else []
    if a["versions"]:  # after the answer itself, still inside the box
        box.append(f"<p class='versions'><strong>Code versions:</strong> {_e(a['versions'])}</p>")
    P.append("".join(box) + "</section>")
    P.append(_html_methods(ctx))
    intro = _intro(ctx)[0].replace("**", "")
    P.append(f"<p>{_e(intro)}</p>")
    P.append("<p>Variants: " + " ".join(f"{sw(v)}{_e(v)}{' (baseline)' if v == st.baseline else ''}&nbsp;&nbsp;" for v in st.variants) + "</p>")
    P.append("<h2 id='runs'>Runs</h2>" + _html_table(ctx["overview_header"], ctx["overview"]))
    P.append("<h2 id='diff'>What differs between variants</h2>")
    diff: pd.DataFrame = ctx["diff"]
    if diff.empty:
        P.append("<p><em>The resolved configs (config.yaml) do not differ between variants, apart from seeds and names.</em></p>")
    else:
        P.append(_html_table(list(diff.columns), diff.astype(str).values.tolist()))
    if st.variant_overrides:
        items = []
        for v in st.variants:
            ov = st.variant_overrides.get(v)
            if ov is not None:
                txt = ", ".join(f"{k}={_short(x)}" for k, x in ov.items()) or "base config"
                items.append(f"<li>{sw(v)}<code>{_e(v)}</code>: <code>{_e(txt)}</code></li>")
        P.append("<p class='note'>Overrides per variant, as written in the experiment:</p><ul>" + "".join(items) + "</ul>")
    P.append("<h2 id='table'>Final table per variant</h2>")
    P.append(_html_table(ctx["table_header"], [[r[0][0], r[1][0], *r[2:]] for r in ctx["table_rows"]], "final"))
    P.append(f"<p class='note'>{_e(TABLE_NOTE)}</p>")
    P.append(audit_section.html(st, _html_table))
    P.append("<h2 id='figures'>Figures</h2>")
    for f in figures:
        P.append(f"<h3>{_e(f.title)}</h3>")
        png = getattr(f, "png", None)
        if png is not None:
            b64 = base64.b64encode(png).decode("ascii")
            P.append(f"<figure><a href='{_e(f.key)}.png'><img alt='{_e(f.title)}' src='data:image/png;base64,{b64}'></a>"
                     f"<figcaption>{_e(f.caption)} <a href='{_e(f.key)}.png'>Full size</a>.</figcaption></figure>")
        else:
            P.append(f"<p><em>Not drawn: {_e(f.skipped)}.</em></p>")
    if ctx.get("left_out"):
        P.append("<p class='note'>Left out, because the runs cannot support them:</p><ul class='note'>"
                 + "".join(f"<li><code>{_e(k)}</code>: {_e(why)}</li>" for k, why in ctx["left_out"]) + "</ul>")
    for sec in ctx.get("sections", []):
        P.append(f"<h2>{_e(sec.title)}</h2>" + (_html_table(sec.header, sec.rows) if sec.rows else "<p><em>No finished runs.</em></p>"))
        P.append(f"<p class='note'>{_e(sec.note)}</p>")
    P.append("<h2 id='missing'>Missing data</h2>")
    if st.missing:
        P.append("<ul class='missing'>" + "".join(f"<li>{_e(m)}</li>" for m in st.missing) + "</ul>")
    else:
        P.append("<p>Nothing missing: every run has its config, metrics, rewards and summary.</p>")
    common = "\n".join(f"{k}: {v}" for k, v in ctx["common"].items())
    P.append(f"<details><summary>Settings common to all variants</summary><pre>{_e(common)}</pre></details>")
    P.append(f"<p class='note'>Generated by rlhfsim report from runs last written {_e(ctx['generated'])}; summary.csv has one row per run.</p>")
    P.append("</body></html>")
    return "\n".join(P)
