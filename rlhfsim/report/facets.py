"""Layout helpers for figures faceted into rows of variant groups (select.variant_groups): a legend per row,
outside the panels, and a height cap so no figure is taller than the page can show."""

from __future__ import annotations

MAX_HEIGHT_IN = 15.5  # inches at the report's 100 dpi: ~1550 px before the legend rows (limit ~1600 px)


def row_height(per_row: float, n_rows: int, max_height: float = MAX_HEIGHT_IN) -> float:
    """Height of one row of panels (inches), shrunk so n_rows of them fit in max_height."""
    return min(per_row, max_height / max(n_rows, 1))


def row_legends(grid, fontsize: float = 8.5, title: str | None = None) -> None:
    """One legend right of each row's last visible panel (the variants drawn in that row), none inside a panel."""
    for axes in grid:
        handles, labels = [], []
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels and not lab.startswith("_"):
                    handles.append(h)
                    labels.append(lab)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        shown = [ax for ax in axes if ax.get_visible()]
        if handles and shown:
            shown[-1].legend(
                handles,
                labels,
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                frameon=False,
                fontsize=fontsize,
                title=title,
                title_fontsize=fontsize,
            )


def top_margin(fig, one_row: float = 0.88) -> float:
    """Top of the tight_layout rect: room for a figure-wide legend above one row of panels; with several rows the
    legends sit beside each row, and only a line of extra markers (if any) goes on top."""
    rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes if ax.get_subplotspec() is not None}
    if len(rows) <= 1:
        return one_row
    return 1 - 0.5 / fig.get_size_inches()[1] if fig.legends else 1.0
