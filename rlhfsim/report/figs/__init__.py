"""Plug-in report figures: one module per figure, named by the figure's id, declaring `FIGURE = Figure(...)`
(rlhfsim/report/registry.py). The registry finds them by name; an experiment's `headline` may name them (the
experiment loader reads the file names here, experiment/ids.py figure_ids). docs/architecture.md, "Adding a figure",
walks through rm_accuracy.py."""
