"""Figure 8 appears for studies that log ensemble or early-stopping metrics, and only for them."""

from rlhfsim.report.fig_mitigation import fig_mitigation
from rlhfsim.report.figures import palette
from rlhfsim.report.load import load_study
from tests.fixtures.studies import edit_metrics, make_study


def _add(root, cols):
    for f in root.glob("*/seed*/metrics.jsonl"):
        edit_metrics(f.parent, lambda r: r.update({k: v * r["round"] for k, v in cols.items()}), from_round=1)


def test_figure_only_with_mitigation_metrics(tmp_path):
    root = make_study(tmp_path)
    study = load_study([str(root)])
    res = fig_mitigation(study, palette(study.variants))
    assert res.fig is None and "no early stopping" in res.skipped
    _add(
        root, {"rm/epochs": 2.0, "rm/heldout_loss": 0.6, "rm/ens_std": 0.1, "rm/ens_err_corr": 0.1, "time/reward": 1.0}
    )
    study = load_study([str(root)])
    res = fig_mitigation(study, palette(study.variants))
    assert res.fig is not None and len(res.fig.axes) == 5 and res.key == "fig13_reward_training"
