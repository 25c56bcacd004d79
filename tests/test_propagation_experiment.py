"""experiments/propagation.yaml keeps the design the issue fixes in advance, and its non-optimiser keys are valid."""

from pathlib import Path

import yaml

from rlhfsim.config import config_from_dict, read_yaml, set_dotted

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "propagation.yaml"


def spec() -> dict:
    return yaml.safe_load(EXP.read_text())


def test_design_floors_and_declared_endpoints():
    s = spec()
    o = s["base_overrides"]
    seeds = s["seeds"] if isinstance(s["seeds"], int) else len(s["seeds"])
    assert seeds >= 10 and o["loop.rounds"] >= 15 and o["loop.eval_prompts"] >= 256 and o["loop.eval_completions"] >= 8
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
    s = spec()
    base = read_yaml((EXP.parent / s["base"]).resolve())
    for name, overrides in s["variants"].items():
        raw = yaml.safe_load(yaml.safe_dump(base))
        for key, value in {**s["base_overrides"], **overrides}.items():
            if not key.startswith("optimizer."):  # issue 18's section, validated once it is merged
                set_dotted(raw, key, value)
        cfg = config_from_dict(raw)
        assert cfg.world.name == "graded" and cfg.reward.is_bounded, name
