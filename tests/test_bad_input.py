"""Bad input everywhere: each case must exit with code 2, print a message naming the problem and the fix,
print no traceback, and leave any run directory it touched byte for byte as it was."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from rlhfsim.cli import main
from rlhfsim.config import load_config
from rlhfsim.loop import run

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, sft_cache):
    """A finished 1-round tiny run; cases that need a run directory get a copy of it."""
    out = tmp_path_factory.mktemp("finished") / "seed0"
    run(load_config(TINY, [f"policy.cache_dir={sft_cache}", "loop.rounds=1"]), out=out)
    return out


def fingerprint(d: Path) -> dict:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def yaml_case(text: str):
    def make(t: Path, run_dir: Path, cache: str) -> list[str]:
        (t / "bad.yaml").write_text(text)
        return ["validate", str(t / "bad.yaml")]

    return make


def resume_case(*extra: str, edit=None):
    """`rlhfsim run --resume RUN_DIR ...` on a copy of the finished run, after `edit(run_dir)`."""

    def make(t: Path, run_dir: Path, cache: str) -> list[str]:
        if edit is not None:
            edit(run_dir)
        return ["run", "--resume", str(run_dir), *[a.format(t=t, run=run_dir, tiny=TINY) for a in extra]]

    return make


def _json_edit(rel: str, **changes):
    def edit(run_dir: Path) -> None:
        p = run_dir / rel
        p.write_text(json.dumps({**json.loads(p.read_text()), **changes}))

    return edit


def _write(rel: str, data: bytes):
    return lambda run_dir: (run_dir / rel).write_bytes(data)


def _pickle_object(run_dir: Path) -> None:
    torch.save({"round": 1, "evil": Path("x")}, run_dir / "checkpoints" / "latest" / "state.pt")  # not tensors: refused


def _other_config(t: Path) -> None:
    (t / "other.yaml").write_text(Path(TINY).read_text().replace("reward: {", "reward: {lr: 0.01, "))


def _run(*args: str):
    def make(t: Path, run_dir: Path, cache: str) -> list[str]:
        (t / "afile").write_text("x")
        _other_config(t)
        return [a.format(t=t, run=run_dir, tiny=TINY, cache=cache) for a in args]

    return make


# (id, builder, strings the message must contain: the field/file, and the fix)
CASES = [
    ("malformed_yaml", yaml_case("seed: [1, 2\n"), ["bad.yaml", "malformed YAML", "line"]),
    ("top_level_list", yaml_case("- a\n- b\n"), ["bad.yaml", "must be a mapping"]),
    ("empty_file", yaml_case("# only a comment\n"), ["bad.yaml", "the file is empty"]),
    ("old_ppo_section", yaml_case("ppo: {kl_coef: 0.1}\n"), ["`ppo:` section is now `optimizer:`", "name: ppo"]),
    ("unknown_optimizer", yaml_case("optimizer: {name: ppoo}\n"), ["optimizer", "'ppoo'", "'grpo'", "'online_dpo'"]),
    (
        "group_divides_batch",
        yaml_case("optimizer: {name: grpo, batch_size: 10, group_size: 4}\n"),
        ["optimizer", "group_size (4) must divide batch_size (10)"],
    ),
    ("python_tag_refused", yaml_case("seed: !!python/object/apply:os.getpid []\n"), ["bad.yaml", "malformed YAML"]),
    ("unknown_section", yaml_case("polcy: {n_layer: 1}\n"), ["polcy", "did you mean 'policy'"]),
    ("unknown_key", yaml_case("optimizer: {kl_cof: 0.1}\n"), ["optimizer.kl_cof", "did you mean 'kl_coef'"]),
    ("wrong_type", yaml_case("loop: {rounds: many}\n"), ["loop.rounds", "valid integer", "'many'"]),
    (
        "out_of_range",
        yaml_case("loop: {annotator: {flip_rate: 0.9}}\n"),
        ["loop.annotator.flip_rate", "less than or equal to 0.5"],
    ),
    ("negative_rounds", yaml_case("loop: {rounds: -1}\n"), ["loop.rounds", "greater than or equal to 1"]),
    (
        "heads_divide_width",
        yaml_case("policy: {n_embd: 30, n_head: 4}\n"),
        ["policy", "n_embd (30) must be divisible by n_head (4)"],
    ),
    (
        "minibatches_divide",
        yaml_case("optimizer: {batch_size: 10, minibatches: 3}\n"),
        ["optimizer", "minibatches (3) must divide batch_size (10)"],
    ),
    ("unknown_utility", yaml_case("reward: {utility: logsigmod}\n"), ["reward.utility", "logsigmoid"]),
    ("bounded_needed", yaml_case("reward: {utility: inv, bounded: false}\n"), ["reward", "set reward.bounded: true"]),
    (
        "prompt_aware_type",
        yaml_case("reward: {prompt_aware: {opne: inv}}\n"),
        ["reward.prompt_aware", "'opne'", "open"],
    ),
    ("variant_escape", yaml_case("output: {variant: ../../etc}\n"), ["output.variant", "without path separators"]),
    ("experiment_slash", yaml_case("output: {experiment: a/b}\n"), ["output.experiment", "without path separators"]),
    (
        "bad_guard_mode",
        yaml_case("guards: {on_divergence: explode}\n"),
        ["guards.on_divergence", "'stop' or 'skip_round'"],
    ),
    ("bad_reward_bound", yaml_case("guards: {max_abs_reward: -1}\n"), ["guards.max_abs_reward", "greater than 0"]),
    ("bad_device", yaml_case("device: tpu\n"), ["device", "'auto', 'cpu' or 'cuda'"]),
    ("world_range", yaml_case("world: {n_facts: 0}\n"), ["world.n_facts", "greater than or equal to 1"]),
    ("missing_file", _run("validate", "{t}/nope.yaml"), ["nope.yaml", "not found", "pass the path of a YAML file"]),
    ("directory_as_config", _run("validate", "{t}"), ["is a directory", "pass the path of a YAML file"]),
    (
        "binary_config",
        lambda t, r, c: ((t / "b.yaml").write_bytes(b"\xff\xfe\x00bad"), ["validate", str(t / "b.yaml")])[1],
        ["b.yaml", "cannot read"],
    ),
    ("set_without_equals", _run("validate", "{tiny}", "--set", "optimizer.lr"), ["--set 'optimizer.lr'", "KEY=VALUE"]),
    ("set_into_scalar", _run("validate", "{tiny}", "--set", "seed.x=1"), ["'seed' is not a section"]),
    ("set_wrong_type", _run("run", "{tiny}", "--set", "optimizer.lr=fast"), ["optimizer.lr", "'fast'"]),
    ("run_without_config", _run("run"), ["give a CONFIG file", "--resume RUN_DIR"]),
    (
        "out_is_a_file",
        _run("run", "{tiny}", "--out", "{t}/afile/run", "--set", "policy.cache_dir={cache}"),
        ["run directory", "afile", "not writable", "choose another --out"],
    ),
    (
        "cache_dir_unwritable",
        _run("run", "{tiny}", "--out", "{t}/r", "--set", "policy.cache_dir={t}/afile/cache"),
        ["policy.cache_dir", "not writable", "writable folder"],
    ),
    (
        "overwrite_refused",
        _run("run", "{tiny}", "--out", "{run}", "--set", "policy.cache_dir={cache}", "--set", "loop.rounds=1"),
        ["already holds results", "nothing was overwritten", "--resume"],
    ),
    ("resume_missing_dir", _run("run", "--resume", "{t}/no_such_run"), ["no_such_run", "no such directory"]),
    ("resume_not_a_run", _run("run", "--resume", "{t}"), ["no config.yaml", "rlhfsim run CONFIG --out"]),
    (
        "resume_other_config",
        resume_case("{t}/other.yaml", edit=lambda d: _other_config(d.parent)),
        ["reward.lr", "must simulate the same thing", "another --out"],
    ),
    (
        "resume_set_changes_science",
        resume_case("--set", "optimizer.kl_coef=0.5"),
        ["optimizer.kl_coef", "loop.rounds", "another --out"],
    ),
    ("resume_with_out", resume_case("--out", "{t}/elsewhere"), ["--out", "drop --out"]),
    (
        "resume_other_version",
        resume_case("--set", "loop.rounds=2", edit=_json_edit("status.json", version="0.0.1")),
        ["rlhfsim 0.0.1", "Resume it with that version"],
    ),
    (
        "resume_other_format",
        resume_case("--set", "loop.rounds=2", edit=_json_edit("checkpoints/latest/round.json", format=99)),
        ["checkpoint format 99", "start a new run elsewhere"],
    ),
    (
        "resume_corrupt_checkpoint",
        resume_case("--set", "loop.rounds=2", edit=_write("checkpoints/latest/state.pt", b"garbage")),
        ["state.pt: corrupt", "no readable checkpoint", "Remove"],
    ),
    (
        "resume_truncated_weights",
        resume_case("--set", "loop.rounds=2", edit=_write("checkpoints/latest/policy.safetensors", b"\x08")),
        ["latest", "no readable checkpoint", "Remove"],
    ),
    (
        "resume_pickled_object",
        resume_case("--set", "loop.rounds=2", edit=_pickle_object),
        ["state.pt: holds more than tensors", "weights_only"],
    ),
    (
        "resume_diverged_unchanged",
        resume_case(
            "--set",
            "loop.rounds=2",
            edit=_json_edit(
                "status.json",
                status="diverged",
                guards={"on_divergence": "stop", "max_abs_reward": 10000.0},
                divergence={"round": 1, "phase": "ppo", "quantity": "loss/policy_avg", "value": "nan"},
            ),
        ),
        ["diverged in round 1", "loss/policy_avg", "guards.on_divergence=skip_round"],
    ),
    (
        "resume_fewer_rounds",
        resume_case(
            edit=lambda d: (
                _json_edit("checkpoints/latest/round.json", round=3)(d),
                _json_edit("status.json", status="running")(d),
            )
        ),
        ["checkpoint at round 3", "--set loop.rounds=3 or more"],
    ),
    ("theory_bad_param", _run("theory", "--utility", "power", "--param", "g"), ["--param 'g'", "NAME=VALUE"]),
]


@pytest.mark.parametrize("make, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exit_2_names_problem_and_fix(make, needles, tmp_path, finished, sft_cache, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    args = make(tmp_path, run_dir, sft_cache)
    before = fingerprint(run_dir)
    capsys.readouterr()
    assert main(args) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    for n in needles:
        assert n in text, f"{n!r} not in {text!r}"
    assert fingerprint(run_dir) == before  # nothing overwritten


def test_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)
