"""The experiment file's study fields: primary / secondary endpoints, headline figures, design factors."""

from pathlib import Path

import pytest

from rlhfsim.config import ConfigError
from rlhfsim.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[2]
HEAD = "name: x\nquestion: q\nbase: {base}\nvariants: {{a: {{}}, b: {{optimizer.kl_coef: 0.2}}}}\n"


def _write(tmp_path, body: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(HEAD.format(base=ROOT / "configs" / "tiny.yaml") + body)
    return p


def test_study_fields_load():
    body = (
        "primary: {endpoint: gold_gain, better: higher}\nsecondary: [{endpoint: gold_drop_after_peak, better: higher}, "
        "{endpoint: final/eval/kl}]\nheadline: [effect_sizes, fig3_gold_vs_sqrt_kl]\nfactors: {kl: optimizer.kl_coef}\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        exp = load_experiment(_write(Path(d), body))
    s = exp.spec
    assert s.primary.endpoint == "gold_gain" and s.primary.better == "higher"
    assert [e.endpoint for e in s.secondary] == ["gold_drop_after_peak", "final/eval/kl"] and s.secondary[
        1
    ].better == "higher"
    assert s.headline == ["effect_sizes", "fig3_gold_vs_sqrt_kl"] and s.factors == {"kl": "optimizer.kl_coef"}
    rec = exp.resolved()  # the runs root's record keeps them, so a report of runs/<name> finds the answer's endpoint
    assert rec["primary"] == {"endpoint": "gold_gain", "better": "higher"}


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "primary: {endpoint: gold_gian}\n",
            ["primary.endpoint", "'gold_gian'", "did you mean 'gold_gain'", "gold_drop_after_peak"],
        ),
        ("secondary: [{endpoint: nope}]\n", ["secondary.0.endpoint", "not a summary column", "Valid:"]),
        ("primary: {endpoint: gold_gain, better: up}\n", ["primary.better", "higher", "lower"]),
        (
            "primary: {endpoint: gold_gain, dir: up}\n",
            ["primary.dir", "unknown key", "Valid keys: better, contrast, endpoint, margin"],
        ),
        ("primary: {endpoint: gold_gain, margin: -0.02}\n", ["primary.margin", "positive number", "-0.02"]),
        ("primary: {endpoint: gold_gain, margin: 0}\n", ["primary.margin", "positive number"]),
        ("primary: {endpoint: gold_gain, margin: true}\n", ["primary.margin", "positive number"]),
        ("primary: {endpoint: gold_gain, margin: wide}\n", ["primary.margin", "positive number", "'wide'"]),
        (
            "primary: {endpoint: gold_gain}\nsecondary: [{endpoint: gold_peak, margin: 0.1}]\n",
            ["secondary[0]", "margin", "primary endpoint only"],
        ),
        ("headline: [fig99]\n", ["headline", "fig99", "effect_sizes"]),
        # a sign error on an endpoint whose direction is fixed by definition (higher shape_rel = more collapsed)
        (
            "primary: {endpoint: collapse_shape_rel_final, better: higher}\n",
            ["primary", "closer to 0 is better", "declare better: closer"],
        ),
        ("secondary: [{endpoint: mean/adv/gold_corr, better: lower}]\n", ["secondary.0", "higher is better"]),
        (
            "primary: {endpoint: gold_gain}\nsecondary: [{endpoint: final/collapse/probe_shape_rel, better: higher}]\n",
            ["secondary.0", "closer to 0 is better"],
        ),
        ("factors: {kl: optimizer.kl_cof}\n", ["factors.kl", "optimizer.kl_cof", "kl_coef"]),
    ],
)
def test_bad_study_fields_are_refused_at_load(tmp_path, body, expected):
    with pytest.raises(ConfigError) as e:
        load_experiment(_write(tmp_path, body))
    for part in expected:
        assert part in str(e.value), (part, str(e.value))


def test_endpoints_without_a_fixed_direction_take_either():
    from rlhfsim.experiment.ids import BETTER, documented_better, summary_columns

    assert documented_better("kl_final") is None and documented_better("gold_peak_round") is None
    assert documented_better("final/eval/kl") is None and documented_better("mean/adv/gold_corr") == "higher"
    assert set(BETTER) <= set(summary_columns())  # every listed endpoint is a real summary column
    docs = (ROOT / "docs" / "metrics.md").read_text()
    section = docs.split("Endpoint directions", 1)[1]
    assert all(f"`{k}`" in section for k in BETTER), [k for k in BETTER if f"`{k}`" not in section]
    for lower in ("gold_peak_round: {better: lower}", "kl_final: {better: higher}"):
        name, rest = lower.split(": ", 1)
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            exp = load_experiment(
                _write(Path(d), f"primary: {{endpoint: {name}, better: {rest.split(': ')[1].rstrip('}')}}}\n")
            )
        assert exp.spec.primary.endpoint == name


def test_every_committed_experiment_declares_a_primary_endpoint():
    for p in sorted((ROOT / "experiments").glob("*.yaml")):
        exp = load_experiment(p, validate_configs=False)
        assert exp.spec.primary is not None, p.name


DOSE_HEAD = (
    "name: x\nquestion: q\nbase: {base}\nfactors: {{dial: surgery.dial}}\n"
    "variants: {{d0: {{surgery.dial: 0.0}}, d05: {{surgery.dial: 0.5}}, d1: {{surgery.dial: 1.0}}, ctl: {{surgery.profile: none}}}}\n"
)


def _dose(tmp_path, primary: str) -> Path:
    p = tmp_path / "dose.yaml"
    p.write_text(DOSE_HEAD.format(base=ROOT / "configs" / "propagation.yaml") + primary)
    return p


def test_a_dose_primary_that_ignores_a_declared_dose_is_refused(tmp_path):
    """Doses {0, 0.5, 1}: the OLS slope is y(1) - y(0), the 0.5 arm carries no weight; refused unless declared."""
    with pytest.raises(ConfigError) as e:
        load_experiment(_dose(tmp_path, "primary: {endpoint: gold_gain, better: higher}\n"), validate_configs=False)
    for part in ("primary", "0.5 zero weight", "primary.contrast", "primary.zero_weight_doses: [0.5]"):
        assert part in str(e.value), (part, str(e.value))
    ok = load_experiment(
        _dose(tmp_path, "primary: {endpoint: gold_gain, zero_weight_doses: [0.5]}\n"), validate_configs=False
    )
    assert ok.spec.primary.zero_weight_doses == [0.5]
    anyc = load_experiment(
        _dose(tmp_path, "primary: {endpoint: gold_gain, margin: 0.02, contrast: {0: -1, 0.5: 0.5, 1: 0.5}}\n"),
        validate_configs=False,
    )
    assert anyc.spec.primary.contrast == {0.0: -1.0, 0.5: 0.5, 1.0: 0.5} and anyc.spec.primary.margin == 0.02


@pytest.mark.parametrize(
    "primary, expected",
    [
        (
            "{endpoint: gold_gain, contrast: {0: -1, 1: 1}}",
            ["0.5 zero weight", "declared contrast"],
        ),  # 0.5 missing: weight 0
        ("{endpoint: gold_gain, contrast: {0: -1, 0.5: 0.5, 1: 1}}", ["sum to 0"]),
        ("{endpoint: gold_gain, contrast: {0: -1, 2: 1, 0.5: 0}}", ["dose(s) [2.0]", "not set by any variant"]),
        (
            "{endpoint: gold_gain, contrast: {0: -1, 0.5: 0.5, 1: 0.5}, zero_weight_doses: [0.5]}",
            ["gives no declared dose zero weight"],
        ),
    ],
)
def test_bad_dose_contrasts_are_refused(tmp_path, primary, expected):
    with pytest.raises(ConfigError) as e:
        load_experiment(_dose(tmp_path, f"primary: {primary}\n"), validate_configs=False)
    for part in expected:
        assert part in str(e.value), (part, str(e.value))


# ----------------------------------------------------------------------------- label factors, primary.where, phase diagram

SRC = (
    "name: x\nquestion: q\nbase: {base}\n"
    "variants: {{a_ppo_d0: {{surgery.dial: 0.0}}, a_ppo_d1: {{surgery.dial: 1.0}}, "
    "b_ppo_d0: {{surgery.dial: 0.0, loop.reward_source: gold}}, b_ppo_d1: {{surgery.dial: 1.0, loop.reward_source: gold}}}}\n"
)
SOURCE = "{levels: [a, b], keys: [loop.reward_source]}"


def _src(tmp_path, body: str) -> Path:
    p = tmp_path / "src.yaml"
    p.write_text(SRC.format(base=ROOT / "configs" / "propagation.yaml") + body)
    return p


def test_a_label_factor_and_a_restricted_primary_load_and_round_trip(tmp_path):
    from rlhfsim.experiment import parse_experiment

    body = (
        f"factors: {{dial: surgery.dial, optimizer: optimizer.name, source: {SOURCE}}}\n"
        "primary: {endpoint: gold_gain_late, margin: 0.02, where: {source: b}}\nheadline: [phase_diagram]\n"
    )
    exp = load_experiment(_src(tmp_path, body))
    assert exp.spec.factors["source"].levels == ["a", "b"] and exp.spec.primary.where == {"source": "b"}
    again = parse_experiment(exp.resolved())  # the runs root's record is itself a valid experiment file
    assert again.factors["source"].keys == ["loop.reward_source"] and again.primary.where == {"source": "b"}


@pytest.mark.parametrize(
    "body, expected",
    [
        # a variant whose name starts with no level
        (
            "factors: {dial: surgery.dial, source: {levels: [a, c]}}\n",
            ["factors.source", "b_ppo_d0", "start with none of its levels"],
        ),
        # the names say two levels but the configs are one setting of the keys
        (
            "factors: {dial: surgery.dial, source: {levels: [a, b], keys: [optimizer.name]}}\n",
            ["levels 'a' and 'b' have the same setting"],
        ),
        # one level's variants differ in a key
        (
            "factors: {dial: surgery.dial, source: {levels: [a, b], keys: [surgery.dial]}}\n",
            ["at level 'a' differ in its keys"],
        ),
        (
            "factors: {dial: surgery.dial, source: {levels: [a, b], keys: [loop.reward_sauce]}}\n",
            ["factors.source", "'loop.reward_sauce'"],
        ),
        ("factors: {dial: surgery.dial, source: {levels: [a]}}\n", ["factors.source", "at least 2"]),
        (
            f"factors: {{dial: surgery.dial, source: {SOURCE}}}\nprimary: {{endpoint: gold_gain, where: {{source: c}}}}\n",
            ["primary.where.source", "'c' is not one of its levels"],
        ),
        (
            f"factors: {{dial: surgery.dial, source: {SOURCE}}}\nprimary: {{endpoint: gold_gain, where: {{sauce: a}}}}\n",
            ["primary.where", "'sauce' is not a design factor"],
        ),
        (
            f"factors: {{dial: surgery.dial, source: {SOURCE}}}\nprimary: {{endpoint: gold_gain, where: {{dial: 1}}}}\n",
            ["primary.where.dial", "dose factor cannot be restricted"],
        ),
        (
            "factors: {dial: surgery.dial, optimizer: optimizer.name}\nprimary: {endpoint: gold_gain, where: {optimizer: rloo}}\n",
            ["primary.where.optimizer", "no variant is at 'rloo'", "ppo"],
        ),
        (
            f"factors: {{source: {SOURCE}}}\nprimary: {{endpoint: gold_gain, where: {{source: a}}}}\n",
            ["primary.where", "needs a dose factor"],
        ),
        ("secondary: [{endpoint: gold_gain, where: {source: a}}]\n", ["secondary[0]", "where"]),
        # the phase diagram needs dose, source and exactly one more factor
        (
            f"factors: {{dial: surgery.dial, source: {SOURCE}}}\nheadline: [phase_diagram]\n",
            ["phase_diagram needs factors", "'source'"],
        ),
        (
            "factors: {dial: surgery.dial, optimizer: optimizer.name}\nheadline: [phase_diagram]\n",
            ["phase_diagram needs factors"],
        ),
    ],
)
def test_ill_posed_factor_designs_are_refused(tmp_path, body, expected):
    with pytest.raises(ConfigError) as e:
        load_experiment(_src(tmp_path, body))
    for part in expected:
        assert part in str(e.value), (part, str(e.value))


def test_the_phase_diagram_study_file_declares_source_and_the_gold_only_primary():
    exp = load_experiment(ROOT / "experiments" / "phase_diagram.yaml")
    src = exp.spec.factors["source"]
    assert src.levels == ["gold", "rho0.6", "rho0.3", "realistic", "weak"] and exp.spec.primary.where == {
        "source": "gold"
    }
    assert exp.spec.primary.margin == 0.02 and exp.spec.primary.endpoint == "gold_gain_late" and len(exp.variants) == 20
    assert exp.spec.headline[0] == "phase_diagram"


def test_realistic_regime_studies_declare_ten_paired_seeds_and_an_equivalence_margin():
    """Issue 32: every realistic-regime re-ask (experiments/*_realistic.yaml) runs >= 10 paired seeds on the realistic
    preset and declares its primary's TOST margin before it runs."""
    files = sorted((ROOT / "experiments").glob("*_realistic.yaml"))
    assert len(files) >= 15, [p.name for p in files]
    for p in files:
        exp = load_experiment(p, validate_configs=False)
        assert len(exp.spec.seeds) >= 10, p.name
        assert exp.spec.primary is not None and exp.spec.primary.margin, p.name
        assert exp.spec.base is not None and Path(exp.spec.base).name == "realistic.yaml", p.name
        assert exp.spec.rounds_override is None, p.name  # the preset's 15 rounds


def test_the_realistic_ensembles_run_m1_once_per_kl_weight():
    """Issue 32: the m5_mean file of each KL weight runs m1; its 5 siblings borrow it (`from:`), which loading checks
    seed by seed against their own base + overrides, so a sibling edited into another config fails here."""
    files = sorted((ROOT / "experiments").glob("ensembles_*_realistic.yaml"))
    lenders = {}
    for p in files:
        if p.name == "ensembles_bon_realistic.yaml":  # best-of-n from the SFT policy: its bon_m1 is another config
            continue
        exp = load_experiment(p)
        assert exp.baseline == "m1", p.name
        if p.name.startswith("ensembles_m5_mean_"):
            assert not exp.lenders, p.name
            continue
        weak = "_weakkl" if "_weakkl_" in p.name else ""
        assert exp.lenders["m1"].file.name == f"ensembles_m5_mean{weak}_realistic.yaml", p.name
        lenders[p.name] = exp.lenders["m1"].file.name
    assert len(lenders) == 10, lenders
