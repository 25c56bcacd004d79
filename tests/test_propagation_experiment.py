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
    """The run config of one variant (base file, base_overrides, the variant's dotted overrides)."""
    s = spec(path)
    raw = read_yaml((path.parent / s["base"]).resolve())
    for key, value in {**s.get("base_overrides", {}), **overrides}.items():
        set_dotted(raw, key, value)
    return config_from_dict(raw)


def test_design_floors_and_declared_endpoints():
    s = spec()
    seeds = s["seeds"] if isinstance(s["seeds"], int) else len(s["seeds"])
    loop = build(EXP, {}).loop
    assert seeds >= 10 and loop.rounds >= 15 and loop.eval_prompts >= 256 and loop.eval_completions >= 8
    assert s["primary"]["endpoint"] and s["primary"]["better"] in ("higher", "lower")
    assert all(e["better"] in ("higher", "lower") for e in s["secondary"])
    cfgs = {name: build(EXP, x) for name, x in s["variants"].items()}
    for opt in ("ppo", "grpo", "rloo"):
        dials = sorted(
            c.surgery.dial for c in cfgs.values() if c.optimizer.name == opt and c.loop.reward_source == "learned"
        )
        assert dials == [0.0, 0.5, 1.0], opt
        assert {
            c.surgery.profile for c in cfgs.values() if c.optimizer.name == opt and c.loop.reward_source == "learned"
        } == {"pooled"}
    assert cfgs["online_dpo"].optimizer.name == "online_dpo" and cfgs["gold"].loop.reward_source == "gold"
    assert all(c.optimizer.group_size > 1 for c in cfgs.values())  # surgery needs each prompt's completions together
    assert len({(c.optimizer.batch_size, c.optimizer.iterations, c.optimizer.epochs) for c in cfgs.values()}) == 1
    assert s["baseline"] in cfgs


def test_every_variant_of_both_studies_builds():
    for path in STUDIES:
        s = spec(path)
        assert s["primary"]["endpoint"] and s["baseline"] in s["variants"]
        for name, overrides in s["variants"].items():
            cfg = build(path, overrides)
            assert cfg.world.name == "graded" and cfg.reward.is_bounded, (path.name, name)
    terminal = build(STUDIES[1], spec(STUDIES[1])["variants"]["terminal"])
    assert terminal.reward.early_stop.mode == "none" and terminal.reward.epochs >= 100 and terminal.loop.diagnose_train
