"""The RLHF round loop. Reads top to bottom as the numbered phases of docs/architecture.md; no math lives here.

    round 0: evaluate the SFT policy
    round r: 1 sample prompts -> 2 generate k completions -> 3 annotate -> 4 buffer -> 5 train reward model(s)
             -> 6 diagnose the proxy (+ audits, recalibration) -> 7 policy start, KL anchor, policy optimiser
             (optimizer.name: ppo, grpo, ...; inner evaluations)
             -> 8 diagnose policy -> 9 log + checkpoint

`_run` sets the run up, runs phase 0 (`sft_round`) or resumes, then one `_round` per round: phases 1-9, each a call
with its inputs as arguments and its metrics returned (rlhfsim/loop_phases.py), added to the round's row in order.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from rlhfsim import diagnostics as diag
from rlhfsim.config import Config, ConfigError, dump_config
from rlhfsim.diagnostics import audit, round0_cache
from rlhfsim.diagnostics.policy_eval import EvalSamples, policy_metrics, rewards_table, sample_eval, sample_rows
from rlhfsim.diagnostics.run_stop import stagnation_stop
from rlhfsim.guards import Guard
from rlhfsim.iterated import Anchor, PolicyStart
from rlhfsim.loop_phases import (
    FRESH_RM_SEED,  # noqa: F401  (re-exported: the named seeds stay readable from rlhfsim.loop)
    annotate_groups,
    annotation_stats,
    audit_alarms,
    audit_reward_model,
    calibrate_noise,
    diagnose_proxy,
    diagnosis_samples,
    evaluate_policy,
    fit_member_scale,
    fit_recalibration,
    generate_completions,
    optimise_policy,
    policy_step_metrics,
    record_round,
    reward_frozen,
    train_reward,
)
from rlhfsim.models import build
from rlhfsim.models.hf import policy_tokenizer
from rlhfsim.models.parallel import Parallel, autocast, local_device, process_group_scope
from rlhfsim.models.policy import has_dropout
from rlhfsim.optim import build_optimizer
from rlhfsim.optim.base import PolicySampler
from rlhfsim.reward import build as reward_build
from rlhfsim.reward import offline, recalibrate
from rlhfsim.reward.buffer import PreferenceBuffer
from rlhfsim.reward.proxy import Proxy
from rlhfsim.reward.trainer import utilities_for
from rlhfsim.run_figure import write_run_figure
from rlhfsim.run_files import STEPS_FILES, steps_path
from rlhfsim.tracking import RunDir, load_module, rank_out_dir, read_jsonl
from rlhfsim.version import stamp as version_stamp
from rlhfsim.world import build_world
from rlhfsim.world.annotator import get_annotator

log = logging.getLogger(__name__)
STREAMS = ("prompts", "annotate", "reward", "reference_mix")
# seeds of the streams that are not spawned from STREAMS (named, so no literal is repeated or reused by accident)
EVAL_SEED = 10_000_019  # evaluation generators: EVAL_SEED * (seed + 1) + 97 * round + stream id
EVAL_STREAMS = {
    "evaluate": 8,
    "diagnose": 6,
    "best_of_n": 7,
    "shift": 20,
    "recalibrate": 30,
    "inner": 40,
}  # shift i: 20 + i


class Reporter:
    """Progress hooks; the CLI subclasses this with rich progress bars. The loop never prints."""

    def start(self, total_rounds: int, first_round: int) -> None: ...
    def phase(self, round_: int, name: str) -> None: ...
    def round_done(self, row: dict) -> None: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA device is visible; use device: auto or cpu")
    return torch.device(name)


class Simulation:
    """Everything a run holds between rounds (models, buffer, RNG streams), so a checkpoint can restore it."""

    def __init__(self, cfg: Config, run: RunDir):
        self.cfg, self.run = cfg, run
        self.device = local_device(resolve_device(cfg.device))
        self.parallel = Parallel.from_env(
            self.device, cfg.compute.policy_micro_batch
        )  # 1 process unless launched by accelerate
        torch.manual_seed(cfg.seed)
        # models come from config (built-in GPT-2s) or checkpoints (rlhfsim.models.build decides)
        self.world = build_world(
            cfg.world,
            policy_tokenizer=policy_tokenizer(cfg.policy),
            device=self.device,
            score_batch=cfg.compute.score_batch,
        )
        cfg.types_check(self.world.prompt_types)
        self.policy, self.sft_stats = build.warm_start(self.world, cfg, self.device)
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False)  # the SFT policy: evaluations' KL reference
        self.anchor = Anchor(
            cfg.loop.kl_anchor, self.ref
        )  # the optimiser's KL reference (loop.kl_anchor; sft: self.ref)
        # phase 7's optimiser, built here: PPO's value model takes its initial weights from this point of the torch stream
        self.opt = build_optimizer(
            cfg, self.policy, self.anchor.module, self.world.tokenizer, self.device, self.parallel
        )
        self.start = PolicyStart(
            cfg.loop.policy_start, cfg.loop.liti_eta, self.opt
        )  # each round's start (loop.policy_start)
        self.sampler = PolicySampler(
            self.policy, self.world.tokenizer, cfg.policy.temperature, cfg.policy.response_len, self.device
        )
        # the optimiser's reward: source, reward-model members, aggregation, recalibration, surgery (rlhfsim.reward.proxy)
        # reward.backbone: policy copies the frozen SFT reference's trunk (also when reward.init: fresh re-draws it later)
        self.proxy = Proxy(cfg, reward_build.reward_models(self.world, cfg, self.device, self.ref), self.world.gold)
        self.buffer = PreferenceBuffer(cfg.loop.buffer, cfg.loop.window, cfg.loop.buffer_total, cfg.seed)
        self.annotator = get_annotator(cfg.loop.annotator.name, **cfg.loop.annotator.model_dump(exclude={"name"}))
        # the offline preference set (reward.offline) and the reward model pre-trained on it, before round 1
        offline_groups, self.offline_stats = offline.prepare(
            self.world, self.sampler, self.annotator, self.proxy.rms, cfg, self.device, self._pretrain
        )
        self.buffer.set_offline(offline_groups, cfg.reward.offline.mix, cfg.seed)
        seqs = np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))
        self.rng = {name: np.random.default_rng(s) for name, s in zip(STREAMS, seqs)}
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.eval_prompts = self.world.eval_prompts(cfg.loop.eval_prompts)
        self.theory = self._theory_utilities()
        A = cfg.audit
        self.suite = (
            audit.build_stress_suite(
                self.world, self.eval_prompts[: A.prompts], A.families, getattr(cfg.world, "seed", 0)
            )
            if A.enabled
            else None
        )
        self.shift_prompts = (
            {s: self.world.eval_prompts(A.shift_prompts, shift=s) for s in A.shifts} if A.enabled else {}
        )
        self.last_eval = None  # the latest phase-8 (or round-0) held-out samples, for loop.diagnose_on_eval
        self.probe = None  # the fixed probe set (collapse/probe_*, member scales, noise calibration): see probe_set

    def _pretrain(self, rms, groups, reward_cfg, rng) -> dict:
        return reward_build.train_reward_models(
            rms, groups, self.cfg.model_copy(update={"reward": reward_cfg}), self.world.prompt_types, rng, self.parallel
        )

    def _theory_utilities(self) -> dict | None:
        """{type: utility as trained} for the comparison-graph optimum (rlhfsim.theory; only meaningful for bounded rewards)."""
        if not self.rms.bounded:
            return None
        types = self.world.prompt_types
        return dict(zip(types, utilities_for(self.cfg.reward, types)))

    @property
    def rms(self):
        """The proxy's reward-model members (phase 5 trains them; checkpoints and guards read them)."""
        return self.proxy.rms

    # -------------------------------------------------------------- evaluation

    def probe_set(self):
        """The fixed probe set: the SFT policy's completions of the eval prompts (the round-0 samples, from the round-0
        eval stream), drawn on first use; the same draw after a resume."""
        if self.probe is None:  # the same draw for every arm of this seed: cached beside the SFT policy
            draw = lambda: self.evaluate(
                self.eval_prompts, self.cfg.loop.eval_completions, 0, "evaluate", policy=self.ref
            )  # noqa: E731
            self.probe = round0_cache.cached(self, draw, self.eval_seed(0, "evaluate"))
        return self.probe

    def sft_eval(self):
        """Round 0's held-out samples of the SFT policy. Before any update the policy is the reference (same weights),
        and without active dropout drawing from either is one computation on the same stream: the probe set. One draw
        then serves both (bit for bit what two draws gave)."""
        if self.policy.training and has_dropout(self.policy):  # train-mode dropout: a different draw than the probe's
            return self.evaluate(self.eval_prompts, self.cfg.loop.eval_completions, 0, "evaluate")
        return self.probe_set()

    def eval_seed(self, round_: int, stream: str, offset: int = 0) -> int:
        # evaluation noise must not depend on (or disturb) the training streams
        return EVAL_SEED * (self.cfg.seed + 1) + 97 * round_ + EVAL_STREAMS[stream] + offset

    def evaluate(self, prompts, k: int, round_: int, stream: str, offset: int = 0, policy=None, prev=None):
        """k samples per prompt of `policy` (default: the current one) on the named evaluation stream, gold-scored."""
        P = self.cfg.policy
        gen = torch.Generator(device=self.device).manual_seed(self.eval_seed(round_, stream, offset))
        return sample_eval(
            self.policy if policy is None else policy,
            self.ref,
            self.world,
            prompts,
            k,
            P.response_len,
            P.temperature,
            gen,
            self.device,
            prev=prev,
        )

    # -------------------------------------------------------------- checkpoint

    def state(self, round_: int) -> tuple[dict, dict]:
        models = dict(self.opt.models())  # what the optimiser trains: the policy, and PPO's value model
        models.update({f"rm{m}": rm for m, rm in enumerate(self.rms.members)})
        state = {
            "round": round_,
            "optimizer": self.opt.state_dict(),
            "rng": {k: json.dumps(r.bit_generator.state) for k, r in self.rng.items()},
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "buffer": json.dumps(self.buffer.state_dict()),
            "iterated": self.iterated_state(),
        }
        if self.device.type == "cuda":  # on a GPU, dropout draws from the device's own default generator
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return models, state

    def restore(self, folder: Path, state: dict) -> int:
        for name, module in self.state(0)[0].items():
            load_module(folder, name, module)
        self.opt.load_state_dict(state["optimizer"])
        for k, r in self.rng.items():
            r.bit_generator.state = json.loads(state["rng"][k])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.buffer.load_state_dict(json.loads(state["buffer"]))
        self.load_iterated(state.get("iterated", {}))
        return state["round"]

    def iterated_state(self) -> dict:
        """Issue 36's state between rounds: LITI's start point, the rounds' reward-model snapshots (tensors)."""
        rounds = self.proxy.rounds
        return {
            "policy_start": self.start.state_dict(),
            "rm_rounds": rounds.state_dict() if rounds is not None else None,
        }

    def load_iterated(self, state: dict) -> None:
        self.start.load_state_dict(state.get("policy_start") or {})
        if self.proxy.rounds is not None and state.get("rm_rounds") is not None:
            self.proxy.rounds.load_state_dict(state["rm_rounds"], self.rms)


@contextmanager
def timed(row: dict, name: str):
    t0 = time.perf_counter()
    yield
    row[f"time/{name}"] = time.perf_counter() - t0


def run(cfg: Config, out: str | Path | None = None, resume: bool = False, reporter: Reporter | None = None) -> dict:
    """Run (or resume) one config; returns the summary written to summary.json. bf16 autocast on a GPU when asked for;
    under a multi-process launch only rank 0 writes `out` (the others keep a private copy, see tracking.rank_out_dir)."""
    device = local_device(resolve_device(cfg.device))
    with rank_out_dir(cfg, out, resume) as out, autocast(device, cfg.compute.precision), process_group_scope():
        return _run(cfg, out, resume, reporter)


def _run(cfg: Config, out: str | Path | None, resume: bool, reporter: Reporter | None) -> dict:
    reporter = reporter or Reporter()
    t_start = time.perf_counter()
    run_dir = RunDir.for_config(cfg, out)
    run_dir.create(cfg, resume)  # lock; refuse to overwrite results or to resume another config/version
    run_dir.write_config(dump_config(cfg))
    sim = Simulation(cfg, run_dir)
    guard = Guard(cfg.guards, sim, run_dir, cfg.output.checkpoints)
    guard.setup(sim.sft_stats)
    noise_row: dict = {}
    if (
        cfg.loop.reward_source == "noisy_gold"
    ):  # the config's sigma, or one calibrated to a target rho on the SFT samples
        sigma, noise_row = calibrate_noise(sim)
        sim.proxy.set_noise_sigma(sigma)

    done_round, sim.last_eval = resume_checkpoint(sim) if resume else (None, None)
    if done_round is None:  # 0 evaluate the SFT policy (round 0's row; the same draw is the probe set)
        row0, sim.last_eval = sft_round(sim, noise_row)
        reporter.round_done(row0)
    first_round = 1 if done_round is None else done_round + 1
    reporter.start(cfg.loop.rounds, first_round)
    early_stop = None
    for r in range(first_round, cfg.loop.rounds + 1):
        early_stop = _round(sim, guard, reporter, r)  # phases 1-9
        if early_stop is not None:  # run-level early stopping: the policy stopped improving
            log.info("stopping after round %d: %s", r, early_stop["reason"])
            break
    return finish_run(sim, early_stop, wall_time=time.perf_counter() - t_start)


def _round(sim: Simulation, guard: Guard, reporter: Reporter, r: int) -> dict | None:
    """Round r, phases 1-9 of docs/architecture.md; the early stop (loop.stop_on_stagnation) or None. `row` takes each
    phase's metrics as it ends and `steps` each optimiser iteration, so a divergence logs what the round reached."""
    L = sim.cfg.loop
    row: dict = {"round": r}
    steps: list[dict] = []
    t_round = time.perf_counter()
    with guard.round(r, row, steps):  # divergence: a diagnostic row, then stop (exit code 3) or skip the round
        reporter.phase(r, "generate")
        prompts = sim.world.sample_prompts(L.prompts_per_round, sim.rng["prompts"])  # 1 sample prompts
        with timed(row, "generate"):  # 2 generate k completions per prompt
            texts, generated = generate_completions(sim, prompts)
            row.update(generated)

        reporter.phase(r, "annotate")
        with timed(row, "annotate"):  # 3 annotate: gold + noise -> rankings
            groups = annotate_groups(sim, prompts, texts, r)
        row.update(annotation_stats(groups))
        sim.buffer.add(r, groups)  # 4 update the preference buffer
        row["buffer/groups"] = len(sim.buffer)

        reporter.phase(r, "reward")
        frozen = reward_frozen(L, r)
        with timed(row, "reward"):  # 5 train the reward model(s) (loop.reward_source: learned)
            row.update(train_reward(sim, r, frozen))
        guard.check("reward", r, row)
        row["rm/frozen"] = int(frozen)

        reporter.phase(r, "diagnose")
        with timed(row, "diagnose_rm"):  # 6 diagnose the proxy's source on held-out samples
            held_out = diagnosis_samples(sim, r)
            sim.proxy.set_member_scale(
                fit_member_scale(sim)
            )  # wco/uwo: each member's location and scale on the probe set
            row.update(diagnose_proxy(sim, held_out, r))
        guard.check("diagnose", r, row)
        with timed(row, "audit"):  # 6b audit: adversarial stress suite, shifted validation sets, alarms
            row.update(audit_reward_model(sim, r))
            row.update(audit_alarms(sim, row))
        with timed(row, "recalibrate"):  # 6c recalibrate the proxy the policy optimiser will see
            recal = fit_recalibration(sim, r)  # None: off, or the gold source
            sim.proxy.set_recalibration(recal)
            row.update(recalibrate.as_metrics(recal))

        reporter.phase(r, "policy")
        prev_policy = copy.deepcopy(sim.policy)  # to measure how far this round moves the policy
        with timed(row, "policy"):  # 7 policy start, KL anchor, optimiser against the proxy's score
            inner = optimise_policy(sim, guard, r, steps) if L.train_policy else []
        row.update(policy_step_metrics(steps, L))

        reporter.phase(r, "evaluate")
        with timed(row, "evaluate"):  # 8 diagnose the updated policy on the held-out prompts
            evaluation = evaluate_policy(sim, r, prev_policy)
            row.update(evaluation.metrics)
        guard.check("evaluate", r, row)

        row["time/round"] = time.perf_counter() - t_round  # 9 log + checkpoint
        record_round(sim, r, row, steps, inner, evaluation)
        sim.last_eval = evaluation.samples  # kept only once the round is complete (a skipped round keeps the previous)
        reporter.round_done(row)
        return stagnation_stop(sim.run.metrics(), L) if L.stop_on_stagnation else None
    return None  # the guard skipped the round


def resume_checkpoint(sim: Simulation) -> tuple[int | None, EvalSamples | None]:
    """Restore the last complete round's checkpoint and drop what was written after it: (that round, the held-out
    samples loop.diagnose_on_eval reads next), or (None, None) without a checkpoint."""
    ck = sim.run.load_checkpoint()
    if ck is None:
        return None, None
    done_round, models, state = ck
    sim.restore(models, state)
    sim.run.truncate_after(done_round)
    L = sim.cfg.loop
    # the eval stream is seeded per round: the same policy redraws the same samples
    last_eval = (
        sim.evaluate(sim.eval_prompts, L.eval_completions, done_round, "evaluate") if L.diagnose_on_eval else None
    )
    log.info("resuming %s after round %d", sim.run.path, done_round)
    return done_round, last_eval


def sft_round(sim: Simulation, noise_row: dict) -> tuple[dict, EvalSamples]:
    """Phase 0 on a fresh run directory: the SFT policy's held-out samples (also the probe set: one draw), logged as
    round 0 with the SFT, offline and noise-calibration stats; (the row, the samples)."""
    run = sim.run
    for name in ("metrics.jsonl", *STEPS_FILES, "inner_eval.jsonl"):
        (run.path / name).unlink(missing_ok=True)
    ev = sim.sft_eval()
    # whether SFT or the offline set came from a cache is bookkeeping, not a metric: metrics.jsonl must not depend on it
    stats = {
        k: v for k, v in {**sim.sft_stats, **sim.offline_stats}.items() if k not in ("sft/cached", "offline/cached")
    }
    row0 = {"round": 0, **stats, **policy_metrics(ev, None), **noise_row}
    run.write_rewards(0, rewards_table(ev, None, None, 0))
    run.write_samples(0, sample_rows(ev, None, sim.cfg.output.n_samples))
    run.log_round(row0)
    return row0, ev


def finish_run(sim: Simulation, early_stop: dict | None, wall_time: float) -> dict:
    """The run's summary (summary.json), its figure, and the run directory closed; returns the summary."""
    run = sim.run
    summary = diag.summarize(
        run.metrics(), wall_time=wall_time, steps=read_jsonl(steps_path(run.path))
    )  # per-iteration points for the Gao fit
    summary["early_stop"] = early_stop  # null unless loop.stop_on_stagnation ended the run early
    summary["sft_cached"] = bool(sim.sft_stats.get("sft/cached"))  # this invocation loaded SFT from the cache
    summary.update(version_stamp())  # code_version, code_hash, metric_schema: reports flag runs of other code
    write_run_figure(run, sim.cfg)  # figures/curves.png, and to the trackers that take images; before "finished"
    run.write_summary(summary)
    run.close()
    return summary
