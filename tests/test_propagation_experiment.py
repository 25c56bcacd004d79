"""experiments/propagation.yaml and terminal_collapse.yaml keep the design the issue fixes in advance, and their
non-optimiser keys are valid."""

from pathlib import Path

import yaml

from rlhfsim.config import config_from_dict, read_yaml, set_dotted

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "propagation.yaml"
STUDIES = [EXP, ROOT / "experiments" / "terminal_collapse.yaml"]


def spec(path=EXP) -> dict:
    return yaml.safe_load(path.read_text())


def build(path, overrides: dict):
    """The run config of one variant, without issue 18's optimizer section (validated once it is merged)."""
    s = spec(path)
    raw = read_yaml((path.parent / s["base"]).resolve())
    for key, value in {**s.get("base_overrides", {}), **overrides}.items():
        if not key.startswith("optimizer."):
            set_dotted(raw, key, value)
    return config_from_dict(raw)


def test_design_floors_and_declared_endpoints():
    s = spec()
    seeds = s["seeds"] if isinstance(s["seeds"], int) else len(s["seeds"])
    loop = build(EXP, {}).loop
    assert seeds >= 10 and loop.rounds >= 15 and loop.eval_prompts >= 256 and loop.eval_completions >= 8
    assert s["primary"]["endpoint"] and s["primary"]["better"] in ("higher", "lower")
    assert all(e["better"] in ("higher", "lower") for e in s["secondary"])
    v = s["variants"]
    for opt in ("ppo", "grpo", "rloo"):
        dials = sorted(x["surgery.dial"] for x in v.values() if x.get("optimizer.name") == opt and "surgery.dial" in x and "reward.epochs" not in x)
        assert dials == [0.0, 0.5, 1.0], opt
    assert v["online_dpo"]["optimizer.name"] == "online_dpo" and v["gold"]["loop.reward_source"] == "gold"
    assert all(x.get("optimizer.group_size", 1) > 1 for x in v.values())  # surgery needs each prompt's completions together
    assert s["baseline"] in v


def test_every_variant_builds_on_current_config_apart_from_the_optimizer_section():
    for path in STUDIES:
        s = spec(path)
        assert s["primary"]["endpoint"] and s["baseline"] in s["variants"]
        for name, overrides in s["variants"].items():
            cfg = build(path, overrides)
            assert cfg.world.name == "graded" and cfg.reward.is_bounded, (path.name, name)
    terminal = build(STUDIES[1], spec(STUDIES[1])["variants"]["terminal"])
    assert terminal.reward.early_stop.mode == "none" and terminal.reward.epochs >= 100 and terminal.loop.diagnose_train
