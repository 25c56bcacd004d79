"""A world added as a plug-in: this one file holds the whole world (its World, its config section, and its
registration), and a 1-round tiny loop runs on it. docs/architecture.md ("Adding a world") walks through it; a world
inside the package puts the section in rlhfsim/world/config.py instead, so config loading never imports world code.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pytest
import yaml
from pydantic import Field

from rlhfsim.world.base import Prompt, World
from rlhfsim.world.config import WorldBase, register_world, unregister_world
from rlhfsim.world.tokenizer import build_word_tokenizer

COLOURS = ("red", "green", "blue", "gold", "grey", "pink")


class EchoWorldConfig(WorldBase):
    """Echo: "say <colour> =" wants exactly that colour (closed); "list =" is graded by distinct colours (open)."""

    impl: ClassVar[str] = f"{__name__}:EchoWorld"  # "module:factory"; the factory gets (cfg) as `context` is empty

    name: Literal["echo"] = Field("echo", description="World registry name.")
    seed: int = Field(0, ge=0, description="World seed: fixes the eval prompts.")
    say_frac: float = Field(0.5, ge=0, le=1, description="Share of closed 'say <colour> =' prompts.")


class EchoWorld(World):
    prompt_types = ["open", "closed"]
    families = ["say", "list"]

    def __init__(self, cfg: EchoWorldConfig):
        self.cfg = cfg
        self.tokenizer = build_word_tokenizer(["say", "list", "=", *COLOURS])

    def _prompt(self, rng: np.random.Generator, id: int) -> Prompt:
        if rng.random() < self.cfg.say_frac:
            c = COLOURS[rng.integers(len(COLOURS))]
            return Prompt(id, "say", "closed", f"say {c} =", answer=c)
        return Prompt(id, "list", "open", "list =")

    def sample_prompts(self, n, rng):
        return [self._prompt(rng, int(i)) for i in rng.integers(2**32, 2**62, size=n)]  # never an eval id 0..n-1

    def eval_prompts(self, n, shift=None):
        rng = np.random.default_rng([self.cfg.seed, 1])
        return [self._prompt(rng, i) for i in range(n)]

    def gold(self, prompts, completions):
        return np.array(
            [
                float(c.split() == [p.answer]) if p.answer else len(set(c.split()) & set(COLOURS)) / len(COLOURS)
                for p, c in zip(prompts, completions)
            ]
        )

    def demonstrations(self, n, rng):
        noisy = lambda p: (
            str(rng.choice(COLOURS)) if p.answer else " ".join(rng.choice(COLOURS, size=rng.integers(1, 5)))
        )  # noqa: E731
        return [
            (p, self.reference_completion(p) if rng.random() < 0.5 else noisy(p)) for p in self.sample_prompts(n, rng)
        ]

    def reference_completion(self, prompt):
        return prompt.answer or " ".join(COLOURS)


# ---------------------------------------------------------------------------------------------------------- the tests


@pytest.fixture
def echo():
    """The registration a plug-in does once at import (`register_world(EchoWorldConfig)`, or the decorator), undone
    after each test so the other tests see the package's worlds only."""
    register_world(EchoWorldConfig)
    yield EchoWorldConfig
    unregister_world("echo")


def test_a_registered_world_loads_builds_and_runs_one_round(echo, tmp_path, sft_cache):
    from rlhfsim.config import load_config
    from rlhfsim.loop import run
    from rlhfsim.tracking import read_jsonl
    from rlhfsim.world import WORLDS, build_world

    assert WORLDS["echo"] == (EchoWorldConfig, EchoWorld)
    assert isinstance(build_world({"name": "echo", "say_frac": 1.0}), EchoWorld)
    cfg = load_config(
        "configs/tiny.yaml", ["world.name=echo", "world.say_frac=0.7", "loop.rounds=1", f"policy.cache_dir={sft_cache}"]
    )
    assert isinstance(cfg.world, EchoWorldConfig) and cfg.world.say_frac == 0.7
    # the base's audit defaults: text perturbations any world can take, no shifted sets (echo declares none)
    assert cfg.audit.shifts == [] and {f.name for f in cfg.audit.families} == {
        "append_junk",
        "echo_prompt",
        "pad_length",
        "repeat_tokens",
    }
    summary = run(cfg, out=tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1] and isinstance(summary, dict)
    assert 0 <= rows[1]["eval/gold"] <= 1 and "rm/pairwise_acc" in rows[1]


def test_the_world_s_checks_run_against_the_whole_config(echo):
    from rlhfsim.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"policy.checkpoint needs world.name: text \(the echo world has its own"):
        config_from_dict({"world": {"name": "echo"}, "policy": {"checkpoint": "org/policy"}})
    with pytest.raises(ConfigError, match="audit.shifts: unknown shift 'operands'; this world has"):
        config_from_dict({"world": {"name": "echo"}, "audit": {"shifts": ["operands"]}})
    with pytest.raises(ConfigError, match=r"audit.families: \['topic_words'\] need the synthetic world"):
        config_from_dict({"world": {"name": "echo"}, "audit": {"families": ["topic_words"]}})
    with pytest.raises(ConfigError, match="world.say_frac"):
        config_from_dict({"world": {"name": "echo", "say_frac": 2}})


def test_unknown_world_names_list_the_registered_ones_and_exit_2(echo, tmp_path, capsys):
    from rlhfsim.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"world": {"name": "ecco"}}))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert "'ecco'" in out and all(f"'{n}'" in out for n in ("synthetic", "graded", "text", "echo"))
    unregister_world("echo")
    try:
        path.write_text(yaml.safe_dump({"world": {"name": "echo"}}))
        assert main(["validate", str(path)]) == 2  # unregistered: unknown again
        assert "'echo'" in capsys.readouterr().out
    finally:
        register_world(EchoWorldConfig)  # the fixture unregisters it


def test_a_section_must_name_its_world_and_factory():
    class NoImpl(WorldBase):
        name: Literal["noimpl"] = "noimpl"

    with pytest.raises(TypeError, match="module:attribute"):
        register_world(NoImpl)
    with pytest.raises(TypeError, match="declares name"):
        register_world(type("Nameless", (WorldBase,), {"impl": "x:y"}))

    class Twin(WorldBase):
        impl: ClassVar[str] = "x:y"
        name: Literal["synthetic"] = "synthetic"

    with pytest.raises(ValueError, match="already registered"):
        register_world(Twin)
