"""The reward-collapse study's figure and table (Song, Cai, Lee, Su 2023, fig. 1/3) from terminal-phase profiles.

Runs made with ``loop.diagnose_train: true`` leave ``rewards/train_round_XXX.parquet``: the reward model scored
on the rankings it was trained on. For each run and prompt type the *mean sorted profile* is the average over
that type's training groups of the group's rewards sorted ascending (index 1 = lowest). The figure draws it
per utility (one panel per variant), a band over seeds, and the finite-n optimum of the utility as trained
(``theory.optimal_rewards``) dashed; the table gives the deviation from that optimum and the distance between
the open and closed profiles (the training-set collapse index), per variant over seeds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rlhfsim.report.plots import FigureResult, errorbar, pyplot, seaborn_theme
from rlhfsim.report.select import config_values
from rlhfsim.reward.utilities import utility_from_spec
from rlhfsim.theory import optimal_rewards

log = logging.getLogger(__name__)

TYPE_COLOURS = {"open": "#1f77b4", "closed": "#ff7f0e"}  # the paper's figure: blue open-ended, orange closed-ended


def _last_train_file(run) -> Path | None:
    files = sorted((run.path / "rewards").glob("train_round_*.parquet"))
    return files[-1] if files else None


def _variant_order(study) -> list[str]:
    """The experiment file's variant order (the paper's panel order), else the study's."""
    declared = [v for v in (study.variant_overrides or {}) if v in study.variants]
    return declared + [v for v in study.variants if v not in declared]


def has_train_rewards(study) -> bool:
    return any(_last_train_file(r) is not None for r in study.runs)


def run_profiles(study) -> pd.DataFrame:
    """Long table (variant, seed, prompt_type, index, reward): each run's mean sorted training profile per type.

    Only groups with the full ``k`` completions count (``k`` the largest group of the run).
    """
    frames = []
    for r in study.runs:
        f = _last_train_file(r)
        if f is None:
            continue
        try:
            df = pd.read_parquet(f)
        except Exception as e:  # noqa: BLE001 - an unreadable file is a missing-data note
            study.note(f"{r.label} ({r.path}): rewards/{f.name} unreadable ({type(e).__name__})")
            continue
        size = df.groupby("group")["reward"].transform("size")
        df = df[size == size.max()].copy()
        df["index"] = df.groupby("group")["reward"].rank(method="first", ascending=True).astype(int)
        prof = df.groupby(["prompt_type", "index"], as_index=False)["reward"].mean()
        prof.insert(0, "seed", r.seed)
        prof.insert(0, "variant", r.variant)
        frames.append(prof)
    if not frames:
        return pd.DataFrame(columns=["variant", "seed", "prompt_type", "index", "reward"])
    return pd.concat(frames, ignore_index=True)


def _utility_for(cfg: dict, ptype: str):
    rw = cfg.get("reward") or {}
    spec = (rw.get("prompt_aware") or {}).get(ptype) or rw.get("utility") or "logsigmoid"
    if isinstance(spec, dict):
        spec = {"name": spec.get("name", "logsigmoid"), **(spec.get("params") or {})}
    return utility_from_spec(spec)


def theory_profiles(study, k: int) -> dict[tuple[str, str], np.ndarray]:
    """{(variant, prompt type): ascending finite-n optimum} for each variant's utility as trained (bounded runs only)."""
    out = {}
    for r in study.runs:
        if r.config is None or (r.config.get("reward") or {}).get("bounded") is False:
            continue
        for t in ("open", "closed"):
            if (r.variant, t) not in out:
                out[(r.variant, t)] = optimal_rewards(_utility_for(r.config, t), k)
    return out


def profile_table(study, prof: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per variant and prompt type, over seeds: deviation of the mean sorted profile from the optimum, and the
    open-vs-closed W1 (training-set collapse index) beside the value the optima themselves give."""
    prof = run_profiles(study) if prof is None else prof
    if prof.empty:
        return pd.DataFrame()
    k = int(prof["index"].max())
    theory = theory_profiles(study, k)
    rows = []
    for (v, sd), g in prof.groupby(["variant", "seed"]):
        wide = g.pivot(index="index", columns="prompt_type", values="reward")
        index = float(np.mean(np.abs(wide["open"] - wide["closed"]))) if {"open", "closed"} <= set(wide) else np.nan
        opt_index = (
            float(np.mean(np.abs(theory[(v, "open")] - theory[(v, "closed")])))
            if (v, "open") in theory and (v, "closed") in theory
            else np.nan
        )
        for t in wide.columns:
            dev = np.abs(wide[t].to_numpy() - theory[(v, t)]) if (v, t) in theory else np.full(k, np.nan)
            rows.append(
                {
                    "variant": v,
                    "seed": sd,
                    "prompt_type": t,
                    "theory_maxdev": float(dev.max()),
                    "theory_meandev": float(dev.mean()),
                    "train_index": index,
                    "optimum_index": opt_index,
                }
            )
    per_seed = pd.DataFrame(rows)
    m = study.metrics
    last_m = m.sort_values("round").groupby(["variant", "seed"]).last() if not m.empty else None
    # share of the type's training rewards within 0.02 of 0 or 1 (the optimum of x has all of them there)
    # and the objective gap: optimal minus achieved mean utility over the type's labelled pairs (0 = optimum value)
    for col in ("saturation", "objective_gap"):
        per_seed[col] = [
            last_m.loc[(v, sd)].get(f"collapse_train/{t}_{col}", np.nan)
            if last_m is not None and (v, sd) in last_m.index
            else np.nan
            for v, sd, t in zip(per_seed["variant"], per_seed["seed"], per_seed["prompt_type"])
        ]
    extra = [c for c in ("collapse_train/order_acc", "collapse/probe_shape_rel", "collapse/shape_rel") if c in m]
    if extra:
        last = m.sort_values("round").groupby(["variant", "seed"], as_index=False).last()[["variant", "seed", *extra]]
        per_seed = per_seed.merge(last, on=["variant", "seed"], how="left")
    stats = per_seed.drop(columns="seed").groupby(["variant", "prompt_type"], sort=False)
    out = stats.agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out.insert(0, "seeds", stats.size())
    order = {v: i for i, v in enumerate(_variant_order(study))}
    out = out.reset_index().sort_values(
        ["variant", "prompt_type"], key=lambda s: s.map(order) if s.name == "variant" else s
    )
    return out.reset_index(drop=True)


def fig_terminal_profiles(study, band: str = "sd"):
    """Sorted reward against response index per prompt type, one panel per variant, the finite-n optimum dashed."""
    key, title = (
        "fig12_terminal_profiles",
        "Terminal-phase sorted reward profiles on the training rankings (Song et al. fig. 1/3)",
    )
    prof = run_profiles(study)
    if prof.empty:
        return FigureResult(
            key, title, "", None, "no run has rewards/train_round_XXX.parquet (set loop.diagnose_train: true)"
        )
    plt, sns = pyplot(), seaborn_theme()
    k = int(prof["index"].max())
    theory = theory_profiles(study, k)
    variants = [v for v in _variant_order(study) if v in set(prof["variant"])]
    fig, axes = plt.subplots(1, len(variants), figsize=(3.4 * len(variants), 3.6), squeeze=False, sharey=True)
    idx = np.arange(1, k + 1)
    for ax, v in zip(axes[0], variants):
        sub = prof[prof["variant"] == v]
        for t in ("open", "closed"):
            st = sub[sub["prompt_type"] == t]
            if not st.empty:
                sns.lineplot(
                    data=st,
                    x="index",
                    y="reward",
                    color=TYPE_COLOURS[t],
                    errorbar=errorbar(band),
                    ax=ax,
                    label=f"{t}-ended",
                    legend=False,
                )
        opts = [theory.get((v, t)) for t in ("open", "closed")]
        if opts[0] is not None and opts[1] is not None and np.allclose(opts[0], opts[1]):
            ax.plot(idx, opts[0], color="black", ls="--", lw=1.6, label="finite-n optimum")
        else:
            for t, o in zip(("open", "closed"), opts):
                if o is not None:
                    ax.plot(idx, o, color=TYPE_COLOURS[t], ls="--", lw=1.2, alpha=0.9, label=f"optimum ({t})")
        ax.set(
            title=v,
            xlabel="response index (sorted by reward)",
            ylabel="reward (sigmoid)",
            ylim=(-0.02, 1.02),
            xticks=idx,
        )
        ax.legend(loc="upper left", fontsize=7, frameon=True)
    fig.tight_layout()
    n_seeds = prof.groupby("variant")["seed"].nunique().min()
    cap = (
        f"Each panel is one variant. Lines: mean over a run's training groups of the rewards sorted ascending, then the mean over "
        f"{n_seeds} seed(s); bands ±1 {'sd' if band == 'sd' else '95% CI'} over seeds. Dashed: the finite-n optimum of "
        f"sum_(i<j) U(r_i - r_j) for n = {k} and the utility exactly as trained (eps shift included; theory.optimal_rewards). "
        "Collapse: open and closed lines coincide with each other and the optimum."
    )
    if "True" in config_values(study, "reward.prompt_aware"):
        cap += " A prompt-aware panel has one optimum per prompt type."
    return FigureResult(key, title, cap, fig)


def write_tables(study, out: Path) -> list[Path]:
    """collapse_profiles.csv (mean profiles per run) and collapse_table.csv (deviations over seeds); [] without data."""
    prof = run_profiles(study)
    if prof.empty:
        return []
    paths = [out / "collapse_profiles.csv", out / "collapse_table.csv"]
    prof.to_csv(paths[0], index=False)
    profile_table(study, prof).to_csv(paths[1], index=False, float_format="%.4f")
    return paths
