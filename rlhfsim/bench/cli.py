"""The `rlhfsim bench` command: run the selected sections, print a table, optionally write JSON.

Only argparse and rich are imported at module level: `rlhfsim --help` must not pay for torch, trl or
datasets. The sections live in rlhfsim.bench.{sections, reward, rounds}.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rlhfsim.schema import ConfigError

SECTIONS = ("rollout", "ppo", "reward", "ensemble", "rounds")
OPTIONAL = (
    "trl_ppo",
    "grpo",
    "study",
)  # only with --only: trl_ppo needs a side environment (--trl-python); grpo runs TRL's
# GRPOTrainer; study runs a small study of child processes (minutes)
DEFAULT_SIZES = "16x4,32x4,64x4,64x8"
QUICK_SIZES = "16x4,32x4,64x4,64x8"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            p, k = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--sizes {item!r}: expected PROMPTSxCOMPLETIONS, e.g. 64x4") from None
        if p < 1 or k < 2:
            raise ConfigError(f"--sizes {item!r}: need at least 1 prompt and 2 completions")
        out.append((p, k))
    return out


def run_bench(args) -> dict:
    """All selected sections as one JSON-able dict (no printing)."""
    import torch

    from rlhfsim.bench.common import Shape, environment  # torch: imported when a bench runs, not at rlhfsim --help

    if args.threads:
        torch.set_num_threads(args.threads)
    only = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    bad = [s for s in only if s not in SECTIONS + OPTIONAL]
    if bad:
        raise ConfigError(f"--only {','.join(bad)}: unknown section; choose from {', '.join(SECTIONS + OPTIONAL)}")
    if args.device != "cpu":  # fail before any section runs, not after them
        if set(only) != {"grpo"}:
            raise ConfigError(f"--device {args.device}: only the grpo section runs on a GPU; use --only grpo")
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {args.device}: no CUDA device here (torch.cuda.is_available() is False); use --device cpu"
            )
    if "trl_ppo" in only:  # fail before any section runs, not after them
        from rlhfsim.bench.trl_ppo import check_trl_python  # torch: imported when the section runs

        check_trl_python(args.trl_python)
    shape = Shape(
        n_layer=args.layers,
        n_embd=args.width,
        n_head=args.heads,
        vocab=args.vocab,
        prompts=args.prompts,
        prompt_len=args.prompt_len,
        response_len=args.response_len,
        ppo_epochs=args.ppo_epochs,
        ppo_minibatches=args.ppo_minibatches,
        rm_groups=args.rm_groups,
        rm_k=args.rm_k,
        rm_seq_len=args.rm_seq_len,
        rm_batch=args.rm_batch,
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        repeats=args.repeats if args.repeats is not None else (3 if args.quick else 7),
    )
    out: dict = {
        "meta": {
            **environment(),
            "quick": bool(args.quick),
            "sections": list(only),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "shape": shape.as_dict(),
    }
    t0 = time.perf_counter()
    if "rollout" in only:
        from rlhfsim.bench.sections import bench_rollout  # torch: imported when the section runs

        out["rollout"] = bench_rollout(shape)
    if "ppo" in only:
        from rlhfsim.bench.sections import bench_ppo  # torch: imported when the section runs

        out["ppo"] = bench_ppo(shape)
    if "trl_ppo" in only:
        from rlhfsim.bench.trl_ppo import bench_trl_ppo  # torch: imported when the section runs

        out["trl_ppo"] = bench_trl_ppo(shape, args.trl_python, args.alternations)
    if "grpo" in only:
        from rlhfsim.bench.trl_grpo import bench_trl_grpo  # trl: imported when the section runs

        out["grpo"] = bench_trl_grpo(shape, args.group, args.alternations, args.device)
    if args.profile:
        from rlhfsim.bench.sections import profile_ppo  # torch: imported when the section runs

        out["profile"] = profile_ppo(shape, args.profile)
    if "reward" in only:
        from rlhfsim.bench.reward import bench_reward  # torch: imported when the section runs

        out["reward"] = bench_reward(shape, with_trl=not args.no_trl)
    if "ensemble" in only:
        from rlhfsim.bench.reward import bench_ensemble  # torch: imported when the section runs

        out["ensemble"] = bench_ensemble(shape, args.members)
    if "rounds" in only:
        from rlhfsim.bench.rounds import bench_rounds  # torch: imported when the section runs

        sizes = parse_sizes(args.sizes if args.sizes is not None else (QUICK_SIZES if args.quick else DEFAULT_SIZES))
        rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
        out["rounds"] = bench_rounds(args.config, args.set, rounds, sizes)
    if "study" in only:
        from rlhfsim.bench.study import bench_study  # torch: imported when the section runs

        out["study"] = bench_study(
            args.study_config,
            args.study_set,
            args.study_runs,
            args.study_rounds,
            args.study_jobs,
            args.study_threads,
            args.baseline,
            args.study_alternations,
            not args.no_floor,
            args.study_cache,
            args.study_sweep,
        )
    out["meta"]["total_s"] = time.perf_counter() - t0
    return out


def _f(x, fmt: str = "{:.3g}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def table_rows(res: dict) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows of the printed table."""
    rows = []
    sh = res["shape"]
    if "rollout" in res:
        r = res["rollout"]
        note = f"B={sh['prompts']} x L={sh['response_len']}, {sh['n_layer']}x{sh['n_embd']}"
        rows += [
            ("rollout rlhfsim tokens/s", _f(r["rlhfsim_tokens_per_s"], "{:.0f}"), note),
            ("rollout generate() tokens/s", _f(r["generate_tokens_per_s"], "{:.0f}"), "transformers, same model/batch"),
            ("rollout speedup vs generate", _f(r["speedup_vs_generate"], "{:.2f}x"), ""),
        ]
    if "ppo" in res:
        p = res["ppo"]
        rows += [
            (
                "PPO iteration s",
                _f(p["iteration_s"], "{:.3f}"),
                f"{sh['ppo_epochs']} epoch x {sh['ppo_minibatches']} minibatch; target <= 0.16",
            ),
            (
                "  of which rollout s",
                _f(p["rollout_s"], "{:.3f}"),
                "generate + reference, value, reward-model passes + GAE",
            ),
            ("  of which update s", _f(p["update_s"], "{:.3f}"), ""),
            (
                "PPO iteration s, shared value head",
                _f(p["shared_iteration_s"], "{:.3f}"),
                "optimizer.value_model: shared",
            ),
            (
                "  of which rollout s",
                _f(p["shared_rollout_s"], "{:.3f}"),
                "generate + reference, reward-model passes + GAE",
            ),
            ("  of which update s", _f(p["shared_update_s"], "{:.3f}"), ""),
        ]
    if "grpo" in res:
        from rlhfsim.bench.trl_grpo import table_rows as grpo_rows  # torch, trl: only when the section ran

        rows += grpo_rows(res["grpo"])
    if "trl_ppo" in res:
        from rlhfsim.bench.trl_ppo import table_rows as trl_rows  # torch: only when the section ran

        rows += trl_rows(res["trl_ppo"])
    if "profile" in res:
        q = res["profile"]
        rows.append(
            (
                "PPO profile s/iteration",
                _f(q["total_s_per_iter"], "{:.3f}"),
                f"torch.profiler, own CPU time of all ops, {q['value_model']} value model",
            )
        )
        rows += [
            (
                f"  {op['name']}",
                _f(op["self_s_per_iter"], "{:.4f}"),
                f"{op['share']:.0%}, {op['calls_per_iter']:.0f} calls",
            )
            for op in q["ops"]
        ]
    if "study" in res:
        from rlhfsim.bench.study import table_rows as study_rows  # torch: imported when the section runs

        rows += study_rows(res["study"], _f)
    if "reward" in res:
        w = res["reward"]
        rows.append(
            (
                "RM train rlhfsim pairs/s",
                _f(w["rlhfsim_pairs_per_s"], "{:.0f}"),
                f"{w['groups']} groups x k={w['k']} ({w['pairs']} pairs), {w['seq_len']} tokens",
            )
        )
        if "trl_pairs_per_s" in w:
            rows += [
                (
                    "RM train TRL pairs/s",
                    _f(w["trl_pairs_per_s"], "{:.0f}"),
                    f"RewardTrainer, batch {sh['rm_batch']} pairs, fp32",
                ),
                ("RM ratio vs TRL", _f(w["ratio_vs_trl"], "{:.1f}x"), "target >= 5x"),
            ]
    if "ensemble" in res:
        e = res["ensemble"]
        rows += [
            ("RM round s, 1 model", _f(e["single_s"], "{:.3f}"), f"train 1 epoch ({e['groups']} groups) + score all"),
            (
                f"RM round s, {e['members']} stacked",
                _f(e["ensemble_stacked_s"], "{:.3f}"),
                f"{_f(e['ratio_stacked'], '{:.2f}x')} single; target <= 2.5x for 5",
            ),
            (
                f"RM round s, {e['members']} looped",
                _f(e["ensemble_loop_s"], "{:.3f}"),
                f"{_f(e['ratio_loop'], '{:.2f}x')} single",
            ),
            (
                f"RM round s, {e['members']} heads",
                _f(e["heads_s"], "{:.3f}"),
                f"{_f(e['ratio_heads'], '{:.2f}x')} single; shared trunk, bootstrap weights",
            ),
            (
                "member std, stacked / heads",
                f"{e['stacked_std']:.3f} / {e['heads_std']:.3f}",
                f"mean std of member logits per completion; centred {e['stacked_std_centred']:.3f} / {e['heads_std_centred']:.3f}",
            ),
        ]
    if "rounds" in res:
        q = res["rounds"]
        rows.append(("round s", _f(q["round_s"], "{:.2f}"), f"{q['config']}, {q['rounds']} rounds, SFT excluded"))
        rows.append(("  phases s", " ".join(f"{k[:4]}={v:.2f}" for k, v in q["phases_s"].items()), ""))
        rows.append(
            ("SFT s (one-off)", _f(q["sft_s"], "{:.1f}"), "loaded from cache" if q["sft_was_cached"] else "trained")
        )
        if "scaling" in q:
            for pt in q["scaling"]["points"]:
                rows.append(
                    (
                        f"  N={pt['n']} ({pt['prompts']}x{pt['completions']}) round s",
                        _f(pt["round_s"], "{:.2f}"),
                        f"N-dependent phases {pt['n_dependent_s']:.2f}",
                    )
                )
            for name in ("round_fit", "n_dependent_fit"):
                f = q["scaling"][name]
                sup = f.get("superlinear", "n/a")
                rows.append(
                    (
                        f"  {name.replace('_', ' ')}",
                        f"{f['intercept_s']:.2f} + {f['slope_s_per_item'] * 1000:.2f} ms x N",
                        f"R^2 {f['r2']:.3f}"
                        + (
                            ""
                            if sup == "n/a"
                            else f", N^2 share {f['quadratic_share_at_max']:.2f}, "
                            + {
                                True: "super-linear",
                                False: "no super-linear term",
                                None: "noise-dominated, no verdict",
                            }[sup]
                        ),
                    )
                )
    return rows


def markdown_table(res: dict) -> str:
    """The printed table as Markdown (for docs/performance.md)."""
    lines = ["| measure | value | note |", "|---|---:|---|"]
    lines += [f"| {m.strip()} | {v} | {n} |" for m, v, n in table_rows(res)]
    return "\n".join(lines) + "\n"


def cmd_bench(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    res = run_bench(args)
    t = Table(
        title=f"rlhfsim bench ({res['meta']['threads']} threads, torch {res['meta']['torch']}, {res['meta']['total_s']:.0f} s)"
    )
    for col in ("measure", "value", "note"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for row in table_rows(res):
        t.add_row(*row)
    console.print(t)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
        console.print(f"JSON -> {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(res))
        console.print(f"Markdown table -> {args.markdown}")
    return 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="measure rollout, PPO iteration, reward training and per-round speed")
    b.add_argument(
        "--only",
        help=f"comma-separated sections: {','.join(SECTIONS)} (default: all), or "
        f"{','.join(OPTIONAL)} (TRL's last PPO trainer side by side; needs --trl-python)",
    )
    b.add_argument("--quick", action="store_true", help="fewer repeats, 1 round, 3 scaling sizes")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    b.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    b.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    b.add_argument("--warmup", type=int, help="untimed calls before timing (default 2, quick 1)")
    b.add_argument("--repeats", type=int, help="timed calls; the median is reported (default 7, quick 3)")
    b.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="also profile the PPO iteration (torch.profiler) and list its TOP operators by own CPU time",
    )
    g = b.add_argument_group("shape (rollout, PPO, reward training)")
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--width", type=int, default=128)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--vocab", type=int, default=64)
    g.add_argument("--prompts", type=int, default=64, help="rollout / PPO batch")
    g.add_argument("--prompt-len", type=int, default=8)
    g.add_argument("--response-len", type=int, default=16)
    g.add_argument("--ppo-epochs", type=int, default=1)
    g.add_argument("--ppo-minibatches", type=int, default=1)
    g.add_argument("--group", type=int, default=4, help="grpo: completions per prompt (--prompts rows per iteration)")
    g.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="grpo: run both sides on this device (cuda: only with --only grpo)",
    )
    g.add_argument("--rm-groups", type=int, default=64, help="prompt groups in the reward-training data")
    g.add_argument("--rm-k", type=int, default=8, help="completions per group (all k(k-1)/2 pairs labelled)")
    g.add_argument("--rm-seq-len", type=int, default=24, help="tokens per (prompt, completion), EOS included")
    g.add_argument("--rm-batch", type=int, default=64, help="TRL pairs per step; rlhfsim completions per step")
    g.add_argument("--no-trl", action="store_true", help="skip the TRL RewardTrainer comparison")
    g.add_argument("--members", type=int, default=5, help="ensemble section: members timed against one model")
    t = b.add_argument_group("trl_ppo (TRL's last PPO trainer, run from a side environment)")
    t.add_argument(
        "--trl-python",
        metavar="PATH",
        help="python of the side environment made by scripts/trl_ppo_venv.sh DIR (DIR/bin/python)",
    )
    t.add_argument(
        "--alternations",
        type=int,
        default=3,
        help="interleaved rounds of (TRL no-gc, TRL as shipped, rlhfsim separate, rlhfsim shared)",
    )
    r = b.add_argument_group("rounds")
    r.add_argument("--config", default="configs/quickstart.yaml", help="config timed per round")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for the rounds section")
    r.add_argument("--rounds", type=int, help="rounds per timed run (default 2, quick 1)")
    r.add_argument("--sizes", help=f"PROMPTSxCOMPLETIONS list for the scaling fit (default {DEFAULT_SIZES}; '' = skip)")
    s = b.add_argument_group("study (a small study of child runs; SFT cached and excluded)")
    s.add_argument(
        "--study-config", default="configs/propagation.yaml", help="config of every run (a path inside each tree)"
    )
    s.add_argument("--study-set", action="append", default=[], metavar="KEY=VALUE", help="override for every study run")
    s.add_argument("--study-runs", type=int, default=4, help="runs (seeds 0..N-1) per batch")
    s.add_argument("--study-rounds", type=int, default=6, help="rounds per run")
    s.add_argument("--study-jobs", type=int, default=2, help="runs at once, as `rlhfsim sweep --jobs`")
    s.add_argument(
        "--study-threads", type=int, default=0, help="intra-op threads per run (0: the sweep's cores // jobs)"
    )
    s.add_argument("--study-alternations", type=int, default=1, help="batches per tree, interleaved with --baseline's")
    s.add_argument(
        "--study-cache", help="SFT / offline-set cache shared by both trees (default: .cache/rlhfsim of this tree)"
    )
    s.add_argument(
        "--baseline", metavar="REV", help="also time this commit's tree (git archive), interleaved batch by batch"
    )
    s.add_argument("--no-floor", action="store_true", help="skip the GEMM-floor run (an extra, slow, untimed run)")
    s.add_argument(
        "--study-sweep", action="store_true", help="also time `rlhfsim sweep` itself over the same runs, per tree"
    )
    b.set_defaults(func=cmd_bench)
