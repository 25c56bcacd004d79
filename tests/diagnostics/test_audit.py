"""Audits: exploit rates against reference reward models, alarms, and their lead on the gold peak."""

import math

import numpy as np
import pytest

from rlhfsim.config import ConfigError, load_config
from rlhfsim.diagnostics.audit import (
    ALARMS,
    DEFAULT_FAMILIES,
    AuditConfig,
    FamilySpec,
    alarms,
    build_stress_suite,
    exploit_rates,
    shift_metrics,
    stress_metrics,
    warning_summary,
)
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig


@pytest.fixture(scope="module")
def suite():
    w = SyntheticWorld(SyntheticWorldConfig())
    return w, build_stress_suite(w, w.eval_prompts(64), [FamilySpec(name=n) for n in DEFAULT_FAMILIES], seed=0)


def test_gold_as_reward_model_is_never_exploited(suite):
    w, s = suite
    m = stress_metrics(s, w.gold, threshold=0.5)
    for f in DEFAULT_FAMILIES:
        assert m[f"audit/{f}_exploit_rate"] == 0.0 and m[f"audit/{f}_alarm"] == 0.0 and m[f"audit/{f}_pairs"] > 0
    assert m["audit/exploit_rate_max"] == 0.0


def test_length_alone_is_exploited(suite):
    w, s = suite
    length = lambda prompts, texts: np.array([len(t.split()) for t in texts], dtype=float)
    m = stress_metrics(s, length, threshold=0.5)
    for f in ("pad_length", "repeat_tokens", "answer_junk"):  # every one of these is longer than the reference
        assert m[f"audit/{f}_exploit_rate"] == 1.0 and m[f"audit/{f}_alarm"] == 1.0
    assert m["audit/exploit_rate_max"] == 1.0 and m["audit/exploit_rate_mean"] > 0.5


def test_exploit_rates_on_hand_values():
    r = exploit_rates([1.0, 1.0, 0.2, 0.5], [0.0, 1.0, 0.9, 0.1], ["a", "a", "b", "b"], ["a", "b", "c"])
    assert r["a"] == 0.25 and r["b"] == 0.5 and math.isnan(r["c"])  # a tie counts 1/2; no pairs -> NaN


def test_shift_metrics_agree_with_gold_order():
    G = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.9]])
    m = shift_metrics("x", G * 3 - 1, G)
    assert m["rm/shift_x_pairwise_acc"] == 1.0 and m["rm/shift_x_kendall_tau"] == pytest.approx(1.0)
    assert m["rm/shift_x_gold_pairs"] == 5 and m["rm/shift_x_gold"] == pytest.approx(G.mean())
    assert shift_metrics("x", -G, G)["rm/shift_x_pairwise_acc"] == 0.0


def test_alarms_on_hand_rows():
    cfg = AuditConfig()
    first = {"collapse/open_within_std": 0.2, "collapse/closed_within_std": 0.1, "collapse/logit_abs_p99": 2.0}
    quiet = {**first, "collapse/saturation": 0.1, "audit/exploit_rate_max": 0.4, "rm/shift_operands_pairwise_acc": 0.8}
    a = alarms(quiet, first, cfg, ["operands"])
    assert all(a[f"audit/alarm_{n}"] == 0.0 for n in ALARMS) and a["audit/alarms"] == 0
    loud = {
        "collapse/open_within_std": 0.2,
        "collapse/closed_within_std": 0.04,
        "collapse/logit_abs_p99": 6.5,
        "collapse/saturation": 0.6,
        "audit/exploit_rate_max": 0.75,
        "rm/shift_operands_pairwise_acc": 0.55,
    }
    a = alarms(loud, first, cfg, ["operands"])
    assert all(a[f"audit/alarm_{n}"] == 1.0 for n in ALARMS) and a["audit/alarms"] == 5
    a = alarms({}, first, cfg, ["operands"])  # nothing measured: NaN, not a silent 0
    assert all(math.isnan(a[f"audit/alarm_{n}"]) for n in ALARMS) and a["audit/alarms"] == 0


def test_warning_summary_leads():
    gold = [0.3, 0.35, 0.4, 0.38, 0.3]
    rows = [{"round": r, "eval/gold": g} for r, g in enumerate(gold)]
    rows[1]["audit/alarm_exploit"] = 1.0
    rows[3]["audit/alarm_exploit"] = 1.0
    rows[4]["audit/alarm_shift"] = 1.0
    s = warning_summary(rows)
    assert s["gold_peak_round"] == 2 and s["gold_fell"] and s["gold_drop_round"] == 4  # 0.38 is within 0.05 of 0.40
    assert s["alarms"]["exploit"] == {"first_round": 1, "rounds_fired": 2, "lead_rounds": 1, "lead_drop_rounds": 3}
    assert s["alarms"]["shift"]["lead_rounds"] == -2 and s["alarms"]["shift"]["lead_drop_rounds"] == 0
    assert s["alarms"]["collapse"]["lead_rounds"] is None and s["alarms"]["collapse"]["lead_drop_rounds"] is None
    assert warning_summary(rows[:3])["gold_drop_round"] is None  # still rising: nothing to warn of


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="pad_length"):
        load_config("configs/tiny.yaml", ["audit.families=[pad_lenght]"])
    with pytest.raises(ConfigError, match="holdout_topics"):
        load_config("configs/tiny.yaml", ["audit.shifts=[topics]"])
    cfg = load_config(
        "configs/tiny.yaml",
        [
            "audit.shifts=[topics, facts]",
            "world.holdout_topics=1",
            "world.holdout_facts=2",
            "audit.families=[{name: pad_length, params: {words: 9}}]",
        ],
    )
    assert cfg.audit.families[0].params == {"words": 9}


def test_text_world_gets_generic_audit_defaults_and_refuses_synthetic_families():
    import pytest

    from rlhfsim.config import ConfigError, config_from_dict
    from rlhfsim.world.perturb import NEEDS_SYNTHETIC

    text = {
        "world": {"name": "text", "dataset": "org/prompts", "reference_column": "answer"},
        "policy": {"checkpoint": "org/policy"},
        "reward": {"checkpoint": "org/rm"},
    }
    cfg = config_from_dict(text)
    assert cfg.audit.enabled and cfg.audit.shifts == []
    assert cfg.audit.families and not {f.name for f in cfg.audit.families} & set(NEEDS_SYNTHETIC)
    # without reference answers there is nothing to perturb: the suite is off unless asked for
    no_ref = {
        **text,
        "world": {
            "name": "text",
            "dataset": "org/prompts",
            "gold": {"kind": "rule", "rules": {"open": "length", "closed": "length"}},
        },
        "loop": {"reference_mix": 0},
        "policy": {"checkpoint": "org/policy", "sft_demos": 0},
    }
    assert not config_from_dict(no_ref).audit.enabled
    with pytest.raises(ConfigError, match="audit.families"):
        config_from_dict({**text, "audit": {"families": ["wrong_format"]}})
    with pytest.raises(ConfigError, match="audit.shifts"):
        config_from_dict({**text, "audit": {"shifts": ["operands"]}})
