"""The page's two back-ends: Markdown (report.md, the PNGs beside it) and HTML (report.html, self-contained).

Both write the same blocks in the same order from one context (render.py builds it): the question, the Answer
(verdicts, the one figure that answers the question, the method; in HTML the verdicts stand beside the figure on a wide
screen, so the first screen holds question, verdict and figure: report/first_screen.py), then methods and reproduction, the runs, what differs,
the final table, the figures (report/registry.py drew them), the tables (likewise), missing data. In HTML everything
after the first screen is collapsible; the runs table is closed when every run finished.
"""

from __future__ import annotations

import base64
import html
import json

import pandas as pd

from rlhfsim.report.methods import html_methods, md_methods

TABLE_NOTE = (
    "Mean ± sample standard deviation over seeds (runs with a summary.json); Δ is the mean paired difference to the "
    "baseline (variant minus baseline, seed by seed: runs of one seed share the SFT policy and the prompts) with its 95% "
    "paired interval (paired t below 6 seeds, expanded-percentile bootstrap from 6), not corrected for multiplicity (the Answer and effect-size sections are). "
    'Rounds are round numbers (0 = SFT policy). "Censored" counts runs where the quantity is not fully observed: gold '
    "peaking in the last round (the peak may come later) or never stalling (no stagnation round; n then counts the runs "
    "where it is defined)."
)


def intro(ctx) -> str:
    st = ctx["study"]
    n_seeds = len({r.seed for r in st.runs})
    kind = f" Design: {ctx['kind'].title}." if ctx.get("kind") is not None else ""
    return (
        f"{ctx['n_runs']} run(s): {len(st.variants)} variant(s) x {n_seeds} seed(s). Baseline: **{st.baseline}**.{kind} "
        f"Sources: {', '.join(st.sources)}. Runs last written {ctx['generated']}."
    )


def answering(ctx, figures) -> list:
    """The drawn figure that answers the question (the first drawn of the page's headline), or []."""
    drawn = {f.key: f for f in figures if getattr(f, "png", None) is not None}
    return [drawn[k] for k in ctx["answer"]["headline"] if k in drawn][:1]


def below(ctx, figures) -> list:
    """The figures under the Answer box: every one but the answering figure (shown once, on the first screen)."""
    top = {f.key for f in answering(ctx, figures)}
    return [f for f in figures if f.key not in top]


def short(x) -> str:
    return json.dumps(x) if isinstance(x, (dict, list)) else str(x)


def all_finished(ctx) -> bool:
    return all(r.status == "finished" for r in ctx["study"].runs)


# ----------------------------------------------------------------------------- markdown


def md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(ctx: dict, figures: list) -> str:
    st = ctx["study"]
    L = [f"# {ctx['title']}", ""]
    L += [
        "## Question",
        "",
        f"> {ctx['question']}" if ctx["question"] else "_No question recorded (see Missing data)._",
        "",
    ]
    a = ctx["answer"]
    L += ["## Answer", ""] + [f"- **{md_escape(v)}**" for v in a["verdicts"]] + [""]
    for f in answering(ctx, figures):  # the answering figure right under the verdicts, the method below it
        L += [f"[![{f.title}]({f.key}.png)]({f.key}.png)", "", f.caption, ""]
    L += [a["what"], ""]
    L += (md_table(*a["table"]) + [""]) if a.get("table") else []
    if a["versions"]:
        L += [f"> **Code versions:** {md_escape(a['versions'])}", ""]
    L += md_methods(ctx)
    L += [intro(ctx), ""]
    L += ["## Runs", ""] + md_table(ctx["overview_header"], ctx["overview"]) + [""]
    L += ["## What differs between variants", ""]
    diff: pd.DataFrame = ctx["diff"]
    if diff.empty:
        L += [
            "_The resolved configs (config.yaml) do not differ between variants, apart from seeds and names._"
            if st.variants
            else "_No configs._",
            "",
        ]
    else:
        L += md_table(list(diff.columns), diff.astype(str).values.tolist()) + [""]
    if st.variant_overrides:
        L += ["Overrides per variant, as written in the experiment:", ""]
        for v in st.variants:
            ov = st.variant_overrides.get(v)
            if ov is not None:
                L.append(f"- `{v}`: " + (", ".join(f"`{k}={short(x)}`" for k, x in ov.items()) or "base config"))
        L.append("")
    L += ["## Final table per variant", ""]
    rows = [[m if not s else f"{m}<br>{s}" for m, s in r] for r in ctx["table_rows"]]
    L += md_table(ctx["table_header"], rows) + ["", TABLE_NOTE, ""]
    L += ["## Figures", ""]
    for f in below(ctx, figures):
        L += [f"### {f.title}", ""]
        if getattr(f, "png", None) is not None:
            L += [f"[![{f.title}]({f.key}.png)]({f.key}.png)", "", f.caption, ""]
        else:
            L += [f"_Not drawn: {f.skipped}._", ""]
    if ctx.get("left_out"):
        L += (
            ["Left out, because the runs cannot support them:", ""]
            + [f"- `{k}`: {why}" for k, why in ctx["left_out"]]
            + [""]
        )
    for sec in ctx.get("sections", []):
        L += (
            [f"## {sec.title}", ""]
            + (md_table(sec.header, sec.rows) if sec.rows else ["_No finished runs._"])
            + ["", sec.note, ""]
        )
    L += ["## Missing data", ""]
    L += (
        [f"- {md_escape(m)}" for m in st.missing]
        if st.missing
        else ["Nothing missing: every run has its config, metrics, rewards and summary."]
    )
    L += ["", "<details><summary>Settings common to all variants</summary>", "", "```"]
    L += [f"{k}: {v}" for k, v in ctx["common"].items()] + ["```", "", "</details>", ""]
    return "\n".join(L)


# ----------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin:0 0 .2em 0} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em} h3{margin-bottom:.3em}
blockquote{font-size:1.15em;border-left:4px solid #4c72b0;margin:0;padding:.4em 1em;background:#f4f7fb}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right} .sub{display:block;color:#555;font-size:.84em}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:1em 0 2em 0} figure img{max-width:100%;max-height:1500px;width:auto;height:auto;border:1px solid #eee}
.answer{border:2px solid #2a6f3e;background:#f3faf4;padding:.6em 1.1em;margin:1em 0;border-radius:4px}
.answer h2{border:none;margin:.1em 0 .3em 0} .answer li{font-size:1.08em;margin:.2em 0} .answer img{max-height:min(640px,58vh)}
.answer ul{margin:.2em 0;padding-left:1.2em} .lead figure{margin:0 0 .6em 0} .lead.wide figure{margin:.4em 0}
.lead.two li{font-size:1em} .lead.two{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,3fr);gap:1.4em;align-items:start}
@media (max-width:900px){.lead.two{display:block}}
h2.q{font-size:1.05em;border:none;margin:.8em 0 .3em 0;color:#4c72b0}
.versions{border-left:4px solid #c77d00;background:#fff7e8;padding:.4em 1em} figcaption{color:#444;font-size:.92em;margin-top:.4em}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.35em;vertical-align:-.1em}
.missing li{color:#8a4b00} code,pre{background:#f6f6f6} pre{padding:.6em;overflow-x:auto;font-size:.85em} .note{color:#555;font-size:.9em}
details.part>summary{cursor:pointer;list-style-position:outside} details.part>summary h2{display:inline-block;width:95%}
nav a{margin-right:1em}
"""


def _e(s) -> str:
    return html.escape(str(s))


def html_table(header, rows, cls="") -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            if isinstance(c, tuple):
                main, sub = c
                cells.append(
                    f"<td class='num'>{_e(main)}" + (f"<span class='sub'>{_e(sub)}</span>" if sub else "") + "</td>"
                )
            else:
                cells.append(f"<td>{_e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table class='{cls}'><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def part(anchor: str, title: str, body: str, open_: bool = True) -> str:
    """A collapsible block under the first screen: its h2 is the summary."""
    return (
        f"<details class='part'{' open' if open_ else ''}><summary><h2 id='{anchor}'>{_e(title)}</h2></summary>"
        f"{body}</details>"
    )


def _img(f) -> str:
    b64 = base64.b64encode(f.png).decode("ascii")
    return f"<a href='{_e(f.key)}.png'><img alt='{_e(f.title)}' src='data:image/png;base64,{b64}'></a>"


WIDE = 3.0  # an answering figure at least this many times wider than tall leads the Answer box at full width


def png_aspect(png: bytes) -> float:
    """Width over height of a PNG, from its header."""
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return w / h if h else 1.0


def answer_lead(verdicts: list[str], top: list) -> str:
    """The verdicts and the answering figure, laid out so all three parts of the first screen (question, verdict, figure)
    fit on it whatever the number of verdicts (report/first_screen.py measures it): a figure of ordinary shape stands
    beside the verdicts on a wide screen (below them on a narrow one); a wide, short figure (WIDE) keeps the full width,
    between the first verdict (the summary sentence where there is one) and the others."""

    def ul(vs):
        return "<div><ul>" + "".join(f"<li><strong>{_e(v)}</strong></li>" for v in vs) + "</ul></div>" if vs else ""

    if not top:
        return f"<div class='lead'>{ul(verdicts)}</div>"
    f = top[0]
    fig = (
        f"<figure>{_img(f)}<figcaption><strong>{_e(f.title)}.</strong> {_e(f.caption)} "
        f"(full size: <a href='{_e(f.key)}.png'>{_e(f.key)}.png</a>)</figcaption></figure>"
    )
    if png_aspect(f.png) >= WIDE:
        return f"<div class='lead wide'>{ul(verdicts[:1])}{fig}{ul(verdicts[1:])}</div>"
    return f"<div class='lead two'>{ul(verdicts)}{fig}</div>"


def render_html(ctx: dict, figures: list) -> str:
    st, pal = ctx["study"], ctx.get("pal", {})

    def sw(v):
        r, g, b = (int(255 * x) for x in pal.get(v, (0.5, 0.5, 0.5))[:3])
        return f"<span class='swatch' style='background:rgb({r},{g},{b})'></span>"

    P = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(ctx['title'])}</title>",
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
        f"<h1>{_e(ctx['title'])}</h1>",
        "<nav><a href='#answer'>Answer</a><a href='#question'>Question</a><a href='#diff'>Differences</a><a href='#table'>Final table</a>"
        "<a href='#figures'>Figures</a><a href='#missing'>Missing data</a></nav>",
        "<h2 class='q' id='question'>Question</h2>",
        f"<blockquote>{_e(ctx['question'])}</blockquote>"
        if ctx["question"]
        else "<p><em>No question recorded (see Missing data).</em></p>",
    ]
    a = ctx["answer"]
    box = ["<section class='answer' id='answer'><h2>Answer</h2>", answer_lead(a["verdicts"], answering(ctx, figures))]
    box.append(f"<p class='note'>{_e(a['what'])}</p>")
    box += [html_table(*a["table"])] if a.get("table") else []
    if a["versions"]:  # after the answer itself, still inside the box
        box.append(f"<p class='versions'><strong>Code versions:</strong> {_e(a['versions'])}</p>")
    P.append("".join(box) + "</section>")
    P.append(html_methods(ctx))
    P.append(f"<p>{_e(intro(ctx).replace('**', ''))}</p>")
    P.append(
        "<p>Variants: "
        + " ".join(f"{sw(v)}{_e(v)}{' (baseline)' if v == st.baseline else ''}&nbsp;&nbsp;" for v in st.variants)
        + "</p>"
    )
    done = all_finished(ctx)
    runs_title = f"Runs ({ctx['n_runs']}, all finished)" if done and st.runs else "Runs"
    P.append(part("runs", runs_title, html_table(ctx["overview_header"], ctx["overview"]), open_=not done))
    diff: pd.DataFrame = ctx["diff"]
    body = (
        "<p><em>The resolved configs (config.yaml) do not differ between variants, apart from seeds and names.</em></p>"
        if diff.empty
        else html_table(list(diff.columns), diff.astype(str).values.tolist())
    )
    if st.variant_overrides:
        items = []
        for v in st.variants:
            ov = st.variant_overrides.get(v)
            if ov is not None:
                txt = ", ".join(f"{k}={short(x)}" for k, x in ov.items()) or "base config"
                items.append(f"<li>{sw(v)}<code>{_e(v)}</code>: <code>{_e(txt)}</code></li>")
        body += (
            "<p class='note'>Overrides per variant, as written in the experiment:</p><ul>" + "".join(items) + "</ul>"
        )
    P.append(part("diff", "What differs between variants", body))
    P.append(
        part(
            "table",
            "Final table per variant",
            html_table(ctx["table_header"], [[r[0][0], r[1][0], *r[2:]] for r in ctx["table_rows"]], "final")
            + f"<p class='note'>{_e(TABLE_NOTE)}</p>",
        )
    )
    figs = []
    for f in below(ctx, figures):
        figs.append(f"<h3>{_e(f.title)}</h3>")
        if getattr(f, "png", None) is not None:
            figs.append(
                f"<figure>{_img(f)}<figcaption>{_e(f.caption)} <a href='{_e(f.key)}.png'>Full size</a>.</figcaption></figure>"
            )
        else:
            figs.append(f"<p><em>Not drawn: {_e(f.skipped)}.</em></p>")
    if ctx.get("left_out"):
        figs.append(
            "<p class='note'>Left out, because the runs cannot support them:</p><ul class='note'>"
            + "".join(f"<li><code>{_e(k)}</code>: {_e(why)}</li>" for k, why in ctx["left_out"])
            + "</ul>"
        )
    P.append(part("figures", "Figures", "".join(figs)))
    for i, sec in enumerate(ctx.get("sections", [])):
        body = (
            html_table(sec.header, sec.rows) if sec.rows else "<p><em>No finished runs.</em></p>"
        ) + f"<p class='note'>{_e(sec.note)}</p>"
        P.append(part(f"section{i + 1}", sec.title, body))
    missing = (
        "<ul class='missing'>" + "".join(f"<li>{_e(m)}</li>" for m in st.missing) + "</ul>"
        if st.missing
        else "<p>Nothing missing: every run has its config, metrics, rewards and summary.</p>"
    )
    P.append(part("missing", "Missing data", missing))
    common = "\n".join(f"{k}: {v}" for k, v in ctx["common"].items())
    P.append(f"<details><summary>Settings common to all variants</summary><pre>{_e(common)}</pre></details>")
    P.append(
        f"<p class='note'>Generated by rlhfsim report from runs last written {_e(ctx['generated'])}; summary.csv has one row per run.</p>"
    )
    P.append("</body></html>")
    return "\n".join(P)
