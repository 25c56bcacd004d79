"""A tiny run with audits, shifted sets and recalibration: every audit metric logged, documented, and in summary.json."""

import re
from pathlib import Path

import pytest

from rlhfsim.config import load_config
from rlhfsim.loop import run
from rlhfsim.tracking import read_jsonl

AUDIT_PREFIXES = ("audit/", "rm/shift_", "recal/")


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "seed0"
    # hold-outs change the SFT warm start: its own cache, so the session cache keeps one SFT (other tests glob it)
    cache = tmp_path_factory.mktemp("audit_sft")
    cfg = load_config(
        "configs/tiny.yaml",
        [
            f"policy.cache_dir={cache}",
            "loop.rounds=2",
            "world.holdout_topics=1",
            "world.holdout_facts=2",
            "audit.shifts=[operands, topics, facts]",
            "recalibration.method=reference",
            "audit.shift_prompts=6",
        ],
    )
    summary = run(cfg, out=out)
    return cfg, read_jsonl(out / "metrics.jsonl"), summary


def test_audit_metrics_every_round(audited):
    cfg, rows, summary = audited
    for r in rows[1:]:
        for f in cfg.audit.families:
            assert 0.0 <= r[f"audit/{f.name}_exploit_rate"] <= 1.0 and r[f"audit/{f.name}_dropped"] == 0
        for s in ("operands", "topics", "facts"):
            assert f"rm/shift_{s}_pairwise_acc" in r and 0.0 <= r[f"rm/shift_{s}_gold"] <= 1.0
        for k in ("all", "open", "closed"):
            assert r[f"recal/{k}_scale"] > 0
        assert {f"audit/alarm_{a}" for a in ("collapse", "saturation", "explosion", "exploit", "shift")} <= set(r)
    assert "audit/exploit_rate_max" not in rows[0]  # round 0 has no reward model
    assert set(summary["audit"]["alarms"]) == {"collapse", "saturation", "explosion", "exploit", "shift"}
    assert summary["audit_lead_exploit"] == summary["audit"]["alarms"]["exploit"]["lead_rounds"]


def test_audit_metrics_are_documented(audited):
    _, rows, _ = audited
    doc = Path("docs/metrics.md").read_text()
    names = {k for r in rows for k in r if k.startswith(AUDIT_PREFIXES)}
    assert names
    for k in names:
        # a concrete name is documented under its template: audit/{family}_..., rm/shift_{shift}_..., recal/{key}_...
        pats = [
            k,
            re.sub(r"^audit/[a-z_]+?_(exploit_rate|pairs|dropped|alarm)$", r"audit/{family}_\1", k),
            re.sub(r"^rm/shift_[a-z]+_", "rm/shift_{shift}_", k),
            re.sub(r"^recal/[a-z]+_", "recal/{key}_", k),
        ]
        assert any(f"`{p}`" in doc for p in pats), k
