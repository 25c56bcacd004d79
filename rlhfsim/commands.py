"""Subcommands defined beside their implementation; each entry adds its parser to `rlhfsim`.

Modules listed here must keep heavy imports (seaborn, trl, datasets) inside their command functions.
"""

REGISTERS: list = []
