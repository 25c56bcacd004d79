"""Command line: rlhfsim run | validate | theory (| sweep | report | bench as they land).

Exit codes: 0 ok, 2 bad input (config, files, arguments), 3 the run diverged, 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import sys

from rlhfsim.config import dump_config, load_config
from rlhfsim.config_docs import schema_markdown
from rlhfsim.run_cli import add_run_parser, console, dispatch  # noqa: F401 (console: the run's, tests redirect it)
from rlhfsim.schema import ConfigError


def cmd_validate(args) -> int:
    if args.schema:
        print(schema_markdown())
        return 0
    if args.config is None:
        raise ConfigError("rlhfsim validate: give a CONFIG file, or --schema for the reference")
    cfg = load_config(args.config, args.set)
    if args.print:
        print(dump_config(cfg), end="")
    else:
        print(f"{args.config}: ok")
    return 0


def cmd_theory(args) -> int:
    from rlhfsim.theory import theory_report  # numpy, scipy: only for `rlhfsim theory`

    params = {}
    for item in args.param or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. --param g=0.5")
        k, v = item.split("=", 1)
        try:
            params[k] = float(v)
        except ValueError:
            raise ConfigError(f"--param {item!r}: value must be a number") from None
    try:
        text = theory_report(args.utility, params, args.n, out_png=args.plot)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlhfsim", description="Simulate the RLHF loop and measure reward-model collapse.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    add_run_parser(sub)

    v = sub.add_parser("validate", help="check a config without running it")
    v.add_argument("config", nargs="?")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--print", action="store_true", help="print the resolved config")
    v.add_argument("--schema", action="store_true", help="print the config reference (docs/config.md)")
    v.set_defaults(func=cmd_validate)

    t = sub.add_parser("theory", help="finite-n optimal rewards for a utility, beside the limit law")
    t.add_argument("--utility", required=True, help="utility name (logsigmoid, linear, power, log, neg_power, inv)")
    t.add_argument("--param", action="append", metavar="NAME=VALUE", help="utility parameter, e.g. g=0.5")
    t.add_argument("--n", type=int, default=8, help="completions per prompt")
    t.add_argument("--plot", metavar="PNG", help="draw the optimum beside the limit law")
    t.set_defaults(func=cmd_theory)

    # subcommands that live beside their implementation: each module's register(sub) adds its parser
    for register in _extra_commands():
        register(sub)
    return p


def _extra_commands():
    """register(subparsers) functions of the sweep/report/bench modules (imports inside stay lazy)."""
    from rlhfsim import commands  # sweep, report, bench, setup: parsers built when main runs

    return commands.REGISTERS


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
