"""Subcommands defined beside their implementation; each entry adds its parser to `rlhfsim`.

Modules listed here must keep heavy imports (seaborn, trl, datasets) inside their command functions.
"""

from rlhfsim.bench.cli import register as _register_bench
from rlhfsim.real.cli import register as _register_real
from rlhfsim.report.cli import register as _register_report
from rlhfsim.sweep import register as _register_sweep

REGISTERS: list = [_register_sweep, _register_report, _register_bench, _register_real]
