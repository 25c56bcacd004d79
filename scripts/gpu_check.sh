#!/usr/bin/env bash
# The GPU check (issue 21): on a CUDA machine, run both GPU experiment files at reduced size on tiny local
# checkpoints (offline, bf16), as a sweep over every GPU (one run per GPU) and as one `accelerate launch` run, then
# write the measured rows into the GPU table of docs/performance.md.
#   scripts/gpu_check.sh [WORKDIR]          # default WORKDIR: /tmp/rlhfsim-gpu-check; about 5-10 min
# GPU_CHECK_DEVICE=cpu runs the same steps on CPU (fp32, no accelerate) to check the script itself; it writes
# WORKDIR/gpu_rows.md but leaves docs/performance.md alone.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-/tmp/rlhfsim-gpu-check}"
DEV="${GPU_CHECK_DEVICE:-cuda}"
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$DEV" = cuda ] && [ "$NGPU" -lt 1 ]; then
  echo "gpu_check: no CUDA device (torch.cuda.device_count() = 0); run it on a GPU machine, or GPU_CHECK_DEVICE=cpu to test the script" >&2
  exit 2
fi
PREC=$([ "$DEV" = cuda ] && echo bf16 || echo fp32)
JOBS=$([ "$DEV" = cuda ] && echo "$NGPU" || echo 2)
rm -rf "$W" && mkdir -p "$W"
"$PY" -m rlhfsim.models.tiny "$W/tiny" >/dev/null
T="$W/tiny"
# reduced size: tiny checkpoints and prompts, 2 rounds; everything else (world rules, utilities, PPO) as in the files
SETS=(--set device="$DEV" --set compute.precision="$PREC" --set world.dataset="$T/prompts.jsonl" --set world.split=train
      --set world.prompt_column=prompt --set world.reference_column=answer --set world.type_column=type
      --set 'world.type_rules={}' --set world.max_rows=null --set world.eval_fraction=0.25
      --set policy.checkpoint="$T/gpt2" --set reward.checkpoint="$T/deberta" --set policy.cache_dir="$W/sft"
      --set policy.sft_demos=64 --set policy.response_len=16 --set loop.rounds=2 --set loop.prompts_per_round=16
      --set loop.eval_prompts=8 --set optimizer.batch_size=16)
MEM="$W/memory.csv"
if [ "$DEV" = cuda ]; then
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -l 1 > "$MEM" & SMI=$!
  trap 'kill $SMI 2>/dev/null || true' EXIT
fi
for E in gpu_gold_rm gpu_longform_length; do
  GOLD=()
  [ "$E" = gpu_gold_rm ] && GOLD=(--set world.gold.checkpoint="$T/gold")
  "$PY" -m rlhfsim sweep "experiments/$E.yaml" --out "$W/runs" --jobs "$JOBS" "${SETS[@]}" "${GOLD[@]}" 2>&1 | tail -n 12 || true
done
if [ "$DEV" = cuda ] && [ "$NGPU" -ge 2 ]; then  # one run, data-parallel over every GPU
  accelerate launch --multi_gpu --num_processes "$NGPU" -m rlhfsim run "$W/runs/gpu_gold_rm/bradley_terry/seed0/config.yaml" \
    --out "$W/ddp" --set policy.cache_dir="$W/sft" 2>&1 | tail -n 5
fi
# issue 18's GRPO speed target where it may hold: rlhfsim and TRL's GRPOTrainer side by side on the device
# (bench shape on a GPU; a tiny shape on CPU, which only checks the step)
BSH=(--layers 1 --width 32 --heads 2 --vocab 24 --prompts 8 --prompt-len 4 --response-len 4 --repeats 2 --warmup 1 --alternations 1)
if [ "$DEV" = cuda ]; then
  BSH=(--repeats 5 --warmup 2 --alternations 3)
  kill "$SMI" 2>/dev/null || true  # the memory column is the experiments', not the bench's
fi
FIRST="${CUDA_VISIBLE_DEVICES:-0}"  # one GPU: with several visible, TRL's Trainer would wrap its model in DataParallel
CUDA_VISIBLE_DEVICES="${FIRST%%,*}" "$PY" -m rlhfsim bench --only grpo --device "$DEV" "${BSH[@]}" --json "$W/grpo_bench.json" --markdown "$W/grpo_bench.md" 2>&1 | tail -n 24 || true
"$PY" - "$W" "$DEV" <<'PYEOF'
import json, re, sys
from pathlib import Path
import pandas as pd
W, dev = Path(sys.argv[1]), sys.argv[2]
import torch
gpu = torch.cuda.get_device_name(0) if dev == "cuda" else "CPU (script check)"
mem = pd.read_csv(W / "memory.csv", names=["gpu", "mib"]) if (W / "memory.csv").exists() else None
rows = []
for d in sorted(W.glob("runs/*/*/seed*")) + ([W / "ddp"] if (W / "ddp").exists() else []):
    m = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines() if l.strip()] if (d / "metrics.jsonl").exists() else []
    m = [r for r in m if r.get("round", 0) > 0]
    if not m:
        rows.append(f"| {gpu} | `{d.relative_to(W)}` | failed: see {d}/run.log | | | |"); continue
    import yaml
    loop = yaml.safe_load((d / "config.yaml").read_text())["loop"]
    # rollout tokens per round: prompts x completions x mean completion length (eval/length, a proxy for the rollout's)
    tok = loop["prompts_per_round"] * loop["completions_per_prompt"] * sum(r.get("eval/length", 0) for r in m) / len(m)
    gen = sum(r.get("time/generate", 0) for r in m) / len(m)
    rnd = sum(r.get("time/round", 0) for r in m) / len(m)
    pairs = sum(r.get("rm/pairs", 0) for r in m) / max(sum(r.get("time/reward", 0) for r in m), 1e-9)
    peak = f"{mem.mib.max() / 1024:.1f} GiB (whole GPU, nvidia-smi)" if mem is not None and len(mem) else "-"
    name = "ddp: accelerate launch, all GPUs" if d.name == "ddp" else str(d.relative_to(W / "runs"))
    rows.append(f"| {gpu} | `{name}` (tiny checkpoints, 2 rounds) | {tok / max(gen, 1e-9):.0f} "
                f"| {pairs:.0f} | {rnd:.2f} | {peak} |")
(W / "gpu_rows.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
grpo = (W / "grpo_bench.md").read_text().strip() if (W / "grpo_bench.md").exists() else f"GRPO bench failed: see the output above ({gpu})"
print(grpo)
if dev == "cuda":
    p = Path("docs/performance.md"); s = p.read_text()
    s = re.sub(r"(\| GPU \| experiment .*?\n\|---.*?\n)(?:\| \(open\).*?\n)+", lambda mt: mt.group(1) + "\n".join(rows) + "\n", s, flags=re.S)
    s = s.replace("GRPO-on-GPU: (open)", f"{gpu}, `rlhfsim bench --only grpo --device cuda --repeats 5 --warmup 2 --alternations 3`:\n\n{grpo}")
    p.write_text(s)
PYEOF
