"""fig11_audits: gold beside the reward-model audit signals over rounds, with each alarm's threshold.

Per panel: each seed thin, the mean over seeds with a band that stays in the metric's range (report/bands.py),
the threshold of the alarm that reads the metric (from the configs the runs used) as a dashed line. Variants
are faceted into rows (select.variant_groups) with a legend per row outside the panels.
"""

from __future__ import annotations

from rlhfsim.diagnostics.audit import ALARMS
from rlhfsim.report.bands import draw_seed_curves
from rlhfsim.report.facets import row_height, row_legends
from rlhfsim.report.plots import FigureResult, has, int_rounds, pyplot
from rlhfsim.report.select import audits_on, variant_groups

KEY = "fig11_audits"
TITLE = "Audits over rounds: gold, adversarial exploit rate, shifted-set agreement, alarms"


def panels(m) -> list[dict]:
    """The panels the metrics support: column, title, y label, range, and the audit config field of its threshold."""
    shift = next((c for c in m.columns if str(c).startswith("rm/shift_") and str(c).endswith("_pairwise_acc")), None)
    shift_name = shift.removeprefix("rm/shift_").removesuffix("_pairwise_acc") if shift else ""
    out = [
        dict(col="eval/gold", title="gold reward (held-out prompts)", ylabel="gold reward (0-1)", bounds=(0.0, 1.0)),
        dict(
            col="audit/exploit_rate_max",
            title="adversarial exploit rate (worst family)",
            ylabel="exploit rate (0-1)",
            bounds=(0.0, 1.0),
            threshold="exploit_threshold",
            alarm="exploit",
        ),
        dict(
            col=shift,
            title=f"shifted prompts ({shift_name}): agreement with gold",
            ylabel="pairwise accuracy vs gold (0-1)",
            bounds=(0.0, 1.0),
            threshold="shift_acc_threshold",
            alarm="shift",
        ),
        dict(
            col="audit/alarms",
            title="alarms on in the round",
            ylabel=f"alarms on (0-{len(ALARMS)})",
            bounds=(0.0, float(len(ALARMS))),
        ),
    ]
    return [p for p in out if p["col"] is not None and has(m, p["col"])]


def thresholds(study, field: str) -> list[float]:
    """The distinct values of audit.<field> in the configs of the study's runs (none when no config has it)."""
    vals = set()
    for r in study.runs:
        v = ((r.config or {}).get("audit") or {}).get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals.add(float(v))
    return sorted(vals)


def fig_audits(study, pal, band: str = "ci"):
    m = study.metrics
    if "audit/alarms" not in m:
        return FigureResult(KEY, TITLE, "", None, "no audit/* metrics logged")
    off = [str(r.path) for r in study.runs if not audits_on(r)]
    if off and len(off) == len(study.runs):
        return FigureResult(
            KEY, TITLE, "", None, "audits are off in every run (audit.enabled: false): no alarm is an audit's"
        )
    audit_cols = [c for c in m.columns if str(c).startswith(("audit/", "rm/shift_"))]
    if off:  # runs without audits draw no alarm curve
        m = m.copy()
        m.loc[m["run"].isin(off), audit_cols] = float("nan")
    ps = panels(m)
    groups = variant_groups(study)
    h = row_height(3.9, len(groups))
    fig, grid = pyplot().subplots(
        len(groups), len(ps), figsize=(4.3 * len(ps), h * len(groups)), squeeze=False, sharex=True
    )
    drawn_thresholds = []
    for i, (axes, (label, vs)) in enumerate(zip(grid, groups)):
        mg = m[m["variant"].isin(vs)]
        for ax, p in zip(axes, ps):
            draw_seed_curves(ax, mg, p["col"], vs, pal, band, p["bounds"])
            for t in thresholds(study, p["threshold"]) if "threshold" in p else []:
                ax.axhline(t, color="firebrick", ls="--", lw=1.1, label=f"{p['alarm']} alarm threshold")
                drawn_thresholds.append(f"{p['alarm']}: audit.{p['threshold']} = {t:g}")
            if p["col"] != "eval/gold":  # rates and counts on their whole range, so thresholds and 0 are in view
                lo, hi = p["bounds"]
                ax.set_ylim(lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))
            ax.set_title(f"{p['title']}\n({label})" if label else p["title"], fontsize=9.5)
            ax.set_ylabel(p["ylabel"], fontsize=8.5)
            ax.set_xlabel("round (0 = SFT policy)" if i == len(groups) - 1 else "", fontsize=8.5)
            ax.tick_params(labelsize=8)
            int_rounds(ax)
    row_legends(grid)
    fig.tight_layout()
    interval = (
        "95% percentile-bootstrap interval of the mean over seeds"
        if band == "ci"
        else "±1 sd over seeds, clipped to the metric's range"
    )
    cols = {p["col"] for p in ps}
    cap = (
        f"Thin lines: each seed; thick: the mean over seeds with its {interval} (bands stay inside each metric's range: "
        "rates in [0, 1], the alarm count in [0, 5])."
    )
    if "audit/exploit_rate_max" in cols:
        cap += (
            " Exploit rate: the share of stress pairs where the reward model prefers the perturbed completion over the "
            "gold-better one (0.5 = blind to the perturbation), worst family."
        )
    if any(str(c).startswith("rm/shift_") for c in cols):
        cap += " Shifted-set accuracy: pairwise agreement with gold on prompts off the training distribution."
    cap += " The audits are measured before each round's PPO."
    if drawn_thresholds:
        cap += f" Dashed red: the alarm thresholds of these runs' configs ({'; '.join(sorted(set(drawn_thresholds)))})."
    return FigureResult(KEY, TITLE, cap, fig)
