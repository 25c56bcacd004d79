import math

import numpy as np
import pytest

from rlhfsim.diagnostics.overopt import bon_kl, gao_bon, gao_rl
from rlhfsim.diagnostics.summary import summarize


def _rows(R=10, alpha=0.3, beta=0.2):
    """Fake metrics rows: gold follows the Gao RL form in d = sqrt(KL), the proxy keeps rising."""
    rng = np.random.default_rng(0)
    rows = []
    for r in range(R + 1):
        kl = 0.5 * r * r  # d = sqrt(0.5) r
        d = math.sqrt(kl)
        row = {"round": r, "eval/gold": 0.4 + float(gao_rl(d, alpha, beta)), "eval/kl": kl}
        if r > 0:
            row.update(
                {
                    "eval/proxy": 0.1 * r,
                    "eval/policy_move": 0.1,
                    "collapse/probe_shape_rel": float(rng.uniform(0.1, 0.5)),
                    "collapse/saturation": float(rng.uniform(0, 1)),
                    "adv/gold_corr": float(rng.uniform(0, 1)),
                    "adv/sign_agree": float(rng.uniform(0.5, 1)),
                }
            )
        if r == R:  # best-of-n curve of the last round: the bon form exactly
            for n in (1, 2, 4, 8, 16):
                row[f"bon/gold_n{n}"] = 0.5 + float(gao_bon(np.sqrt(bon_kl(n)), 0.4, 0.3))
                row[f"bon/proxy_n{n}"] = 0.1 * n
        rows.append(row)
    return rows


def test_summary_gao_fits_peak_and_proxy():
    rows = _rows()
    s = summarize(rows, wall_time=1.0)
    assert s["gao_rl_gold_alpha"] == pytest.approx(0.3, abs=1e-9)
    assert s["gao_rl_gold_beta"] == pytest.approx(0.2, abs=1e-9)
    assert s["gao_rl_gold_r2"] == pytest.approx(1.0)
    assert s["gao_bon_gold_alpha"] == pytest.approx(0.4, abs=1e-9) and s["gao_bon_gold_beta"] == pytest.approx(
        0.3, abs=1e-9
    )
    gold = np.array([r["eval/gold"] for r in rows])
    assert s["gold_peak_round"] == int(np.argmax(gold)) and 0 < s["gold_peak_round"] < 10
    assert s["gold_drop_after_peak"] == pytest.approx(gold[-1] - gold.max()) and s["gold_drop_after_peak"] < 0
    assert s["proxy_change_after_gold_peak"] == pytest.approx(0.1 * (10 - s["gold_peak_round"]))
    # gold falls after its peak while the policy moves: stagnation from the last rising window on
    assert s["stagnation_round"] is not None and s["stagnation_round"] <= s["gold_peak_round"]
    assert s["mean/eval/policy_move"] == pytest.approx(0.1)


def test_summary_propagation_counts_rounds():
    s = summarize(_rows(), wall_time=1.0)
    p = s["propagation"]
    lag0, lag1 = (
        p["corr/collapse/probe_shape_rel->adv/gold_corr@lag0"],
        p["corr/collapse/probe_shape_rel->eval/gold_delta@lag1"],
    )
    assert lag0["n"] == 10 and lag1["n"] == 9  # 10 trained rounds; lag 1 loses the last one
    assert -1 <= lag0["value"] <= 1 and -1 <= lag1["value"] <= 1
    assert "corr/collapse/saturation->adv/sign_agree@lag0" in p


def test_summary_short_run():
    s = summarize(_rows(R=1), wall_time=1.0)
    assert s["rounds_completed"] == 1 and "gao_rl_gold_alpha" not in s  # 2 points: no fit
    # gold peaks in the last round: nothing after the peak to compare the proxy over
    assert s["stagnation_round"] is None and s["gold_peak_round"] == 1 and math.isnan(s["proxy_change_after_gold_peak"])
    assert summarize([], 0.0)["rounds_completed"] == 0


def test_gao_fit_uses_only_the_rounds_on_a_fixed_proxy():
    rows = _rows(alpha=0.3, beta=0.2)
    for r in rows[1:]:
        r["rm/loss"], r["rm/frozen"] = 0.5, int(r["round"] > 4)  # retrained in rounds 1..4, frozen from round 5
    for r in rows[1:4]:
        r["eval/gold"] += 0.3  # rounds 1..3 ran on other proxies: off the curve
    s = summarize(rows, wall_time=1.0)
    assert s["gao_rl_proxy_fixed"] is True and s["gao_rl_first_round"] == 4  # round 4 trained the kept model
    assert s["gao_rl_gold_alpha"] == pytest.approx(0.3, abs=1e-9) and s["gao_rl_gold_beta"] == pytest.approx(
        0.2, abs=1e-9
    )
    assert s["gao_rl_gold_n"] == 7
    # retrained every round: the fit is over a moving proxy and says so
    for r in rows[1:]:
        r["rm/frozen"] = 0
    moving = summarize(rows, wall_time=1.0)
    assert moving["gao_rl_proxy_fixed"] is False and moving["gao_rl_gold_n"] == 11
    assert moving["gao_rl_gold_alpha"] != pytest.approx(0.3, abs=1e-3)


def test_gao_shapes_and_shares():
    from rlhfsim.diagnostics.overopt import fit_gao, gao_shape, gao_shares

    d = np.linspace(0.1, 3, 12)
    assert gao_shape(fit_gao(d, gao_rl(d, 0.3, 0.2)), d.max()) == "rise_fall"  # peak exp(0.5) = 1.65 inside
    assert gao_shape(fit_gao(d, gao_rl(d, 0.3, 0.05)), d.max()) == "rising"  # peak exp(5) far outside
    assert gao_shape(fit_gao(d, -0.1 * d), d.max()) == "falling"
    assert gao_shape({"alpha": float("nan")}, 1.0) == "unfit"
    shares = gao_shares(["rise_fall", "rise_fall", "falling", "rising", "unfit"])
    assert shares == {"share_rise_fall": 0.5, "share_rising": 0.25, "share_falling": 0.25, "n_fits": 4}
    with pytest.raises(ValueError, match="valid"):
        gao_shares(["peaked"])


def test_gao_fit_falls_back_to_ppo_iterations_on_a_short_fixed_segment():
    rows = _rows(alpha=0.3, beta=0.2)
    for r in rows[1:]:
        r["rm/loss"], r["rm/frozen"] = 0.5, int(r["round"] > 8)  # frozen rounds 9, 10: 3 round points only
    steps = []
    for r in (8, 9, 10):  # 4 iterations per round, on the Gao curve in between the rounds' d
        for i in range(4):
            d = math.sqrt(0.5) * (r - 1 + (i + 1) / 4)
            steps.append(
                {"round": r, "iteration": i, "objective/kl": d * d, "objective/gold": 0.4 + float(gao_rl(d, 0.3, 0.2))}
            )
    s = summarize(rows, wall_time=1.0, steps=steps)
    assert s["gao_rl_points"] == "iterations" and s["gao_rl_proxy_fixed"] is True and s["gao_rl_gold_n"] == 12
    assert s["gao_rl_gold_alpha"] == pytest.approx(0.3, abs=1e-9) and s["gao_rl_first_round"] == 8
    # without the steps: all rounds, flagged as a moving proxy
    flagged = summarize(rows, wall_time=1.0)
    assert flagged["gao_rl_points"] == "rounds" and flagged["gao_rl_proxy_fixed"] is False
