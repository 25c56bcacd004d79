"""Real pretrained assets (issue 35): `rlhfsim setup real` converts SmolLM2-135M-Instruct and fits the IMDB gold, the
weights really load, the gold is accurate, one round of the loop runs with the real policy, and a missing setup is a
clear exit-2 error. The asset tests skip (saying which pip command) only where the packages are absent; `.ci/run`
installs them. The converted model and the gold live in the real cache (.cache/rlhfsim/real unless
RLHFSIM_REAL_CACHE), so only the first session pays for the conversion (~1-2 min on 2 cores)."""

import math

import pytest
import yaml

from rlhfsim.cli import main
from rlhfsim.config import config_from_dict
from rlhfsim.real.assets import ASSETS, AssetMissing, lookup, resolve

SMOL = "real:smollm2-135m-instruct"


@pytest.fixture(scope="session")
def real_setup():
    from rlhfsim.real.setup import missing_packages, setup_real

    missing = missing_packages(("smollm2-135m-instruct",))
    if missing:
        pytest.skip("real assets not installed: " + "; ".join(missing))
    return setup_real(log=lambda *_: None)


def test_unknown_asset_lists_the_names():
    with pytest.raises(AssetMissing, match="valid names: .*smollm2-135m-instruct"):
        lookup("real:gpt5")
    assert resolve("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"  # not a real: reference: unchanged


def test_missing_setup_is_exit_2_naming_the_command(tmp_path, monkeypatch, capsys):
    """An empty cache (or absent packages: then the message names pip and the same command) stops before anything runs."""
    monkeypatch.setenv("RLHFSIM_REAL_CACHE", str(tmp_path / "empty"))
    assert main(["validate", "configs/imdb_smollm2.yaml"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "policy.checkpoint" in out and "rlhfsim setup real" in out and "Traceback" not in out
    assert main(["run", "configs/imdb_smollm2.yaml", "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_setup_names_the_valid_models(capsys):
    assert main(["setup", "real", "--models", "gpt5"]) == 2
    assert "valid names: ['smollm2-135m-instruct', 'gemma3-270m']" in capsys.readouterr().out


@pytest.mark.slow
def test_smollm2_weights_really_loaded(real_setup):
    """Perplexity of a fixed English sentence: the converted checkpoint 14.1, the same config randomly initialised
    54,039 (about the vocabulary size): the weights are SmolLM2's, not a random init that merely has its shapes."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlhfsim.models.hf import load_causal_lm, load_tokenizer
    from rlhfsim.real.setup import SENTENCE, perplexity

    info = real_setup["models"]["smollm2-135m-instruct"]
    assert info["architecture"] == "LlamaForCausalLM" and 130e6 < info["parameters"] < 140e6
    model, tok = load_causal_lm(SMOL, "policy.checkpoint"), load_tokenizer(SMOL, "policy.checkpoint")
    real = perplexity(model, tok, SENTENCE)
    torch.manual_seed(0)
    rand = perplexity(AutoModelForCausalLM.from_config(model.config), tok, SENTENCE)
    assert real < 40 and rand > 1000 * real / 40, (real, rand)
    assert math.isclose(real, info["perplexity"], rel_tol=1e-3)  # what setup measured right after converting


@pytest.mark.slow
def test_imdb_gold_heldout_accuracy(real_setup):
    from rlhfsim.real.assets import cache_root
    from rlhfsim.real.setup import IMDB_GOLD
    from rlhfsim.world.classifier import ClassifierGold
    from rlhfsim.world.text_config import GoldClassifierConfig

    stats = real_setup["gold"]
    assert stats["heldout_accuracy"] >= 0.85 and stats["heldout_rows"] == 2500 and stats["train_rows"] == 22500
    gold = ClassifierGold(GoldClassifierConfig.model_validate(IMDB_GOLD), cache_root())
    pos, neg = gold.prob(["a wonderful, moving film with superb acting", "a boring mess, the worst film I have seen"])
    assert pos > 0.9 and neg < 0.1


def gemma_or_skip() -> str:
    """Gemma-3-270m runs where its conversion is cached: it takes minutes (1342 s on a loaded 2-core machine), too long
    for every CI run. `rlhfsim setup real --models gemma3-270m` once, and the Gemma tests run too."""
    try:
        resolve("real:gemma3-270m")
    except AssetMissing as e:
        pytest.skip(f"Gemma-3 not converted here (opt-in): {e}")
    return "real:gemma3-270m"


@pytest.fixture(params=["smollm2-135m-instruct", "gemma3-270m"])
def policy_ref(request, real_setup):
    return gemma_or_skip() if request.param == "gemma3-270m" else f"real:{request.param}"


@pytest.mark.slow
def test_gemma3_weights_really_loaded(real_setup):
    """The same perplexity check for Gemma-3-270m (262k vocabulary): 8.5 against a random init's 334,878."""
    policy_ref = gemma_or_skip()
    import torch
    from transformers import AutoModelForCausalLM

    from rlhfsim.models.hf import load_causal_lm, load_tokenizer
    from rlhfsim.real.setup import SENTENCE, perplexity

    model, tok = load_causal_lm(policy_ref, "policy.checkpoint"), load_tokenizer(policy_ref, "policy.checkpoint")
    real = perplexity(model, tok, SENTENCE)
    torch.manual_seed(0)
    rand = perplexity(AutoModelForCausalLM.from_config(model.config), tok, SENTENCE)
    assert real < 40 and rand > 1000 * real / 40, (real, rand)


@pytest.mark.slow
def test_one_round_with_the_real_policy(policy_ref, tmp_path):
    """configs/imdb_smollm2.yaml cut to a tiny round: the real policy samples, MiniLM trains, PPO updates, gold evaluates."""
    from rlhfsim.loop import run
    from rlhfsim.tracking import read_jsonl

    raw = yaml.safe_load(open("configs/imdb_smollm2.yaml"))
    raw["policy"]["checkpoint"] = policy_ref
    raw["world"]["sample_rows"] = 200
    raw["policy"]["response_len"] = 6
    raw["optimizer"].update(batch_size=8, group_size=2, minibatches=1)
    raw["loop"].update(rounds=1, prompts_per_round=4, completions_per_prompt=2, eval_prompts=4, eval_completions=2)
    raw["output"].update(n_samples=2, checkpoints=False)
    summary = run(config_from_dict(raw), out=tmp_path / "seed0")
    rows = read_jsonl(tmp_path / "seed0" / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1] and summary["rounds_completed"] == 1
    last = rows[-1]
    for key in ("eval/gold", "eval/proxy", "rm/loss", "objective/kl", "loss/policy_avg"):
        assert math.isfinite(last[key]), key
    assert 0 < last["eval/gold"] < 1 and last["policy/grad_norm_avg"] > 0  # a real gradient reached SmolLM2's weights
    assert {k for k in rows[0] if k.startswith("eval/gold_")} >= {"eval/gold_negative", "eval/gold_positive"}


def test_registry_covers_the_config():
    raw = yaml.safe_load(open("configs/imdb_smollm2.yaml"))
    for ref in (
        raw["policy"]["checkpoint"],
        raw["reward"]["checkpoint"],
        raw["world"]["dataset"],
        raw["world"]["gold"]["table"],
    ):
        assert lookup(ref).name in ASSETS
