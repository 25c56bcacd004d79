"""Issue 36's options in the round loop (tiny runs): a resumed run equals an uninterrupted one for each option, the
restart really starts from SFT, the KL anchor follows the chosen reference, inner evaluations are logged."""

import pytest

from rlhfsim.config import load_config
from rlhfsim.loop import run
from rlhfsim.tracking import read_jsonl
from tests.fixtures.docs import documented_metric_patterns

pytestmark = pytest.mark.slow  # every test here runs whole tiny runs (the arms fixture alone runs 3 per arm)

ARMS = {  # every new option in at least one arm
    "sft_mean_equal": [
        "loop.policy_start=sft",
        "loop.kl_anchor=round_start",
        "reward.across_rounds=mean",
        "loop.buffer=equal_share",
        "loop.buffer_total=20",
        "loop.inner_eval.every=1",
        "loop.inner_eval.prompts=8",
        "loop.proxy_gold_gap=true",
    ],
    "liti_wavg_once": [
        "loop.policy_start=interpolate",
        "loop.liti_eta=0.3",
        "reward.across_rounds=weight_average",
        "loop.buffer=prompt_once",
        "loop.buffer_total=20",
        "loop.round_kl=0.005",
        "optimizer.iterations=4",
        "loop.inner_eval.every=2",
        "loop.inner_eval.prompts=8",
    ],
    "continue_min_anchor": ["loop.kl_anchor=round_start", "reward.across_rounds=min"],
}
strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(("time/", "sft/"))} for r in rows]


@pytest.fixture(scope="module")
def arms(tmp_path_factory, sft_cache):
    """Each arm run 3 rounds straight, and 2 rounds then resumed to 3."""
    root = tmp_path_factory.mktemp("iterated")
    for name, over in ARMS.items():
        over = [f"policy.cache_dir={sft_cache}", "loop.rounds=3", *over]
        run(load_config("configs/tiny.yaml", over), out=root / name)
        run(load_config("configs/tiny.yaml", over + ["loop.rounds=2"]), out=root / f"{name}_r")
        run(load_config("configs/tiny.yaml", over), out=root / f"{name}_r", resume=True)
    return root


@pytest.mark.parametrize("name", list(ARMS))
def test_a_resumed_run_equals_an_uninterrupted_one(arms, name):
    for f in ("metrics.jsonl", "policy_steps.jsonl", "inner_eval.jsonl"):
        full, resumed = arms / name / f, arms / f"{name}_r" / f
        assert full.exists() == resumed.exists(), f
        if full.exists():
            assert strip(read_jsonl(full)) == strip(read_jsonl(resumed)), (name, f)


def test_restart_from_sft_starts_every_round_at_the_sft_policy(arms):
    """policy_start sft: each round's first rollout is the SFT policy's, so its KL to the anchor (round_start: the
    start, which is SFT) is ~0 in every round; with continue and a round_start anchor also ~0 (anchor = the policy),
    while the SFT anchor of a continuing policy sees the KL it has built up."""
    for name in ("sft_mean_equal", "continue_min_anchor"):
        first = [s for s in read_jsonl(arms / name / "policy_steps.jsonl") if s["iteration"] == 0]
        assert len(first) == 3 and all(abs(s["objective/kl"]) < 1e-4 for s in first), (
            name,
            [s["objective/kl"] for s in first],
        )
    inner = read_jsonl(arms / "sft_mean_equal" / "inner_eval.jsonl")
    assert [(r["round"], r["iteration"]) for r in inner] == [(r, i) for r in (1, 2, 3) for i in (0, 1, 2)]
    assert {"gold", "proxy", "kl"} <= set(inner[0])
    # iteration 0 is the round's start point: after an SFT start the policy is SFT itself, so its KL from SFT is 0 (up to the
    # sampler's and the reference pass's rounding)
    assert all(abs(r["kl"]) < 1e-4 for r in inner if r["iteration"] == 0), [r["kl"] for r in inner]
    assert any(r["kl"] > 1e-3 for r in inner)


def test_default_anchor_sees_the_kl_a_continuing_policy_built(tmp_path, sft_cache):
    over = [f"policy.cache_dir={sft_cache}", "loop.rounds=2", "optimizer.lr=3e-3"]
    run(load_config("configs/tiny.yaml", over), out=tmp_path / "d")
    steps = read_jsonl(tmp_path / "d" / "policy_steps.jsonl")
    assert steps[-2]["round"] == 2 and steps[-2]["iteration"] == 0 and steps[-2]["objective/kl"] > 1e-3


def test_round_kl_stops_a_round_and_logs_its_iterations(arms):
    rows = read_jsonl(arms / "liti_wavg_once" / "metrics.jsonl")[1:]
    steps = read_jsonl(arms / "liti_wavg_once" / "policy_steps.jsonl")
    inner = read_jsonl(arms / "liti_wavg_once" / "inner_eval.jsonl")
    stopped = 0
    for r in rows:
        mine = [s for s in steps if s["round"] == r["round"]]
        assert r["policy/iterations"] == len(mine) <= 4
        assert all(s["objective/kl"] < 0.005 for s in mine[:-1])  # only the last may reach the budget
        if len(mine) < 4:
            stopped += 1
            assert mine[-1]["objective/kl"] >= 0.005
        # every 2 iterations, and where the round ended
        assert [i["iteration"] for i in inner if i["round"] == r["round"]] == sorted(
            {0, *range(2, len(mine) + 1, 2), len(mine)}
        )
    assert stopped >= 1  # the budget did end a round early here


def test_proxy_gold_metrics_are_logged_per_round(arms):
    rows = read_jsonl(arms / "sft_mean_equal" / "metrics.jsonl")[1:]
    assert all(r["eval/proxy_gold_w1"] >= 0 and abs(r["eval/proxy_gold_gap"]) < 100 for r in rows)


def test_every_new_metric_is_documented(arms):
    pats = documented_metric_patterns()
    keys = {k for name in ARMS for row in read_jsonl(arms / name / "metrics.jsonl") for k in row} - {"round"}
    assert {"eval/proxy_gold_gap", "eval/proxy_gold_w1", "policy/iterations"} <= keys
    undocumented = sorted(k for k in keys if not any(p.match(k) for p in pats))
    assert not undocumented, f"add these to docs/metrics.md: {undocumented}"


def test_sft_start_reloads_policy_and_value_model_and_resets_ppo_state(tmp_path, sft_cache):
    """On the real PPO optimiser: after an update, the sft start puts back the SFT policy (Simulation.ref's weights),
    the value model as built, empty AdamW moments and the KL controller's initial state."""
    import numpy as np
    import torch

    from rlhfsim.iterated import clone_state
    from rlhfsim.loop import Simulation
    from rlhfsim.tracking import RunDir

    cfg = load_config(
        "configs/tiny.yaml",
        [
            f"policy.cache_dir={sft_cache}",
            "loop.policy_start=sft",
            "optimizer.kl_controller=adaptive",
            "optimizer.lr=1e-2",
        ],
    )
    sim = Simulation(cfg, RunDir.for_config(cfg, tmp_path / "run"))
    value0, kl0 = clone_state(sim.opt.value), sim.opt.kl_ctl.state_dict()
    prompts = sim.world.sample_prompts(cfg.optimizer.batch_size, sim.rng["prompts"])
    sim.opt.iteration(prompts, lambda p, t: np.array([len(x) for x in t], dtype=float), sim.world.gold, sim.gen)
    moved = lambda a, b: any(not torch.equal(v, b[k]) for k, v in a.items())
    assert moved(clone_state(sim.policy), clone_state(sim.ref)) and moved(clone_state(sim.opt.value), value0)
    assert sim.opt.optimizer.state and sim.opt.kl_ctl.state_dict() != kl0
    sim.start.apply(sim.opt, 2)
    assert not moved(clone_state(sim.policy), clone_state(sim.ref)) and not moved(clone_state(sim.opt.value), value0)
    assert not sim.opt.optimizer.state and sim.opt.kl_ctl.state_dict() == kl0
    assert sim.opt.ref is sim.ref  # kl_anchor sft: the optimiser's reference is the SFT policy itself


def test_inner_evaluations_and_the_gap_leave_training_untouched(tmp_path, sft_cache):
    """Evaluation draws from its own generators: with inner_eval and proxy_gold_gap on, every training metric and
    every optimiser step is what it is with them off."""
    base = [f"policy.cache_dir={sft_cache}"]
    run(load_config("configs/tiny.yaml", base), out=tmp_path / "off")
    run(
        load_config(
            "configs/tiny.yaml",
            base + ["loop.inner_eval.every=1", "loop.inner_eval.prompts=8", "loop.proxy_gold_gap=true"],
        ),
        out=tmp_path / "on",
    )
    assert strip(read_jsonl(tmp_path / "off" / "policy_steps.jsonl")) == strip(
        read_jsonl(tmp_path / "on" / "policy_steps.jsonl")
    )
    new = ("eval/proxy_gold_gap", "eval/proxy_gold_w1")
    on = [{k: v for k, v in r.items() if k not in new} for r in strip(read_jsonl(tmp_path / "on" / "metrics.jsonl"))]
    assert strip(read_jsonl(tmp_path / "off" / "metrics.jsonl")) == on
    assert (
        len(read_jsonl(tmp_path / "on" / "inner_eval.jsonl")) == 6
        and not (tmp_path / "off" / "inner_eval.jsonl").exists()
    )


def test_a_skipped_round_undoes_its_reward_snapshot_and_liti_start(tmp_path, sft_cache, monkeypatch):
    """guards.on_divergence skip_round in round 2 (a NaN loss after a real update): the round's reward-model snapshot
    and LITI start point are undone with its weights, and the checkpoint holds round 1's."""
    import torch

    from rlhfsim.ppo.trainer import PPOTrainer

    real, calls = PPOTrainer.iteration, {"n": 0}

    def poisoned(self, *a, **k):
        stats = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 4:  # round 2's second iteration
            stats["loss/policy_avg"] = float("nan")
        return stats

    over = [
        f"policy.cache_dir={sft_cache}",
        "loop.policy_start=interpolate",
        "loop.liti_eta=0.5",
        "reward.across_rounds=mean",
        "guards.on_divergence=skip_round",
    ]
    run(load_config("configs/tiny.yaml", over + ["loop.rounds=1"]), out=tmp_path / "one")
    monkeypatch.setattr(PPOTrainer, "iteration", poisoned)
    run(load_config("configs/tiny.yaml", over), out=tmp_path / "skip")
    assert read_jsonl(tmp_path / "skip" / "metrics.jsonl")[-1]["guard/skipped"] == 1
    one, skip = (
        torch.load(p / "checkpoints" / "latest" / "state.pt", weights_only=True)["iterated"]
        for p in (tmp_path / "one", tmp_path / "skip")
    )
    assert sorted(skip["rm_rounds"]["states"]) == ["1"]  # round 2's snapshot undone
    for name, state in one["policy_start"]["start"].items():
        assert all(torch.equal(v, skip["policy_start"]["start"][name][k]) for k, v in state.items())
