"""Captions mention only what the study has: prompt-aware utilities, utilities compared, early stopping, ensembles,
stagnation and the panels actually drawn."""

import numpy as np

from rlhfsim.report.fig_mitigation import fig_mitigation
from rlhfsim.report.figures import fig_by_type, fig_collapse, fig_gold_proxy, palette
from rlhfsim.report.select import config_values
from rlhfsim.report.study import Study
from tests.fixtures.memory import mem_run, mem_study


def _study(reward_by_variant: dict, metrics_extra=None) -> Study:
    runs = []
    for v, reward in reward_by_variant.items():
        for s in (0, 1):
            rows = [
                {
                    "round": r,
                    "eval/gold": 0.4 + 0.01 * r,
                    "eval/kl": 0.1 * r,
                    "eval/gold_open": 0.5,
                    **(
                        {"eval/proxy": 0.2 * r, "rm/pairwise_acc": 0.7, "rm/epochs": 3.0, "rm/heldout_loss": 0.6}
                        if r
                        else {}
                    ),
                    **(metrics_extra or {}),
                }
                for r in range(4)
            ]
            runs.append(
                mem_run(
                    v,
                    s,
                    rows,
                    "e",
                    config={"reward": reward},
                    summary={"gold_peak_round": 3, "gold_peak": 0.43, "stagnation_round": None},
                )
            )
    return mem_study(runs, "e", variants=list(reward_by_variant))


PLAIN = {
    "a": {"utility": "bt", "prompt_aware": False, "early_stop": {"mode": "none"}, "ensemble_size": 1},
    "b": {"utility": "bt", "prompt_aware": False, "early_stop": {"mode": "none"}, "ensemble_size": 1},
}


def test_config_values_reads_dotted_keys():
    st = _study(PLAIN)
    assert config_values(st, "reward.utility") == {"bt"} and config_values(st, "reward.early_stop.mode") == {"none"}
    assert config_values(st, "reward.missing") == {"None"}


def test_plain_study_captions_say_nothing_it_does_not_have():
    st = _study(PLAIN)
    pal = palette(st.variants, "a")
    caps = {f.__name__: f(st, pal, "ci").caption for f in (fig_gold_proxy, fig_by_type, fig_collapse, fig_mitigation)}
    assert "utilities" not in caps["fig_gold_proxy"] and "triangles" not in caps["fig_gold_proxy"]
    assert "no seed stagnated" in caps["fig_gold_proxy"]
    assert "closed accuracy" not in caps["fig_by_type"]  # no closed-prompt panels were drawn
    assert "W2" not in caps["fig_collapse"] and "Pairwise accuracy" in caps["fig_collapse"]
    assert "early stopping" not in caps["fig_mitigation"] and "member" not in caps["fig_mitigation"]


def test_study_with_the_settings_gets_their_sentences():
    st = _study(
        {
            "a": {"utility": "bt", "early_stop": {"mode": "heldout"}, "ensemble_size": 1},
            "b": {"utility": "log", "early_stop": {"mode": "heldout"}, "ensemble_size": 3},
        },
        {"rm/ens_std": 0.1, "eval/accuracy_closed": 0.3, "eval/proxy_closed": 0.2},
    )
    pal = palette(st.variants, "a")
    assert "not comparable across utilities" in fig_gold_proxy(st, pal, "ci").caption
    cap = fig_mitigation(st, pal, "ci").caption
    assert "fewer when early stopping fired" in cap and "absent for one member" in cap
    assert "cross-task exploit" in fig_by_type(st, pal, "ci").caption
    assert np.isfinite(len(cap))


def test_reward_training_title_names_only_what_was_logged():
    st = _study(PLAIN)
    assert (
        fig_mitigation(st, palette(st.variants, "a"), "ci").title == "Reward-model training: held-out loss and epochs"
    )
