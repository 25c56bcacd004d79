"""Time TRL's GRPOTrainer (the project's installed trl) at `rlhfsim bench`'s GRPO shape; print one JSON line.

Run as a subprocess (`python rlhfsim/bench/trl_grpo_driver.py ...`) so TRL's trainer, accelerate state and
callbacks live in their own process. It calls TRL's own `GRPOTrainer.train()`: generation with `generate`, the
reward model's pass on the decoded text, group-normalised advantages, the reference pass and the clipped loss with
the k3 KL term, one optimiser step; nothing is re-implemented here. One iteration is the interval between two
`on_step_end` callbacks (steps_per_generation 1, num_iterations 1: one generation batch per optimiser step).

Without `--best` TRL runs as shipped: GRPOConfig's own defaults, which on this path are bf16 autocast (`bf16` resolves
to True when fp16 is unset, on a CPU too), gradient checkpointing on, logging every 10 steps and the console callbacks.
`--best` is TRL at its best in fp32, the precision rlhfsim runs in: bf16 and gradient checkpointing off, logging off
(the per-step metric gathering, its `accelerator.gather` calls and the printed dicts) and the printer and progress
callbacks removed. Both fix only the shape, loss_type grpo (the default, dapo, normalises the same loss by the batch's
token count: the same work) and `use_cpu` (off with `--device cuda`); the resolved bf16 / gradient-checkpointing settings
are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings

from rlhfsim.bench.trl_ppo_driver import SPECIALS, step_clock, word_tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--best",
        action="store_true",
        help="TRL at its best: fp32, no gradient checkpointing, no logging, no console callbacks",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--rows", type=int, default=64, help="completions per iteration")
    p.add_argument("--group", type=int, default=4, help="completions per prompt (num_generations)")
    p.add_argument("--prompt-len", type=int, default=8)
    p.add_argument("--response-len", type=int, default=16)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: TRL on the GPU (use_cpu off), synchronised step clock",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        GPT2LMHeadModel,
        PrinterCallback,
        ProgressCallback,
    )
    from trl import GRPOConfig, GRPOTrainer

    if a.threads:
        torch.set_num_threads(a.threads)
    tok = word_tokenizer(a.vocab)

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
            activation_function="gelu",
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **kw,
        )

    torch.manual_seed(a.seed)
    n_iter = a.warmup + a.iterations
    g = torch.Generator().manual_seed(a.seed)
    n_prompts = a.rows // a.group
    ids = torch.randint(len(SPECIALS), len(tok), (n_prompts * n_iter, a.prompt_len), generator=g)
    data = Dataset.from_dict({"prompt": [" ".join(f"w{i - len(SPECIALS)}" for i in row) for row in ids.tolist()]})
    with tempfile.TemporaryDirectory() as d:
        GPT2LMHeadModel(config()).save_pretrained(f"{d}/policy")  # TRL builds its reference from the policy's path
        tok.save_pretrained(f"{d}/policy")
        reward = GPT2ForSequenceClassification(config(num_labels=1))
        best = {"logging_strategy": "no", "bf16": False, "gradient_checkpointing": False} if a.best else {}
        cfg = GRPOConfig(
            output_dir=f"{d}/out",
            seed=a.seed,
            use_cpu=a.device == "cpu",
            report_to="none",
            per_device_train_batch_size=a.rows,
            gradient_accumulation_steps=1,
            num_generations=a.group,
            steps_per_generation=1,
            num_iterations=1,
            max_completion_length=a.response_len,
            temperature=1.0,
            beta=a.beta,
            loss_type="grpo",
            max_steps=n_iter,
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=a.best,
            shuffle_dataset=False,
            **best,
        )
        clock = step_clock(torch.cuda.synchronize if a.device == "cuda" else None)
        trainer = GRPOTrainer(
            model=f"{d}/policy",
            reward_funcs=reward,
            args=cfg,
            train_dataset=data,
            processing_class=tok,
            reward_processing_classes=tok,
            callbacks=[clock],
        )
        if a.best:
            for cb in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(cb)
        trainer.train()
    steps = [b - c for c, b in zip(clock.marks, clock.marks[1:])]
    if len(steps) != n_iter:
        raise RuntimeError(f"expected {n_iter} step-end callbacks, got {len(steps)}")
    timed = steps[a.warmup :]
    print(
        json.dumps(
            {
                "median_s": statistics.median(timed),
                "min_s": min(timed),
                "iteration_s": timed,
                "best": a.best,
                "bf16": bool(cfg.bf16),
                "gradient_checkpointing": bool(cfg.gradient_checkpointing),
                "threads": torch.get_num_threads(),
                "versions": {"trl": trl.__version__, "transformers": transformers.__version__},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
