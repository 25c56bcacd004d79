"""`rlhfsim bench`: rollout, PPO-iteration, reward-training and per-round timings in one process (see docs/performance.md)."""
