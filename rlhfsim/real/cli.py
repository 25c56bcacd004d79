"""The `rlhfsim setup real` command (imports stay inside: `rlhfsim --help` must not pay for torch or sklearn)."""

from __future__ import annotations

from pathlib import Path

from rlhfsim.real.assets import CACHE_ENV, DEFAULT_CACHE, AssetMissing
from rlhfsim.real.setup import DEFAULT_MODELS, MODELS, setup_real
from rlhfsim.schema import ConfigError


def cmd_setup(args) -> int:
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    try:
        setup_real(models, Path(args.cache) if args.cache else None)
    except AssetMissing as e:
        raise ConfigError(str(e)) from None
    return 0


def register(sub) -> None:
    s = sub.add_parser("setup", help="prepare optional real assets once (rlhfsim setup real)")
    s.add_argument(
        "what", choices=["real"], help="real: convert the pretrained GGUF models and fit the IMDB gold classifier"
    )
    s.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, from {', '.join(MODELS)} (default: %(default)s)",
    )
    s.add_argument(
        "--cache",
        help=f"cache folder (default: ${CACHE_ENV}, else {DEFAULT_CACHE}); runs read ${CACHE_ENV}, so set it to the same folder",
    )
    s.set_defaults(func=cmd_setup)
