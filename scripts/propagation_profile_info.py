"""How much profile information the propagation study's dial removes (reports/propagation/README.md, "Why the null").

    python scripts/propagation_profile_info.py [runs/propagation]

From the held-out evaluation samples of the dial-0 arms (rewards/round_XXX.parquet: 256 prompts x 8 completions):
  1. per round, the Spearman correlation over prompts of the reward model's within-prompt SD with gold's, and the
     pooled within-prompt Pearson correlation of centred proxy and gold (how much gold the model's profiles carry);
  2. profile surgery (pooled, as the study's iterations apply it: 16 prompts x 4 completions a batch) at dial 0 / 0.5 / 1
     on the first 4 completions of each prompt, and the resulting collapse/shape_rel against gold on the same
     completions (0 = as prompt-dependent as gold, 1 = one profile) and the over-prompt correlation of spreads.
An offline reading of finished runs: it changes nothing and trains nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats as st

from rlhfsim.diagnostics.collapse import profile_collapse
from rlhfsim.reward.surgery import profile_surgery

ROUNDS = (1, 5, 10, 15)
K, BATCH_PROMPTS = 4, 16  # the study's group size and prompts per iteration


def spread_info(root: Path, arms=("ppo_d0", "grpo_d0", "rloo_d0")) -> pd.DataFrame:
    rows = []
    for arm in arms:
        for seed_dir in sorted((root / arm).glob("seed*")):
            for r in ROUNDS:
                d = pd.read_parquet(seed_dir / "rewards" / f"round_{r:03d}.parquet")
                g = d.groupby("prompt_id")
                sd = g.agg(p=("proxy", "std"), gd=("gold", "std"))
                pc, gc = d.proxy - g.proxy.transform("mean"), d.gold - g.gold.transform("mean")
                rows.append((arm, seed_dir.name, r, st.spearmanr(sd.p, sd.gd).statistic, np.corrcoef(pc, gc)[0, 1]))
    return pd.DataFrame(rows, columns=["arm", "seed", "round", "spread_rho_gold", "within_corr_gold"])


def dial_collapse(root: Path, arm: str = "ppo_d0") -> pd.DataFrame:
    rows = []
    for seed_dir in sorted((root / arm).glob("seed*")):
        for r in ROUNDS:
            d = pd.read_parquet(seed_dir / "rewards" / f"round_{r:03d}.parquet")
            d = d[d.completion_idx < K].sort_values(["prompt_id", "completion_idx"])
            P = d.prompt_id.nunique()
            R, G = d.proxy.to_numpy().reshape(P, K), d.gold.to_numpy().reshape(P, K)  # [P, K]
            types = d.groupby("prompt_id").prompt_type.first().tolist()
            for dial in (0.0, 0.5, 1.0):
                A = np.empty_like(R)
                for b in range(0, P, BATCH_PROMPTS):
                    x = R[b : b + BATCH_PROMPTS].ravel()
                    A[b : b + BATCH_PROMPTS] = profile_surgery(
                        x, np.repeat(np.arange(x.size // K), K), dial, "pooled"
                    ).reshape(-1, K)
                rows.append(
                    (
                        seed_dir.name,
                        r,
                        dial,
                        profile_collapse(A, G, types)["collapse/shape_rel"],
                        st.spearmanr(A.std(1), G.std(1)).statistic,
                    )
                )
    return pd.DataFrame(rows, columns=["seed", "round", "dial", "shape_rel", "spread_rho_gold"])


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/propagation")
    print("Reward model's profiles against gold's (dial-0 arms; mean, sd over seeds):")
    print(
        spread_info(root)
        .groupby(["arm", "round"])[["spread_rho_gold", "within_corr_gold"]]
        .agg(["mean", "std"])
        .round(3)
    )
    print("\nApplied (post-surgery) profiles, ppo_d0's samples, rounds", ROUNDS, "(mean, sd over seeds x rounds):")
    print(dial_collapse(root).groupby("dial")[["shape_rel", "spread_rho_gold"]].agg(["mean", "std"]).round(3))


if __name__ == "__main__":
    main()
