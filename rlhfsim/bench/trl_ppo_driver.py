"""Time TRL's last PPO trainer (the PPOv2 design) at `rlhfsim bench`'s PPO shape; print one JSON line.

Run by a *side* environment's python, by file path (see scripts/trl_ppo_venv.sh):

    SIDE/bin/python rlhfsim/bench/trl_ppo_driver.py --threads 2 --iterations 10 [--no-gc]

Standalone on purpose: it imports only the standard library, torch, tokenizers, transformers, datasets and
trl (never rlhfsim), because TRL's PPOTrainer needs an older TRL than the project's. It calls TRL's own
`PPOTrainer.train()`: rollout with `generate` (logprobs from its scores), reference, value and reward
passes, KL-shaped rewards, GAE, whitening, one clipped policy+value update, metrics; nothing is
re-implemented here.

One iteration is timed as the interval between two `on_step_end` callbacks. TRL fires that once per
`train()` loop pass, after `self.log(metrics)`; what follows it (the second forced `gc.collect()`, the
sample-generation check, switched off here, and the next pass's rollout and update) all falls in the next
interval, so every interval after the first is exactly one full pass. Extras that are not PPO are off,
as "at its best" means: no eval, no sample generations, no checkpoints, no reporting integrations, and
the console printer/progress callbacks removed (they only print the per-step metrics).

`--no-gc` replaces the `gc` module *inside TRL's trainer module* with one whose `collect()` does
nothing: TRL forces two full collections per iteration, which cost more than the model work at a
small shape. Python's automatic generational collector still runs as normal.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import types
import warnings

SPECIALS = ["<pad>", "<eos>", "<unk>"]  # ids 0, 1, 2, like rlhfsim's word tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--iterations", type=int, default=8, help="timed PPO iterations")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--no-gc", action="store_true", help="make TRL's per-iteration gc.collect() calls no-ops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=64, help="tokenizer size, 3 specials included")
    p.add_argument("--prompts", type=int, default=64, help="prompts per iteration (the PPO batch)")
    p.add_argument("--prompt-len", type=int, default=8)
    p.add_argument("--response-len", type=int, default=16)
    p.add_argument(
        "--activation",
        default="gelu",
        help="GPT-2 activation_function; 'gelu' is what rlhfsim's models use (GPT-2's own is gelu_new)",
    )
    return p.parse_args(argv)


def word_tokenizer(size: int):
    """A word-level fast tokenizer with exactly `size` ids: <pad>, <eos>, <unk>, then w0, w1, ..."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + [f"w{i}" for i in range(size - len(SPECIALS))])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def build_models(tok, a):
    """Policy, reference (a copy), value and reward models at the shape; fp32, dropout 0."""
    import copy

    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    def config(**kw):
        return GPT2Config(
            vocab_size=len(tok),
            n_positions=a.prompt_len + a.response_len + 8,
            n_embd=a.width,
            n_layer=a.layers,
            n_head=a.heads,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            activation_function=a.activation,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **kw,
        )

    torch.manual_seed(a.seed)
    policy = GPT2LMHeadModel(config())
    ref = copy.deepcopy(policy)
    value = GPT2ForSequenceClassification(config(num_labels=1))
    reward = GPT2ForSequenceClassification(config(num_labels=1))
    return policy, ref, value, reward


def prompt_dataset(tok, a):
    """`prompts` rows of `prompt_len` ordinary words (no padding), as TRL's PPO dataset format: input_ids."""
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(len(SPECIALS), len(tok), (a.prompts, a.prompt_len), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist()})


def step_clock(sync=None):
    """A TrainerCallback taking perf_counter at train begin and at each step end (one iteration apart): `.marks`.
    sync: called before each reading (torch.cuda.synchronize on a GPU, so a step ends when its kernels have)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def mark(self):
            if sync is not None:
                sync()
            self.marks.append(time.perf_counter())

        def on_train_begin(self, args, state, control, **kw):
            self.mark()

        def on_step_end(self, args, state, control, **kw):
            self.mark()

    return StepClock()


def import_trl():
    """TRL's PPO trainer: trl.experimental.ppo (0.26 - 1.12), else the top-level trl.PPOTrainer (up to 0.25)."""
    try:
        import trl.experimental.ppo.ppo_trainer as module
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError:
        import trl.trainer.ppo_trainer as module
        from trl import PPOConfig, PPOTrainer
    return module, PPOConfig, PPOTrainer


def main(argv=None) -> int:
    a = parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    import transformers
    import trl
    from transformers import PrinterCallback, ProgressCallback

    if a.threads:
        torch.set_num_threads(a.threads)
    module, PPOConfig, PPOTrainer = import_trl()
    if a.no_gc:
        module.gc = types.SimpleNamespace(collect=lambda *args, **kw: 0)

    tok = word_tokenizer(a.vocab)
    policy, ref, value, reward = build_models(tok, a)
    n_iter = a.warmup + a.iterations
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = PPOConfig(
            output_dir=out_dir,
            seed=a.seed,
            use_cpu=True,
            bf16=False,
            fp16=False,
            report_to="none",
            per_device_train_batch_size=a.prompts,
            gradient_accumulation_steps=1,
            num_mini_batches=1,
            num_ppo_epochs=1,
            local_rollout_forward_batch_size=a.prompts,
            total_episodes=a.prompts * n_iter,
            response_length=a.response_len,
            temperature=1.0,
            stop_token="eos",
            num_sample_generations=0,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
        )
        clock = step_clock()
        trainer = PPOTrainer(
            args=cfg,
            processing_class=tok,
            model=policy,
            ref_model=ref,
            reward_model=reward,
            value_model=value,
            train_dataset=prompt_dataset(tok, a),
            callbacks=[clock],
        )
        for cb in (PrinterCallback, ProgressCallback):  # they only print the per-step metrics dict
            trainer.remove_callback(cb)
        assert cfg.batch_size == a.prompts and cfg.num_total_batches == n_iter, (cfg.batch_size, cfg.num_total_batches)
        trainer.train()
    steps = [b - c for c, b in zip(clock.marks, clock.marks[1:])]
    if len(steps) != n_iter:
        raise RuntimeError(f"expected {n_iter} step-end callbacks, got {len(steps)}")
    timed = steps[a.warmup :]
    import gc  # what one of TRL's forced collections costs in this process (untimed region, after training)

    t0 = time.perf_counter()
    gc.collect()
    gc_s, gc_objects = time.perf_counter() - t0, len(gc.get_objects())
    print(
        json.dumps(
            {
                "median_s": statistics.median(timed),
                "min_s": min(timed),
                "iteration_s": timed,
                "warmup_s": steps[: a.warmup],
                "gc": not a.no_gc,
                "gc_collect_s": gc_s,
                "gc_tracked_objects": gc_objects,
                "threads": torch.get_num_threads(),
                "trainer": f"{module.__name__}.PPOTrainer",
                "versions": {
                    "trl": trl.__version__,
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                },
                "shape": {
                    "layers": a.layers,
                    "width": a.width,
                    "heads": a.heads,
                    "vocab": len(tok),
                    "prompts": a.prompts,
                    "prompt_len": a.prompt_len,
                    "response_len": a.response_len,
                    "activation": a.activation,
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
