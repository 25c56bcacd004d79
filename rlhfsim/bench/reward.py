"""Reward-model training throughput: rlhfsim's listwise trainer against TRL's RewardTrainer.

Same model (a GPT-2 style sequence classifier, identical initial weights), same data (G prompts x k
completions, every one of the k(k-1)/2 pairs labelled by a strict order), same loss (Bradley-Terry,
-log sigmoid(r_chosen - r_rejected)), same optimiser settings, fp32, one epoch each. Pairs/s = labelled
pairs / wall seconds of one epoch. TRL scores the two sides of every pair (2 forwards per pair);
the listwise trainer scores each completion once and reads all pairs off the score matrix.
trl and datasets are imported inside the functions: `rlhfsim` itself never needs them.
"""

from __future__ import annotations

import logging
import tempfile

import numpy as np
import torch

from rlhfsim.bench.common import Shape, median, random_words, timeit, vocab_tokenizer
from rlhfsim.reward.buffer import Group
from rlhfsim.reward.config import RewardConfig
from rlhfsim.reward.heads import HeadRewardModels
from rlhfsim.reward.model import RewardModels, build_reward_model
from rlhfsim.reward.trainer import train_reward_models
from rlhfsim.world.base import Prompt


def preference_groups(shape: Shape, seed: int = 0) -> list:
    """G groups of k completions; a strict random order labels every pair (prefs[a, b] = a ranked above b)."""
    g = torch.Generator().manual_seed(seed)
    P = shape.prompt_len
    C = shape.rm_seq_len - P - 1  # completion words: prompt + completion + EOS = rm_seq_len tokens
    if C < 1:
        raise ValueError(f"--rm-seq-len {shape.rm_seq_len} must exceed --prompt-len + 1 ({P + 1})")
    prompts = random_words(shape.rm_groups, P, shape.vocab, g)
    rng = np.random.default_rng(seed)
    groups = []
    for i, p in enumerate(prompts):
        comps = random_words(shape.rm_k, C, shape.vocab, g)
        gold = rng.permutation(shape.rm_k).astype(np.float64)
        groups.append(Group(Prompt(i, "bench", "open", p), comps, gold, gold[:, None] > gold[None, :], round=1))
    return groups


def _reward_config(shape: Shape):
    return RewardConfig(
        n_layer=shape.n_layer,
        n_embd=shape.n_embd,
        n_head=shape.n_head,
        epochs=1,
        lr=1e-3,
        batch_groups=max(1, shape.rm_batch // shape.rm_k),
        utility="logsigmoid",
        bounded=False,
    )


def bench_rlhfsim(shape: Shape, groups: list, tok) -> list[float]:
    cfg = _reward_config(shape)
    rms = RewardModels(tok, cfg, torch.device("cpu"), seed=0, n_positions=shape.rm_seq_len + 8)
    rng = np.random.default_rng(0)
    return timeit(lambda: train_reward_models(rms, groups, cfg, ["open", "closed"], rng), shape.warmup, shape.repeats)


def bench_trl(shape: Shape, groups: list, tok) -> list[float]:
    """One epoch of trl.RewardTrainer per repeat; building the trainer (and its dataset tokenisation) is untimed."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    rows = [
        {"prompt": g.prompt.text + " ", "chosen": g.completions[a], "rejected": g.completions[b]}
        for g in groups
        for a, b in zip(*np.nonzero(g.prefs))
    ]
    data = Dataset.from_list(rows)
    model = build_reward_model(tok, _reward_config(shape), shape.rm_seq_len + 8, seed=0)
    holder: dict = {}
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(
            output_dir=out,
            per_device_train_batch_size=shape.rm_batch,
            num_train_epochs=1,
            learning_rate=1e-3,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            max_length=None,
            seed=0,
            # TRL's defaults are bf16 autocast and gradient checkpointing: both make a CPU fp32
            # comparison slower for TRL, not fairer; rlhfsim trains in fp32 without checkpointing
            bf16=False,
            fp16=False,
            activation_checkpointing=False,
        )

        def setup():
            holder["trainer"] = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
            holder["trainer"].remove_callback(PrinterCallback)  # it prints the final metrics to stdout

        quiet = [logging.getLogger(n) for n in ("transformers", "trl", "datasets")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        try:
            from datasets.utils.logging import disable_progress_bar

            disable_progress_bar()
            # TRL's epoch is the slow side of the ratio: half the repeats keep the section's wall time in check
            return timeit(
                lambda: holder["trainer"].train(), min(1, shape.warmup), (shape.repeats + 1) // 2, setup=setup
            )
        finally:
            for lg, lv in zip(quiet, levels):
                lg.setLevel(lv)


def bench_reward(shape: Shape, with_trl: bool = True) -> dict:
    tok = vocab_tokenizer(shape.vocab)
    groups = preference_groups(shape)
    pairs = int(sum(g.n_pairs for g in groups))
    ours = median(bench_rlhfsim(shape, groups, tok))
    out = {
        "groups": len(groups),
        "k": shape.rm_k,
        "pairs": pairs,
        "seq_len": shape.rm_seq_len,
        "rlhfsim_epoch_s": ours,
        "rlhfsim_pairs_per_s": pairs / ours,
    }
    if with_trl:
        trl = median(bench_trl(shape, groups, tok))
        out.update({"trl_epoch_s": trl, "trl_pairs_per_s": pairs / trl, "ratio_vs_trl": trl / ours})
    return out


def bench_ensemble(shape: Shape, members: int = 5) -> dict:
    """One round of reward-model work (train one epoch on the groups, then score every completion) for a single
    model and for an ensemble of `members`: full members stacked (one vmapped forward), full members looped, and
    heads on one shared trunk (`reward.ensemble_kind: heads`, bootstrap weights). The variants are interleaved
    repeat by repeat, so load from other processes hits them alike; times are medians. `*_std` is the mean
    member std of the logits per completion after the timed rounds (0 for one model): how much members differ;
    `*_std_centred` the same after removing each member's mean logit. The bench's labels are random orders, so
    this measures how differently members fit noise, not how their errors relate to gold (see the ensembles study)."""
    tok = vocab_tokenizer(shape.vocab)
    groups = preference_groups(shape)
    prompts = [g.prompt.text for g in groups for _ in g.completions]
    comps = [c for g in groups for c in g.completions]
    base = _reward_config(shape).model_dump()
    variants = {
        "single": {"ensemble_size": 1},
        "stacked": {"ensemble_size": members, "stacked": True},
        "loop": {"ensemble_size": members, "stacked": False},
        "heads": {"ensemble_size": members, "ensemble_kind": "heads", "ensemble_data": "bootstrap"},
    }
    calls, models = {}, {}
    for name, update in variants.items():
        c = RewardConfig.model_validate({**base, **update})  # validated: heads' data rules apply
        cls = HeadRewardModels if c.ensemble_kind == "heads" else RewardModels
        rms = models[name] = cls(tok, c, torch.device("cpu"), seed=0, n_positions=shape.rm_seq_len + 8)
        rng = np.random.default_rng(0)
        calls[name] = lambda rms=rms, c=c, rng=rng: (
            train_reward_models(rms, groups, c, ["open", "closed"], rng),
            rms.logits(prompts, comps),
        )
    times: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(max(1, shape.repeats)):
        for name, fn in calls.items():
            times[name] += timeit(fn, shape.warmup if i == 0 else 0, 1)
    t = {k: median(v) for k, v in times.items()}
    z = {k: rms.logits(prompts, comps) for k, rms in models.items()}  # [M, N] each
    std = {k: float(v.std(0).mean()) for k, v in z.items()}
    # Bradley-Terry logits are shift-invariant per member: the centred std leaves out the members' arbitrary offsets
    cstd = {k: float((v - v.mean(1, keepdims=True)).std(0).mean()) for k, v in z.items()}
    return {
        "members": members,
        "groups": len(groups),
        "single_s": t["single"],
        "ensemble_stacked_s": t["stacked"],
        "ensemble_loop_s": t["loop"],
        "heads_s": t["heads"],
        "ratio_stacked": t["stacked"] / t["single"],
        "ratio_loop": t["loop"] / t["single"],
        "ratio_heads": t["heads"] / t["single"],
        "stacked_std": std["stacked"],
        "loop_std": std["loop"],
        "heads_std": std["heads"],
        "stacked_std_centred": cstd["stacked"],
        "heads_std_centred": cstd["heads"],
        "times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }
