"""issue 32 (audits): the alarm-detection table and figure reach an audit-kind page through the registry, on a
fabricated study whose gold falls in some runs and holds in others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rlhfsim.cli import main
from rlhfsim.report import registry as REG
from rlhfsim.report.kinds import answering_figures, design_kind
from rlhfsim.report.load import load_study
from rlhfsim.report.plots import palette
from rlhfsim.report.registry import Page, build_tables, draw_figures, proxy_free
from tests.fixtures.studies import make_study

FALLS = [0.40, 0.45, 0.50, 0.50, 0.46, 0.44]  # falls at round 4 (> 0.03 below the peak two rounds in a row)
HOLDS = [0.40, 0.42, 0.44, 0.46, 0.48, 0.50]


def _set(root: Path, variant: str, seed: int, gold, exploit_from: int | None) -> None:
    """Overwrite a fabricated run's gold and alarms (exploit on from `exploit_from`, the others logged quiet)."""
    d = root / variant / f"seed{seed}"
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    rows = [{**rows[min(r, len(rows) - 1)], "round": r, "eval/gold": g} for r, g in enumerate(gold)]
    for r in rows[1:]:
        r.update({f"audit/alarm_{a}": 0.0 for a in ("collapse", "saturation", "explosion", "shift")})
        r["audit/alarm_exploit"] = float(exploit_from is not None and r["round"] >= exploit_from)
        r["audit/alarms"] = r["audit/alarm_exploit"]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _audit_study(tmp_path: Path) -> Path:
    root = make_study(tmp_path)  # low_kl (baseline), high_kl; seeds 0, 1
    _set(root, "low_kl", 0, FALLS, exploit_from=2)  # hit, lead 2
    _set(root, "low_kl", 1, FALLS, exploit_from=5)  # late, lead -1
    _set(root, "high_kl", 0, HOLDS, exploit_from=1)  # false alarm
    _set(root, "high_kl", 1, HOLDS, exploit_from=None)
    exp = yaml.safe_load((root / "experiment.yaml").read_text())
    (root / "experiment.yaml").write_text(yaml.safe_dump({**exp, "design": "audit"}))
    return root


def test_an_audit_page_leads_with_alarm_detection(tmp_path):
    study = load_study([_audit_study(tmp_path)])
    assert design_kind(study) == "audit" and answering_figures(study) == ["alarm_detection"]
    page = Page(proxy_free(study), "audit", palette(study.variants, study.baseline), "sd")
    sections, _ = build_tables(page)
    det, per_run = (s for s in sections if s.title.startswith("Alarm detection"))
    rows = {r[0]: r for r in det.rows}
    assert rows["exploit"][1:8] == ["2", "1 (1, 0)", "0.50", "2", "1", "0.50", "0.00"]
    assert rows["exploit"][8] == "2.0 [2, 2]" and rows["collapse"][1:4] == ["2", "0 (0, 2)", "0.00"]
    cells = {(r[0], r[1]): r for r in per_run.rows}
    exploit = per_run.header.index("exploit: first (lead)")
    assert cells[("low_kl", "0")][3] == "4" and cells[("low_kl", "0")][exploit] == "2 (+2)"
    assert cells[("low_kl", "1")][exploit] == "5 (-1)" and cells[("high_kl", "0")][exploit] == "1"
    assert cells[("high_kl", "1")][3] == "held" and cells[("high_kl", "1")][exploit] == "–"
    (fig,), left_out = draw_figures(
        page, ["alarm_detection"], [f for f in REG.all_figures() if f.id == "alarm_detection"]
    )
    assert fig.key == "alarm_detection" and fig.fig is not None and not left_out
    assert [f.kinds for f in REG.all_figures() if f.id == "alarm_detection"] == [("audit",)]  # elsewhere: by headline


@pytest.mark.slow  # a whole report build
def test_the_rendered_audit_page_carries_the_detection_table(tmp_path):
    root = _audit_study(tmp_path)
    out = tmp_path / "report"
    assert main(["report", str(root), "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert (out / "alarm_detection.png").is_file() and "alarm_detection.png" in md
    assert "| exploit | 2 | 1 (1, 0) | 0.50 | 2 | 1 | 0.50 | 0.00 | 2.0 [2, 2] |" in md
