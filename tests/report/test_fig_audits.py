"""fig11_audits: titled panels, readable labels, the configs' alarm thresholds, bands inside each metric's range."""

import numpy as np

from rlhfsim.report.fig_audits import fig_audits
from rlhfsim.report.figures import palette
from tests.fixtures.memory import mem_run, mem_study

ALARMS = ("collapse", "saturation", "explosion", "exploit", "shift")


def _run(variant, seed, exploit, alarms, threshold=0.42):
    rows = []
    for r in range(5):
        row = {"round": r, "eval/gold": 0.4 + 0.01 * r}
        if r > 0:
            row.update(
                {
                    "audit/exploit_rate_max": exploit[seed],
                    "rm/shift_operands_pairwise_acc": 0.97 + 0.015 * seed,
                    "audit/alarms": alarms[seed],
                    **{f"audit/alarm_{a}": 0.0 for a in ALARMS},
                }
            )
        rows.append(row)
    cfg = {"audit": {"exploit_threshold": threshold, "shift_acc_threshold": 0.6}}
    return mem_run(variant, seed, rows, "audits", config=cfg)


def _study(variants, band_seeds=3, factors=None):
    exploit, alarms = [0.99, 1.0, 0.8], [0.0, 0.0, 3.0]  # near the top of [0, 1]; counts near 0
    runs = [_run(v, s, exploit, alarms) for v in variants for s in range(band_seeds)]
    return mem_study(runs, "audits", variants=variants, factors=factors or {})


def _bands(ax):
    from matplotlib.collections import PolyCollection

    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_panels_titles_thresholds_and_bands_in_range():
    st = _study(["base", "fix"])
    res = fig_audits(st, palette(st.variants, "base"), band="sd")
    axes = res.fig.axes
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == 4 and all(titles)
    assert not any("/" in ax.get_ylabel() or "_" in ax.get_ylabel() for ax in axes)  # no raw metric names
    by = dict(zip(titles, axes))
    exploit = next(ax for t, ax in by.items() if "exploit" in t)
    shift = next(ax for t, ax in by.items() if "shifted" in t)
    count = next(ax for t, ax in by.items() if "alarms" in t)
    hlines = lambda ax: [ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--"]  # noqa: E731
    assert hlines(exploit) == [0.42] and hlines(shift) == [0.6] and hlines(count) == []
    assert "audit.exploit_threshold = 0.42" in res.caption
    for ax, (lo, hi) in ((exploit, (0, 1)), (shift, (0, 1)), (count, (0, 5))):
        ys = np.concatenate([p.get_paths()[0].vertices[:, 1] for p in _bands(ax)])
        assert ys.min() >= lo and ys.max() <= hi
    # one thin line per seed per variant beneath the two means
    thin = [ln for ln in exploit.lines if ln.get_linewidth() < 1]
    assert len(thin) == 6


def test_many_variants_are_faceted_with_legends_outside():
    variants = ["base"] + [f"v{i}" for i in range(8)]
    st = _study(variants, band_seeds=2)
    res = fig_audits(st, palette(variants, "base"))
    rows = len(res.fig.axes) // 4
    assert rows == 2
    for ax in res.fig.axes:
        assert len({ln.get_color() for ln in ax.lines if ln.get_linewidth() > 1.5}) <= 6  # baseline + at most 5
        leg = ax.get_legend()
        if leg is not None:
            assert leg.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # right of the panel, not on it
    w, h = res.fig.get_size_inches()
    assert h * 100 <= 1600


def test_no_audits_is_left_out():
    st = mem_study([mem_run("a", 0, [{"round": 0, "eval/gold": 0.3}], "e")], "e")
    res = fig_audits(st, palette(["a"]))
    assert res.fig is None and "audit" in res.skipped


def test_audits_off_draw_no_alarm_panel_and_no_alarm_rows():
    """issue 30: a study that ran with audit.enabled: false logs alarm columns, but they are not audits."""
    from rlhfsim.report.audit import run_warnings

    st = _study(["base", "fix"])
    for r in st.runs:
        r.config["audit"]["enabled"] = False
    res = fig_audits(st, palette(st.variants, "base"))
    assert res.fig is None and "audits are off" in res.skipped
    assert run_warnings(st).empty
    for r in st.runs:  # one variant audited: only its curves are drawn
        r.config["audit"]["enabled"] = r.variant == "fix"
    res = fig_audits(st, palette(st.variants, "base"), band="sd")
    count = next(ax for ax in res.fig.axes if "alarms" in ax.get_title())
    thin = [ln for ln in count.lines if ln.get_linewidth() < 1 and np.isfinite(ln.get_ydata()).any()]
    assert len(thin) == 3  # the audited variant's three seeds
    assert set(run_warnings(st)["variant"]) == {"fix"}
