#!/usr/bin/env bash
# A side environment with TRL's last PPO trainer, for `rlhfsim bench --only trl_ppo --trl-python DIR/bin/python`.
#
# TRL's PPOTrainer (the PPOv2 design: policy, ref_policy, value_model, reward_model) moved to
# trl.experimental.ppo in 0.26 and was removed in 1.13, so it cannot live in the project's environment
# (a newer TRL). trl 1.12.0 is its last release; transformers 4.57.6 is the last 4.x (trl 1.12 needs >= 4.56.2).
# torch is pinned first to the project's version (the CPU build).
#
# Usage: scripts/trl_ppo_venv.sh DIR [PYTHON]     (PYTHON defaults to python3; 3.10 or newer)
set -euo pipefail
dir="${1:?usage: scripts/trl_ppo_venv.sh DIR [PYTHON]}"
py="${2:-python3}"
"$py" -m venv "$dir"
"$dir/bin/python" -m pip install -q torch==2.13.0
"$dir/bin/python" -m pip install -q trl==1.12.0 transformers==4.57.6 accelerate==1.15.0 datasets==5.0.1 tokenizers==0.22.2
TRL_EXPERIMENTAL_SILENCE=1 "$dir/bin/python" - <<'PY'
from trl.experimental.ppo import PPOTrainer  # noqa: F401  (fails here if the pins stopped resolving together)
import torch, transformers, trl
print(f"ok: trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
PY
echo "run: python -m rlhfsim bench --only trl_ppo --trl-python $dir/bin/python"
