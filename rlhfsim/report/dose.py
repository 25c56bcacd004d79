"""Dose-response studies: the design (which factor is the dose, which arms are on it, which are controls), the
per-seed slopes of each endpoint on the dose per group (e.g. optimiser), and the Answer box built from them.

    d = design(study)                    # None unless the experiment names a dose factor
    tab = slope_table(study, d)          # one row per (endpoint, group): per-seed slope t test, Holm over the table
    box = dose_answer(study, d, tab)     # verdict lines, method note, slope table for the Answer box

A factor is the dose when the experiment's `factors` calls it `dose` or maps it to a known dose key
(surgery.dial). Arms are the variants whose experiment overrides set the dose key; the other variants (e.g.
online_dpo, gold) are controls: drawn as references, never in a slope. Only complete seeds (every variant of the
study finished for that seed) enter, so every seed contributes the same arms.

The primary test is the OLS slope per unit dose, or the experiment's declared contrast (primary.contrast: weights per
dose). With doses {0, 0.5, 1} the slope is y(1) - y(0), so the Answer adds the per-seed curvature (the x^2 coefficient,
which the middle arms carry) as an exploratory line. With a declared margin the verdict is a TOST (equivalent within
+-m, or inconclusive); without one it says "no dose-response detected" and gives the interval, with the MDE as a
statement of power only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from rlhfsim.diagnostics.dose_response import (
    minimal_detectable_effect,
    per_seed_contrast,
    per_seed_curvature,
    per_seed_slopes,
    slope_test,
)
from rlhfsim.experiment.design import DOSE_FACTOR, DOSE_KEYS, sets_key  # noqa: F401 (DOSE_*: re-exported)
from rlhfsim.report.stats import MIN_P_SEEDS, SMALL_NOTE, holm, holm_alphas, tost

# the dose-response endpoints beside the primary: advantage fidelity (collapse -> advantage link)
FIDELITY = ("mean/adv/gold_corr", "mean/adv/sign_agree")
# per-round collapse of the reward the optimiser saw (after surgery: collapse/shape_rel of the surgered rewards), if a
# run logs it; the report takes its mean over the trained rounds as `mean/<name>`. The loop does not log it yet.
PROXY_COLLAPSE = ("surgery/shape_rel",)
ALPHA, POWER = 0.05, 0.8


@dataclass
class DoseDesign:
    dose: str  # factor name, e.g. dial
    key: str  # config key, e.g. surgery.dial
    group: str | None  # the other factor(s), e.g. optimizer, or "source x optimizer"; None without one
    arms: dict[str, tuple[str, float]] = field(default_factory=dict)  # variant -> (group value, dose)
    controls: list[str] = field(default_factory=list)
    levels: dict[str, dict[str, str]] = field(default_factory=dict)  # group value -> {factor: level}

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(g for g, _ in self.arms.values()))

    @property
    def doses(self) -> list[float]:
        return sorted({x for _, x in self.arms.values()})

    def groups_where(self, where: dict | None) -> list[str]:
        """The groups at the given factor levels ({source: gold}); all groups without a restriction."""
        if not where:
            return self.groups
        return [g for g in self.groups if all(self.levels.get(g, {}).get(k) == str(v) for k, v in where.items())]


def _config_value(study, variant: str, key):
    from rlhfsim.report.select import factor_value

    return factor_value(study, variant, key)


def design(study) -> DoseDesign | None:
    """The dose factor's arms grouped by every other factor (a group per combination of their levels, so e.g. sources
    are never pooled), or None without a dose factor or with fewer than 2 doses."""
    factors = dict(getattr(study, "factors", {}) or {})
    dose = next(
        ((n, k) for n, k in factors.items() if isinstance(k, str) and (n == DOSE_FACTOR or k in DOSE_KEYS)), None
    )
    if dose is None:
        return None
    others = [(n, k) for n, k in factors.items() if n != dose[0]]
    d = DoseDesign(dose[0], dose[1], " x ".join(n for n, _ in others) or None)
    for v in study.variants:
        ov = study.variant_overrides.get(v)
        x = _config_value(study, v, dose[1])
        on = sets_key(ov, dose[1]) if ov is not None else x is not None
        if on and isinstance(x, (int, float)) and not isinstance(x, bool):
            lv = {n: str(_config_value(study, v, k)) for n, k in others}
            g = " / ".join(lv.values()) if others else "all"
            d.arms[v] = (g, float(x))
            d.levels[g] = lv
        else:
            d.controls.append(v)
    return d if len(d.doses) >= 2 else None


def complete_seeds(study) -> list[int]:
    """Seeds for which every variant of the study has a finished run."""
    s = study.summary
    if s.empty:
        return []
    done = s[s["status"] == "finished"]
    have = done.groupby("seed")["variant"].agg(set)
    return sorted(int(sd) for sd, vs in have.items() if set(study.variants) <= vs)


def dose_frame(study, d: DoseDesign) -> pd.DataFrame:
    """One row per finished run of a complete seed: variant, seed, group, dose (NaN for controls), control, summary."""
    s = study.summary
    seeds = complete_seeds(study)
    s = s[(s["status"] == "finished") & s["seed"].isin(seeds)].copy()
    s["group"] = [d.arms[v][0] if v in d.arms else None for v in s["variant"]]
    s["dose"] = [d.arms[v][1] if v in d.arms else np.nan for v in s["variant"]]
    s["control"] = ~s["variant"].isin(list(d.arms))
    m = study.metrics
    for k in (k for k in PROXY_COLLAPSE if k in m):
        trained = m[m["round"] > 0].assign(v=lambda t: pd.to_numeric(t[k], errors="coerce"))  # noqa: B023 - called within this iteration
        s = s.merge(trained.groupby("run")["v"].mean().rename(f"mean/{k}"), left_on="run", right_index=True, how="left")
    return s


def seed_slopes(frame: pd.DataFrame, endpoint: str, group: str, how="slope") -> pd.Series:
    """Per-seed OLS slope of `endpoint` on the dose within one group (index = seed); how="curvature": the x^2
    coefficient of the seed's quadratic (NaN with fewer than 3 doses); a dict {dose: weight}: that contrast."""
    sub = frame[(frame["group"] == group) & ~frame["control"]]
    if endpoint not in sub:
        return pd.Series(dtype=float)
    wide = sub.assign(y=pd.to_numeric(sub[endpoint], errors="coerce")).pivot_table(
        index="seed", columns="dose", values="y", aggfunc="mean"
    )
    x, y = wide.columns.to_numpy(float), wide.to_numpy()  # [D], [S seeds, D doses]
    if isinstance(how, dict):
        w = np.array([float(how.get(d, 0.0)) for d in x])  # a declared dose no arm has: that seed has no value
        vals = per_seed_contrast(y, w) if set(map(float, how)) <= set(x.tolist()) else np.full(len(y), np.nan)
    elif how == "curvature":
        vals = per_seed_curvature(x, y) if x.size >= 3 else np.full(len(y), np.nan)
    else:
        vals = per_seed_slopes(x, y)
    return pd.Series(vals, index=wide.index)


def _test(b: pd.Series) -> dict:
    b = b.dropna()
    if len(b) < 2:
        return {
            "n": int(len(b)),
            "mean": float(b.mean()) if len(b) else np.nan,
            "sd": np.nan,
            "t": np.nan,
            "p": np.nan,
            "ci_t": (np.nan, np.nan),
            "ci_boot": (np.nan, np.nan),
        }
    return slope_test(b.to_numpy(), alpha=ALPHA)


SLOPE_COLUMNS = [
    "endpoint",
    "group",
    "n",
    "slope",
    "sd",
    "t",
    "p",
    "lo_t",
    "hi_t",
    "lo_boot",
    "hi_boot",
    "p_holm",
    "lo_adj",
    "hi_adj",
    "level_adj",
]


def slope_table(study, d: DoseDesign, primary: str = "gold_gain") -> pd.DataFrame:
    """Per (endpoint, group): the mean per-seed slope with its t test and intervals; Holm over every row."""
    frame = dose_frame(study, d)
    rows = []
    for ep in (primary, *FIDELITY):
        for g in d.groups:
            r = _test(seed_slopes(frame, ep, g))
            rows.append(
                {
                    "endpoint": ep,
                    "group": g,
                    "n": r["n"],
                    "slope": r["mean"],
                    "sd": r["sd"],
                    "t": r["t"],
                    "p": r["p"],
                    "lo_t": r["ci_t"][0],
                    "hi_t": r["ci_t"][1],
                    "lo_boot": r["ci_boot"][0],
                    "hi_boot": r["ci_boot"][1],
                }
            )
    tab = pd.DataFrame(rows, columns=SLOPE_COLUMNS[: SLOPE_COLUMNS.index("p_holm")])
    tab["p_holm"] = holm(tab["p"].to_numpy(float))
    # the interval printed beside a Holm p is at that row's Holm step level (one correction for both)
    tab["level_adj"] = 1 - holm_alphas(tab["p"].to_numpy(float), ALPHA)
    tab["lo_adj"], tab["hi_adj"] = tab["lo_t"], tab["hi_t"]
    for i, r in tab.iterrows():
        if np.isfinite(r["level_adj"]) and r["n"] >= 2 and r["sd"] > 0:
            half = float(stats.t.ppf(0.5 + r["level_adj"] / 2, r["n"] - 1)) * r["sd"] / np.sqrt(r["n"])
            tab.loc[i, ["lo_adj", "hi_adj"]] = r["slope"] - half, r["slope"] + half
    return tab[SLOPE_COLUMNS]


def primary_slopes(study, d: DoseDesign, endpoint: str, how="slope", where: dict | None = None) -> pd.Series:
    """A seed's primary slope (or curvature, or declared contrast: `how` as in seed_slopes): the mean over its groups,
    those at the `where` levels only when given (seeds missing a group's value are dropped)."""
    frame = dose_frame(study, d)
    per = pd.DataFrame({g: seed_slopes(frame, endpoint, g, how) for g in d.groups_where(where)})
    return per.mean(axis=1, skipna=False).dropna() if not per.empty else pd.Series(dtype=float)


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.{digits}f}"


def dose_verdict(
    endpoint: str,
    dose: str,
    res: dict,
    mde: float | None,
    margin: float | None = None,
    eq: dict | None = None,
    what: str = "slope",
) -> str:
    """The one-sentence answer from the primary test (t interval), with the TOST `eq` where a margin was declared and
    the MDE as a statement of power (never an equivalence test: "inside +-MDE" is not one)."""
    lo, hi = res["ci_t"]
    n = res["n"]
    unit = "per unit" if what == "slope" else "(contrast)"
    est = (
        f"{what} of {endpoint} on {dose} {_f(res['mean'])} {unit} (95% t interval [{_f(lo)}, {_f(hi)}], "
        f"bootstrap [{_f(res['ci_boot'][0])}, {_f(res['ci_boot'][1])}], "
        + (f"{n} seeds; {SMALL_NOTE})" if n < MIN_P_SEEDS else f"p = {res['p']:.2g}, {n} seeds)")
    )
    power = (
        f"MDE {mde:.3f} at power {POWER:.0%}, alpha {ALPHA}, from this study's per-seed SD (power, not equivalence)"
        if mde is not None
        else f"no MDE: the power of the t test is not computable from {n} seeds' values"
    )
    if lo > 0 or hi < 0:
        return f"Dose-response detected: {endpoint} {'falls' if hi < 0 else 'rises'} as {dose} rises; {est}; {power}."
    if margin is not None and eq is not None:
        tint = (
            f"TOST p = {eq['p']:.2g}, " if n >= MIN_P_SEEDS else "TOST "
        ) + f"{eq['level']:.0%} interval [{_f(eq['lo'])}, {_f(eq['hi'])}]"
        if eq["equivalent"]:
            return f"Equivalent within ±{margin:g} (margin declared before the run): {tint}; {est}; {power}."
        return (
            f"Inconclusive: no dose-response detected and equivalence within ±{margin:g} not shown ({tint}); {est}; "
            f"{power}."
        )
    return (
        f"No dose-response detected ({'inconclusive: ' if mde is None else ''}no equivalence margin was declared, so this is "
        f"not evidence of no effect); {est}; {power}."
    )


def dose_answer(study, d: DoseDesign, tab: pd.DataFrame, endpoint: str | dict = "gold_gain") -> dict:
    """{verdicts, what, header, rows, n_seeds} for the Answer box of a dose-response study. `endpoint`: the primary's
    name, or the experiment's primary dict (endpoint, margin, contrast)."""
    spec = endpoint if isinstance(endpoint, dict) else {"endpoint": endpoint}
    endpoint, margin, contrast, where = spec["endpoint"], spec.get("margin"), spec.get("contrast"), spec.get("where")
    how = {float(k): float(v) for k, v in contrast.items()} if contrast else "slope"
    seeds = complete_seeds(study)
    b = primary_slopes(study, d, endpoint, how, where)
    chosen = d.groups_where(where)
    groups = ", ".join(chosen) + (
        f" (restricted to {', '.join(f'{k} = {v}' for k, v in where.items())})" if where else ""
    )
    test = (
        f"the declared contrast ({', '.join(f'{w:+g} x dose {x:g}' for x, w in how.items())})"
        if contrast
        else "the OLS slope"
    )
    what = (
        f"Primary: per complete seed, {test} of {endpoint} on {d.dose} ({d.key}: {', '.join(f'{x:g}' for x in d.doses)}) per "
        f"{d.group or 'arm set'} ({groups}); a seed's slope is the mean over its {len(chosen)} group(s); two-sided one-sample t test "
        f"across seeds with t and seed-bootstrap 95% intervals"
        + (f"; equivalence: TOST at ±{margin:g} (declared margin)" if margin else "; no equivalence margin declared")
        + f"; MDE: noncentral t, power {POWER:.0%}, alpha {ALPHA}, this study's SD. "
        f"Seeds entered: {len(seeds)} complete seed(s) of {len(study.expected_seeds or seeds)} (every variant finished: "
        f"{', '.join(map(str, seeds)) or 'none'}). Controls ({', '.join(d.controls) or 'none'}) are in no slope. Per-group p-values "
        f"in brackets are Holm-adjusted over every slope of the table (gold gain and advantage fidelity x {d.group or 'group'})."
    )
    if len(b) < 2:
        lines = [
            f"No test yet: {len(b)} complete seed(s) with a slope of {endpoint} on {d.dose}; at least 2 are needed"
            + (f" (seed slope {_f(float(b.iloc[0]))})" if len(b) == 1 else "")
            + "."
        ]
    else:
        res = slope_test(b.to_numpy(), alpha=ALPHA)
        mde = _mde(res["n"], res["sd"])
        eq = tost(b.to_numpy(), float(margin), ALPHA) if margin else None
        lines = [dose_verdict(endpoint, d.dose, res, mde, margin, eq, "contrast" if contrast else "slope")]
        declared = len(study.expected_seeds or seeds)
        if (
            len(seeds) < declared
        ):  # the pre-declared analysis needs every seed: an interim look never calls a clean null
            lines = [
                f"Interim, {len(seeds)} of {declared} declared seeds complete (not the pre-declared analysis, never an "
                f"equivalence call): " + lines[0].replace("Equivalent within", "not yet equivalent (interim) within")
            ]
        lines += _curvature_line(study, d, endpoint, where)
    eps = list(dict.fromkeys(tab["endpoint"]))
    header = [d.group or "group"] + [f"slope of {ep} per unit {d.dose} [Holm-step t interval], p (Holm)" for ep in eps]
    cell = tab.set_index(["group", "endpoint"])
    rows = [[g] + [_cell(cell.loc[(g, ep)]) for ep in eps] for g in d.groups]
    return {"verdicts": lines, "what": what, "header": header, "rows": rows, "n_seeds": len(seeds)}


def _curvature_line(study, d: DoseDesign, endpoint: str, where: dict | None = None) -> list[str]:
    """Exploratory: the mean per-seed curvature (x^2 coefficient) of the endpoint, which the middle doses carry."""
    if len(d.doses) < 3:
        return []
    c = primary_slopes(study, d, endpoint, "curvature", where)
    if len(c) < 2:
        return []
    r = slope_test(c.to_numpy(), alpha=ALPHA)
    return [
        f"Exploratory, not the primary test: curvature of {endpoint} in {d.dose} (x^2 coefficient per seed, mean over "
        f"{d.group or 'groups'}) {_f(r['mean'])} (95% t interval [{_f(r['ci_t'][0])}, {_f(r['ci_t'][1])}], p = {r['p']:.2g}, "
        f"{r['n']} seeds, uncorrected); it uses the middle doses, which the OLS slope over symmetric doses ignores."
    ]


def _cell(r: pd.Series) -> str:
    if not np.isfinite(r["slope"]):
        return "n/a"
    lo, hi = (r["lo_adj"], r["hi_adj"]) if np.isfinite(r.get("lo_adj", np.nan)) else (r["lo_t"], r["hi_t"])
    ci = f" [{_f(lo)}, {_f(hi)}]" if np.isfinite(lo) else ""
    ps = f", p {_p(r['p'])} ({_p(r['p_holm'])})" if r["n"] >= MIN_P_SEEDS else ""  # fewer seeds: interval only
    return f"{_f(r['slope'])}{ci}{ps}, n={int(r['n'])}"


def _mde(n: int, sd: float) -> float | None:
    """The study's MDE, or None where the noncentral t has no stable answer (no spread, or very few seeds: df = 1)."""
    if not sd > 0:
        return None
    try:
        return minimal_detectable_effect(n, sd, ALPHA, POWER)
    except ValueError:
        return None


def _p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else f"{p:.2g}"


def dose_answer_into(study, ctx: dict, out, primary: str | dict) -> list:
    """A dose-response study: its slope test leads the Answer box (ctx["answer"]); the slopes go to dose_effects.csv."""
    d = design(study)
    if d is None:
        return []
    tab = slope_table(study, d, primary["endpoint"] if isinstance(primary, dict) else primary)
    tab.to_csv(out / "dose_effects.csv", index=False)
    box = dose_answer(study, d, tab, primary)
    ctx["answer"].update(verdicts=box["verdicts"], what=box["what"], table=(box["header"], box["rows"]))
    return [out / "dose_effects.csv"]
