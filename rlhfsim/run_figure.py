"""The run's own figure, drawn when a run ends: `figures/curves.png`, gold, proxy and KL against round from the run's
metrics.jsonl (one run, no bands: a study's figures come from `rlhfsim report`). Sent to the trackers that take images.
The loop draws it itself, from rlhfsim/plotting.py's basics, without the report package.

Deterministic: the same rows give the same PNG bytes (no timestamp in the file, no resampling), so two runs of one
config leave identical run directories, figure included.
"""

from __future__ import annotations

import io
import logging

import pandas as pd

from rlhfsim.files import atomic_write_bytes
from rlhfsim.plotting import GOLD_LABEL, ROUND_LABEL, int_rounds, pyplot, seaborn_theme

log = logging.getLogger(__name__)

FIGURE = "figures/curves.png"  # relative to the run directory
TAG = "figures/curves"  # its name in the trackers
# metrics.jsonl column -> (panel title, y label)
PANELS = {
    "eval/gold": ("gold", GOLD_LABEL),
    "eval/proxy": ("proxy", "proxy reward (reward-model scale)"),
    "eval/kl": ("KL to the SFT policy", "KL(policy ‖ SFT) (nats)"),
}


def curves(rows: list[dict]) -> pd.DataFrame:
    """Long table (round, metric, value) of PANELS' metrics, finite values only (round 0 has no proxy)."""
    df = pd.DataFrame(rows)
    cols = [c for c in PANELS if c in df.columns]
    if df.empty or "round" not in df.columns or not cols:
        return pd.DataFrame(columns=["round", "metric", "value"])
    long = df[["round", *cols]].melt(id_vars="round", var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def draw_curves(rows: list[dict], title: str = "") -> bytes:
    """PNG bytes of one small figure: a panel per PANELS metric against round (a panel says so when it has no data)."""
    plt, sns = pyplot(), seaborn_theme()
    data = curves(rows)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(9, 2.8))
    for ax, (col, (sub, ylabel)) in zip(axes, PANELS.items()):
        d = data[data["metric"] == col]
        if d.empty:
            ax.text(0.5, 0.5, f"{col} not logged", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        else:
            sns.lineplot(data=d, x="round", y="value", errorbar=None, marker="o", markersize=4, ax=ax)
        ax.set_title(sub, fontsize=10)
        ax.set_xlabel(ROUND_LABEL, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        int_rounds(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})  # no version stamp: the bytes follow the rows
    plt.close(fig)
    return buf.getvalue()


def write_run_figure(run_dir, cfg) -> None:
    """FIGURE from the run's metrics.jsonl, then to every tracker that takes images. Called before summary.json is
    written (a finished run has its figure); a resume redraws the same bytes, and a tracker holding them is skipped."""
    rows = run_dir.metrics()
    if not rows:
        return
    path = run_dir.path / FIGURE
    try:
        png = draw_curves(rows, f"{cfg.output.experiment}/{cfg.output.variant}/seed{cfg.seed}")
    except Exception as e:  # noqa: BLE001 - a plotting failure never costs a finished run its summary
        log.warning("figure %s not drawn: %s: %s", path, type(e).__name__, e)
        return
    path.parent.mkdir(exist_ok=True)
    atomic_write_bytes(path, png)
    t = run_dir.trackers()
    if t is not None:
        t.log_image(TAG, path, int(rows[-1]["round"]))
