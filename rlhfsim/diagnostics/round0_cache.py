"""Round 0's held-out samples (the probe set), cached per seed and shared by every arm that starts from the same SFT.

Every arm of a study's seed draws the same round-0 evaluation: the SFT policy's k samples of the held-out prompts on
the round-0 evaluation stream, gold-scored, with their KL to the reference (a 2,048-completion sampling and reference
pass, ~1 s a run; issue 34). That draw is a function of what the key holds: the reference weights (hashed), the prompts,
k, response length, temperature, the generator's seed, the world (gold), the tokenizer, the code (source hash) and the
numerics (device, threads, autocast: rlhfsim.models.policy.numerics_cache_key). An entry is the arrays (npz: dtypes and
bits kept) and the texts (json), written atomically next to the SFT cache; a miss draws and stores. Built-in policies
only (a checkpoint policy is not hashed here).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlhfsim.diagnostics.policy_eval import EvalSamples
from rlhfsim.models.policy import numerics_cache_key
from rlhfsim.version import source_hash

log = logging.getLogger(__name__)
ARRAYS = ("gold", "kl", "entropy", "length", "eos")


def cache_key(sim, generator_seed: int) -> str:
    weights = hashlib.sha256()
    for name, t in sorted(sim.ref.state_dict().items()):
        weights.update(name.encode() + str(t.dtype).encode() + t.detach().cpu().contiguous().numpy().tobytes())
    cfg, tok = sim.cfg, sim.world.tokenizer
    blob = {
        "ref": weights.hexdigest(),
        "prompts": [p.__dict__ for p in sim.eval_prompts],
        "k": cfg.loop.eval_completions,
        "response_len": cfg.policy.response_len,
        "temperature": cfg.policy.temperature,
        "generator": generator_seed,
        "world": cfg.world.model_dump(mode="json"),
        "vocab": tok.convert_ids_to_tokens(list(range(len(tok)))),
        "special": [tok.eos_token_id, tok.pad_token_id],
        "code": source_hash(),
        "v": 1,
    }
    return numerics_cache_key(blob, sim.device)


def cached(sim, draw: Callable[[], EvalSamples], generator_seed: int) -> EvalSamples:
    """The round-0 draw from the cache, else ``draw()`` (stored for the next arm)."""
    if sim.cfg.policy.checkpoint is not None or sim.device.type != "cpu":
        return draw()
    path = Path(sim.cfg.policy.cache_dir) / f"round0-{cache_key(sim, generator_seed)}"
    if (path / "texts.json").is_file():
        arrays = np.load(path / "arrays.npz")
        texts = json.loads((path / "texts.json").read_text())
        log.info("round-0 samples from cache %s", path)
        return EvalSamples(
            prompts=list(sim.eval_prompts),
            k=sim.cfg.loop.eval_completions,
            texts=texts,
            **{a: arrays[a] for a in ARRAYS},
        )
    ev = draw()
    _store(path, ev)
    return ev


def _store(path: Path, ev: EvalSamples) -> None:
    """A temporary folder renamed into place: readers see a whole entry or none; a concurrent writer's entry wins."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        np.savez(tmp / "arrays.npz", **{a: getattr(ev, a) for a in ARRAYS})
        (tmp / "texts.json").write_text(json.dumps(ev.texts))
        tmp.rename(path)
    except OSError:  # another run stored it first, or the cache is not writable: the run goes on either way
        shutil.rmtree(tmp, ignore_errors=True)
