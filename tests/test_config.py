import pytest
import yaml

from rlhfsim.cli import main
from rlhfsim.config import Config, ConfigError, config_from_dict, dump_config, load_config
from rlhfsim.config_docs import schema_markdown


def err(raw: dict) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    return str(e.value)


def test_defaults_fill_every_field_and_round_trip():
    cfg = config_from_dict({})
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    assert cfg.loop.completions_per_prompt >= 2


def test_quickstart_loads():
    cfg = load_config("configs/quickstart.yaml")
    assert cfg.output.experiment == "quickstart"


def test_unknown_key_suggests_close_name():
    msg = err({"optimizer": {"kl_cof": 0.1}})
    assert "optimizer.kl_cof" in msg and "kl_coef" in msg


def test_unknown_top_level_section():
    msg = err({"polcy": {}})
    assert "polcy" in msg and "policy" in msg


def test_wrong_type_names_field_and_value():
    msg = err({"loop": {"rounds": "many"}})
    assert "loop.rounds" in msg and "many" in msg


def test_out_of_range():
    msg = err({"loop": {"annotator": {"flip_rate": 0.9}}})
    assert "loop.annotator.flip_rate" in msg and "0.5" in msg


def test_cross_field_checks():
    assert "minibatches" in err({"optimizer": {"batch_size": 10, "minibatches": 3}})
    assert "n_head" in err({"policy": {"n_embd": 30, "n_head": 4}})


def test_unknown_utility_lists_valid_names():
    msg = err({"reward": {"utility": "logsigmod"}})
    assert "logsigmoid" in msg


def test_bounded_utility_refuses_unbounded_rewards():
    msg = err({"reward": {"utility": "inv", "bounded": False}})
    assert "bounded" in msg


def test_prompt_aware_unknown_type():
    assert "prompt type" in err({"reward": {"prompt_aware": {"opne": "inv"}}})


def test_overrides_are_parsed_as_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\n")
    cfg = load_config(
        p, ["optimizer.kl_coef=0.2", "loop.buffer=window", "reward.prompt_aware={open: inv, closed: linear}"]
    )
    assert cfg.optimizer.kl_coef == 0.2 and cfg.loop.buffer == "window"
    assert cfg.reward.prompt_aware["open"].name == "inv"
    assert cfg.reward.is_bounded


def test_path_escape_in_names_refused():
    assert "path separators" in err({"output": {"variant": "../x"}})


@pytest.mark.parametrize(
    "text, needle",
    [("seed: [1, 2\n", "malformed YAML"), ("- a\n- b\n", "mapping"), ("loop:\n  rounds: -1\n", "loop.rounds")],
)
def test_validate_cli_exit_code_2(tmp_path, capsys, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    assert main(["validate", str(p)]) == 2
    assert needle in capsys.readouterr().out


def test_validate_missing_file(capsys):
    assert main(["validate", "no/such.yaml"]) == 2
    assert "not found" in capsys.readouterr().out


def test_schema_documents_every_section():
    md = schema_markdown()
    for section in ("world", "policy", "reward", "optimizer", "loop", "loop.annotator", "output"):
        assert f"`{section}`" in md
    assert Config.model_fields["seed"].description in md


# what `import rlhfsim.config` may load of ours: the root, the strict base, the light config modules beside the code
# each section configures, package __init__s (lazy: they import nothing else of ours), and the names of installed
# assets that `real:<name>` values are checked against (standard library only)
LIGHT = {"rlhfsim.config", "rlhfsim.schema", "rlhfsim.loop_config", "rlhfsim.world.text_config", "rlhfsim.real.assets"}


def test_importing_config_imports_no_torch_transformers_or_implementation_module():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import json, sys, rlhfsim.config; "
        "print(json.dumps({m: hasattr(v, '__path__') for m, v in sys.modules.items() if v is not None}))"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout)  # module name -> is a package
    assert not set(loaded) & {"torch", "transformers", "datasets", "numpy", "pandas", "scipy", "sklearn", "gguf"}
    ours = {m: pkg for m, pkg in loaded.items() if m == "rlhfsim" or m.startswith("rlhfsim.")}
    assert {"rlhfsim.reward.config", "rlhfsim.models.config", "rlhfsim.world.config", "rlhfsim.loop_config"} <= set(
        ours
    )
    heavy = sorted(m for m, pkg in ours.items() if not (pkg or m in LIGHT or m.endswith(".config")))
    assert heavy == []


def test_the_old_compute_ppo_micro_batch_is_read_as_policy_micro_batch_with_a_warning(caplog, tmp_path):
    from rlhfsim.config import renamed_keys
    from rlhfsim.sweep.plan import config_differences

    with caplog.at_level("WARNING"):
        cfg = config_from_dict({"compute": {"ppo_micro_batch": 8}})
    assert cfg.compute.policy_micro_batch == 8
    assert "compute.ppo_micro_batch is deprecated: it was renamed compute.policy_micro_batch" in caplog.text
    assert load_config("configs/tiny.yaml", ["compute.ppo_micro_batch=4"]).compute.policy_micro_batch == 4  # --set too
    assert "give only policy_micro_batch" in err({"compute": {"ppo_micro_batch": 8, "policy_micro_batch": 8}})
    assert "ppo_micro_batch" not in dump_config(cfg)
    # an older run directory's config.yaml: the same config to the sweep's planning and to the report
    old = Config().model_dump(mode="json")
    old["compute"] = {("ppo_micro_batch" if k == "policy_micro_batch" else k): v for k, v in old["compute"].items()}
    assert renamed_keys(old) == Config().model_dump(mode="json")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert config_differences(tmp_path, Config().model_dump(mode="json")) == []


def test_section_names_are_reexported_from_config():
    import importlib

    import rlhfsim.config as root

    homes = {
        "RewardConfig": "rlhfsim.reward.config",
        "SurgeryConfig": "rlhfsim.reward.config",
        "RecalibrationConfig": "rlhfsim.reward.config",
        "PolicyConfig": "rlhfsim.models.config",
        "ComputeConfig": "rlhfsim.models.config",
        "LoopConfig": "rlhfsim.loop_config",
        "GuardsConfig": "rlhfsim.loop_config",
        "AuditConfig": "rlhfsim.diagnostics.config",
        "SyntheticWorldConfig": "rlhfsim.world.config",
        "AnnotatorConfig": "rlhfsim.world.config",
    }
    for name, home in homes.items():
        assert getattr(root, name) is getattr(importlib.import_module(home), name)
    for name in root.__all__:
        assert hasattr(root, name), name


def test_iterated_rlhf_fields_are_checked_with_the_fix_named():
    assert "loop.buffer_total" in err({"loop": {"buffer": "equal_share"}})
    assert "drop loop.buffer_total" in err({"loop": {"buffer_total": 10}})
    assert "policy_start: interpolate" in err({"loop": {"liti_eta": 0.2}})
    assert "loop.inner_eval.prompts" in err({"loop": {"inner_eval": {"every": 2, "prompts": 200}, "eval_prompts": 16}})
    assert "continue" in err({"loop": {"policy_start": "restart"}}) and "round_start" in err(
        {"loop": {"kl_anchor": "x"}}
    )
    cfg = config_from_dict(
        {"loop": {"policy_start": "interpolate", "liti_eta": 0.2, "buffer": "prompt_once", "buffer_total": 8}}
    )
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg  # resolved configs round-trip (resume reads them)
