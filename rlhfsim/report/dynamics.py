"""Report parts for the learning-signal diagnostics (issue: advantage degradation, stagnation, propagation).

Figures: the best-of-n curve with its Gao fit (fig8) and proxy vs gold against sqrt(KL) (fig9). Tables
(one row per variant, seeds summarised): the over-optimisation fits, peak / stagnation / advantage
fidelity, and the propagation correlations. Tables are read off each run's summary.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.overopt import GAO_SHAPES, bon_kl, fit_gao, gao_bon, gao_rl, gao_shares
from rlhfsim.report.facets import row_height, top_margin
from rlhfsim.report.plots import (
    R2_ADEQUATE,
    FigureResult,
    Section,
    band_text,
    has,
    legend_once,
    pyplot,
    round_panels,
    seaborn_theme,
)
from rlhfsim.report.select import variant_groups

# ----------------------------------------------------------------------------- figures


def _bon_long(m: pd.DataFrame, rnd: int) -> pd.DataFrame:
    """Best-of-n columns of one round -> long table: variant, seed, n, d, gold gain, proxy."""
    ns = sorted(int(c.removeprefix("bon/gold_n")) for c in m.columns if c.startswith("bon/gold_n"))
    rows = m[m["round"] == rnd]
    out = []
    for _, r in rows.iterrows():
        g1 = pd.to_numeric(r.get("bon/gold_n1"), errors="coerce")
        for n in ns:
            g, p = (
                pd.to_numeric(r.get(f"bon/gold_n{n}"), errors="coerce"),
                pd.to_numeric(r.get(f"bon/proxy_n{n}"), errors="coerce"),
            )
            if pd.notna(g):
                out.append(
                    {
                        "variant": r["variant"],
                        "seed": r["seed"],
                        "n": n,
                        "d": float(np.sqrt(bon_kl(n))),
                        "gain": float(g - g1),
                        "proxy": float(p),
                    }
                )
    return pd.DataFrame(out)


def fig_best_of_n(study, pal, band="sd") -> FigureResult:
    """Gold gain and proxy of best-of-n against d = sqrt(log n - (n-1)/n), first and last trained round, with the bon-form fit."""
    plt = pyplot()
    key, title = "fig8_best_of_n", "Best-of-n as a second optimiser: gold gain and proxy against sqrt(KL_bon)"
    m = study.metrics
    if m.empty or not has(m, "bon/gold_n1"):
        return FigureResult(key, title, "", None, "no bon/* metrics (loop.bon_n = 0 in these runs)")
    trained = sorted(int(r) for r in m.loc[pd.to_numeric(m["bon/gold_n1"], errors="coerce").notna(), "round"].unique())
    picks = sorted({trained[0], trained[-1]})
    sns = seaborn_theme()
    groups = variant_groups(study)  # one row of panels per design-factor group: at most ~5 colours a panel
    fig, grid = plt.subplots(
        len(groups),
        2 * len(picks),
        figsize=(5.2 * 2 * len(picks), row_height(4.6, len(groups)) * len(groups)),
        squeeze=False,
    )
    long = {rnd: _bon_long(m, rnd) for rnd in picks}
    # one fit per (round, variant), drawn in every row the variant appears in (the baseline is in each)
    present = [v for v in study.variants if v in set(m["variant"])]
    fits, fit_of = [], {}  # fit_of[(round, variant)] = (fit, largest observed d)
    for rnd in picks:
        for v in present:
            dv = long[rnd][long[rnd]["variant"] == v]
            f = fit_gao(dv["d"].to_numpy(), dv["gain"].to_numpy(), form="bon")
            fits.append((rnd, v, f))
            fit_of[(rnd, v)] = (f, float(dv["d"].max()))
    for axes, (label, vs) in zip(grid, groups):
        order = [v for v in vs if v in present]
        row = f" ({label})" if label else ""
        for j, rnd in enumerate(picks):
            d = long[rnd][long[rnd]["variant"].isin(order)]
            ax_g, ax_p = axes[2 * j], axes[2 * j + 1]
            sns.lineplot(
                data=d,
                x="d",
                y="gain",
                hue="variant",
                hue_order=order,
                palette=pal,
                errorbar="sd",
                marker="o",
                ax=ax_g,
                linestyle=":",
            )
            sns.lineplot(
                data=d,
                x="d",
                y="proxy",
                hue="variant",
                hue_order=order,
                palette=pal,
                errorbar="sd",
                marker="o",
                ax=ax_p,
            )
            for v in order:
                f, d_max = fit_of[(rnd, v)]
                if np.isfinite(f["alpha"]):
                    xs = np.linspace(0, d_max, 100)  # the fit over the observed d only
                    ax_g.plot(xs, gao_bon(xs, f["alpha"], f["beta"]), color=pal[v], lw=2)
            ax_g.axhline(0, color="grey", lw=0.8, ls=":")
            ax_g.set(
                xlabel="sqrt(KL_bon) = sqrt(log n − (n−1)/n) (√nats)",
                ylabel="gold gain over n = 1 (gold units)",
                title=f"round {rnd}: gold (line: fit d(α − βd)){row}",
            )
            ax_p.set(
                xlabel="sqrt(KL_bon) (√nats)",
                ylabel="proxy of the chosen completion (RM scale)",
                title=f"round {rnd}: proxy{row}",
            )
    axes = list(grid.ravel())
    legend_once(fig, axes)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (
        "n = 1, 2, 4, ..., loop.bon_n completions per held-out prompt from the round's policy (before its PPO step), the "
        "proxy picks one; unbiased estimate over all n-subsets of the samples. Dots: mean over seeds (±1 sd); thick lines: "
        "the best-of-n form of Gao et al. fitted to all seeds' points. Proxy rises with n by construction; gold turning "
        "down at larger n is over-optimisation without RL."
    )
    res = FigureResult(key, title, cap, fig)
    res.fits = fits  # type: ignore[attr-defined]
    return res


def fig_proxy_gold_kl(study, pal, band="sd") -> FigureResult:
    """Proxy and gold (per round, mean over seeds) against sqrt(KL to the SFT policy): does the proxy rise while gold falls?"""
    plt = pyplot()
    key, title = "fig9_proxy_and_gold_vs_sqrt_kl", "Proxy and gold reward against sqrt(KL) per round"
    m = study.metrics
    if m.empty or not has(m, "eval/proxy") or not has(m, "eval/sqrt_kl"):
        return FigureResult(key, title, "", None, "needs eval/proxy and eval/sqrt_kl per round")
    cols = ["eval/sqrt_kl", "eval/gold", "eval/proxy"]
    d = m[["variant", "seed", "round", *cols]].copy()
    for c in cols:
        d[c] = pd.to_numeric(d[c], errors="coerce")
    mean = d.groupby(["variant", "round"], as_index=False)[cols].mean()
    groups = [(lab, [v for v in vs if v in set(mean["variant"])]) for lab, vs in variant_groups(study)]
    fig, grid = plt.subplots(len(groups), 2, figsize=(12, row_height(4.6, len(groups)) * len(groups)), squeeze=False)
    fitted: set[str] = set()
    for axes, (label, vs) in zip(grid, groups):
        for v in vs:
            mv = mean[mean["variant"] == v].sort_values("round")
            seeds = list(d[d["variant"] == v].sort_values("round").groupby("seed"))
            for ax, c in zip(axes, ("eval/proxy", "eval/gold")):
                for (
                    _,
                    sv,
                ) in (
                    seeds
                ):  # each seed thin, so n is visible (none where the arm has no values, e.g. a gold arm's proxy)
                    if sv[c].notna().any():
                        ax.plot(sv["eval/sqrt_kl"], sv[c], color=pal[v], lw=0.6, alpha=0.35)
                ok = mv[c].notna()
                ax.plot(mv.loc[ok, "eval/sqrt_kl"], mv.loc[ok, c], marker="o", color=pal[v], label=v)
                if ok.any():
                    last = mv[ok].iloc[-1]
                    ax.annotate(f"r{int(last['round'])}", (last["eval/sqrt_kl"], last[c]), fontsize=7, color=pal[v])
        for v in vs:  # the Gao RL form on the gold panel, only where it describes the arm (R² adequate)
            f = gold_fit(d[d["variant"] == v])
            if f is not None:
                xs, ys = f
                axes[1].plot(xs, ys, color=pal[v], lw=2.2, ls="--")
                fitted.add(v)
        suffix = f" ({label})" if label else ""
        axes[0].set(
            xlabel="sqrt(KL(policy ‖ SFT)) (√nats)", ylabel="proxy reward (reward-model scale)", title="proxy" + suffix
        )
        axes[1].set(xlabel="sqrt(KL(policy ‖ SFT)) (√nats)", ylabel="gold reward (0-1)", title="gold" + suffix)
    legend_once(fig, list(grid.ravel()))
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (
        "One point per round (mean over seeds), joined in round order, over each seed's own path (thin lines); the last "
        "round is labelled. The proxy of a round is "
        "that round's reward model, so it is one fixed function only while the reward model is frozen. Dashed on the gold "
        f"panel: the Gao et al. RL form d(α − β log d) fitted to the arm's gold gain over round 0 (all seeds pooled), drawn "
        f"over the observed d and only where R² ≥ {R2_ADEQUATE:g} ({len(fitted)} of {len(mean['variant'].unique())} arms)."
    )
    return FigureResult(key, title, cap, fig)


def gold_fit(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(sqrt KL grid, fitted gold) of one arm's rounds (columns seed, round, eval/sqrt_kl, eval/gold): the Gao RL form
    fitted to the gain over each seed's round 0, pooled, plus the arms' mean round-0 gold; None when R² < R2_ADEQUATE."""
    d = d.dropna(subset=["eval/sqrt_kl", "eval/gold"]).sort_values("round")
    if d.empty:
        return None
    g0 = d.groupby("seed")["eval/gold"].first()
    x, gain = d["eval/sqrt_kl"].to_numpy(float), (d["eval/gold"] - d["seed"].map(g0)).to_numpy(float)
    f = fit_gao(x, gain, form="rl")
    r2 = float(f.get("r2", np.nan))
    if not (np.isfinite(f.get("alpha", np.nan)) and np.isfinite(r2) and r2 >= R2_ADEQUATE and x.max() > 0):
        return None
    xs = np.linspace(max(float(x[x > 0].min()), 1e-6), float(x.max()), 100)
    return xs, float(g0.mean()) + gao_rl(xs, f["alpha"], f["beta"])


def fig_signal(study, pal, band="sd") -> FigureResult:
    """Advantage std before whitening, signal-to-noise, KL share of the reward and value explained variance per round."""
    key, title = "fig10_learning_signal", "Learning signal: advantage scale, signal-to-noise, KL share, value fit"
    drawn = round_panels(
        study,
        pal,
        band,
        [
            (c, lab, c)
            for c, lab in [
                ("adv/std_raw", "advantage std before whitening"),
                ("adv/snr", "signal-to-noise (sequence / token)"),
                ("adv/kl_share", "KL share of |reward| (0-1)"),
                ("val/var_explained", "value explained variance"),
            ]
        ],
        (4.3, 4.2),
        xlabel="round",
    )
    if drawn is None:
        return FigureResult(key, title, "", None, "no adv/* or val/* metrics logged")
    fig, axes, _ = drawn
    legend_once(fig, axes)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (
        f"Per PPO rollout batch, averaged over the round's iterations; mean over seeds ({band_text(band)}). A rising KL "
        "share with a shrinking advantage std means the KL anchor, not the score, drives PPO."
    )
    return FigureResult(key, title, cap, fig)


BUILDERS = [fig_best_of_n, fig_proxy_gold_kl, fig_signal]


# ----------------------------------------------------------------------------- tables


def _ms(vals, spec="{:.3f}") -> str:
    """'mean ± sd (n)' over finite values; '–' when none."""
    v = np.array([x for x in vals if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return spec.format(v[0]) + " (n=1)"
    return f"{spec.format(v.mean())} ± {spec.replace('+', '').format(v.std(ddof=1))} (n={v.size})"


def _per_seed(runs, key) -> str:
    return ", ".join("–" if (r.summary or {}).get(key) is None else f"{(r.summary or {})[key]}" for r in runs)


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _runs(study, v):
    return sorted([r for r in study.runs if r.variant == v and r.summary], key=lambda r: (r.seed is None, r.seed))


def _peak_text(fit: dict, d_range: tuple[float, float] | None) -> str:
    """The fitted peak only where the data reach it; otherwise say where it is relative to the data."""
    peak = _num(fit.get("d_peak"))
    if not np.isfinite(_num(fit.get("beta"))) or d_range is None:
        return "–"
    if _num(fit.get("beta")) <= 0 or not np.isfinite(peak):
        return "no peak (β ≤ 0)"
    if peak > d_range[1]:
        return f"beyond data (> {d_range[1]:.2f})"
    return f"{peak:.2f}"


def overopt_section(study) -> Section:
    """Gao RL fit per variant: pooled over seeds (all rounds' points) and per seed (mean ± sd)."""
    m = study.metrics
    rows = []
    for v in study.variants:
        runs = _runs(study, v)
        if not runs:
            continue
        pooled = {"alpha": np.nan, "beta": np.nan, "r2": np.nan, "d_peak": np.nan, "n": 0}
        if not m.empty and has(m, "eval/gold"):
            d = m[m["variant"] == v].copy()
            d["g"] = pd.to_numeric(d["eval/gold"], errors="coerce")
            base = d.sort_values("round").groupby("run")["g"].first()
            d["gain"] = d["g"] - d["run"].map(base)
            x = pd.to_numeric(d["eval/sqrt_kl"], errors="coerce")
            pooled = fit_gao(x.to_numpy(), d["gain"].to_numpy(), form="rl")
            d_range = (float(x.min()), float(x.max())) if x.notna().any() else None
        else:
            d_range = None
        s = [r.summary for r in runs]
        rows.append(
            [
                v,
                f"{pooled['alpha']:.3f}",
                f"{pooled['beta']:.3f}",
                f"{pooled['r2']:.2f}",
                _peak_text(pooled, d_range),
                str(pooled["n"]),
                _ms([_num(x.get("gao_rl_gold_alpha")) for x in s]),
                _ms([_num(x.get("gao_rl_gold_beta")) for x in s]),
                _ms([_num(x.get("gao_rl_gold_r2")) for x in s], "{:.2f}"),
                _ms([_num(x.get("gold_drop_after_peak")) for x in s]),
                _ms([_num(x.get("proxy_change_after_gold_peak")) for x in s]),
                _ms([_num(x.get("gao_bon_gold_beta")) for x in s]),
            ]
        )
    header = [
        "variant",
        "α (pooled)",
        "β (pooled)",
        "R² (pooled)",
        "d at peak (pooled)",
        "points",
        "α per seed",
        "β per seed",
        "R² per seed",
        "gold final − peak",
        "proxy change after gold peak",
        "best-of-n β (last round)",
    ]
    note = (
        "RL form R(d) = d(α − β log d) fitted by least squares (no intercept) to gold minus round-0 gold against d = "
        "sqrt(eval/kl); pooled = all seeds' rounds in one fit, per seed = mean ± sd of the seeds' own fits (summary.json). "
        "β > 0 with a finite peak inside the range of d means gold turns down; β ≤ 0 means no turn-over was seen. "
        "'proxy change after gold peak' > 0 while 'gold final − peak' < 0 is the proxy rising as gold falls."
    )
    return Section("Over-optimisation fits (Gao et al.)", header, rows, note)


def gao_shape_section(study) -> Section:
    """Share of seeds per shape of their own Gao fit (summary.json gao_rl_shape; overopt.gao_shape / gao_shares)."""
    rows = []
    for v in study.variants:
        runs = _runs(study, v)
        if not runs:
            continue
        shapes = [str(r.summary.get("gao_rl_shape") or "unfit") for r in runs]
        sh = gao_shares([s if s in GAO_SHAPES else "unfit" for s in shapes])
        share = [
            ("–" if not np.isfinite(sh[f"share_{k}"]) else f"{sh[f'share_{k}']:.0%} ({shapes.count(k)})")
            for k in GAO_SHAPES[:3]
        ]
        rows.append([v, *share, f"{shapes.count('unfit')}", f"{sh['n_fits']}/{len(runs)}"])
    header = ["variant", "rise then fall", "rising only", "falling from the start", "no fit (seeds)", "seeds fitted"]
    note = (
        "Each seed's own Gao RL fit (summary.json gao_rl_shape) read over that seed's observed d: 'rise then fall' = the "
        "fitted peak lies inside the data (the over-optimisation the form describes), 'rising only' = α > 0 without a peak "
        "in range, 'falling from the start' = α ≤ 0. Shares over the fitted seeds (count in brackets); no fit = too few "
        "points. The form describes a study only where most seeds rise then fall; read the pooled fit above with these."
    )
    return Section("Gao fit shape per seed", header, rows, note)


def stagnation_section(study) -> Section:
    rows = []
    for v in study.variants:
        runs = _runs(study, v)
        if not runs:
            continue
        s = [r.summary for r in runs]
        rows.append(
            [
                v,
                _per_seed(runs, "gold_peak_round"),
                _per_seed(runs, "stagnation_round"),
                _per_seed(runs, "stagnation_first_flat_round"),
                _ms([_num(x.get("mean/adv/gold_corr")) for x in s]),
                _ms([_num(x.get("mean/adv/sign_agree")) for x in s]),
                _ms([_num(x.get("mean/adv/kl_share")) for x in s]),
                _ms([_num(x.get("gold_gain")) for x in s]),
            ]
        )
    header = [
        "variant",
        "peak round per seed",
        "stagnation round per seed",
        "first flat window per seed",
        "adv/gold_corr (mean over rounds)",
        "adv/sign_agree",
        "adv/kl_share",
        "gold gain (final − SFT)",
    ]
    note = (
        "Seeds in order 0, 1, 2, ...; '–' = none (gold still rising at the end, or the policy not moving). Stagnation: the first "
        "3-round window whose gold-slope 95% interval (from eval/gold_se) covers 0 while the policy moves (KL between consecutive "
        "policies > 1e-3) after which no window rises again (falling gold is over-optimisation, not stagnation); 0 = gold never rose for good above the SFT policy. Fidelity columns: mean ± sd over seeds "
        "of each run's mean over its trained rounds."
    )
    return Section("Peak, stagnation and advantage fidelity", header, rows, note)


PROPAGATION_SHOWN = [
    ("collapse/probe_shape_rel", "adv/gold_corr", 0),
    ("collapse/saturation", "adv/gold_corr", 0),
    ("rm/pairwise_acc", "adv/gold_corr", 0),
    ("collapse/probe_shape_rel", "eval/gold_delta", 0),
    ("collapse/probe_shape_rel", "eval/gold_delta", 1),
    ("collapse/saturation", "eval/gold_delta", 1),
    ("rm/pairwise_acc", "eval/gold_delta", 0),
]


def propagation_section(study) -> Section:
    rows, all_n = [], []
    for x, y, lag in PROPAGATION_SHOWN:
        key = f"corr/{x}->{y}@lag{lag}"
        row, defined = [f"{x} (r) → {y} (r+{lag})"], False
        for v in study.variants:
            vals = [(r.summary.get("propagation") or {}).get(key) for r in _runs(study, v)]
            vals = [p for p in vals if p]
            ns = [int(p.get("n", 0)) for p in vals]
            all_n += ns
            values = [_num(p.get("value")) for p in vals]
            defined = defined or bool(np.isfinite(np.asarray(values, dtype=float)).any())
            row.append(_ms(values, "{:+.2f}") + (f"; rounds per run {min(ns)}-{max(ns)}" if ns else ""))
        if (
            defined
        ):  # a pair no run could correlate (e.g. saturation of a bounded model that never saturates) is left out
            rows.append(row)
    n_lo, n_hi = (min(all_n), max(all_n)) if all_n else (0, 0)
    band = f"about ±{1.96 / np.sqrt(n_lo - 1):.2f}" if n_lo > 2 else "undefined"
    note = (
        "Per run, the Pearson correlation over its trained rounds of x at round r with y at round r + lag (summary.json "
        "'propagation'); mean ± sd over seeds, n = runs with a defined value, and how many rounds stand behind each run's "
        "value. eval/gold_delta at r is gold(r) − gold(r−1), the change made by round r's policy update on round r's reward "
        f"model. With {n_lo}-{n_hi} rounds a run, a single run's correlation has a null 95% band of {band} (at {n_lo}); read the sign consistency "
        "over seeds. Pairs with no defined value in any run are not shown."
    )
    return Section(
        "Propagation: reward-model state → advantage fidelity → gold change", ["x → y", *study.variants], rows, note
    )
