"""rlhfsim.diagnostics.round0_cache: a cached round-0 draw is the draw, bit for bit, and the key tells arms apart."""

from rlhfsim.config import load_config
from rlhfsim.diagnostics import round0_cache
from rlhfsim.loop import Simulation
from rlhfsim.tracking import RunDir


def sim_for(tmp_path, sft_cache, *overrides):
    cfg = load_config("configs/tiny.yaml", [f"policy.cache_dir={sft_cache}", *overrides])
    run = RunDir.for_config(cfg, tmp_path / "run")
    run.create(cfg, False)
    return Simulation(cfg, run)


def test_cached_draw_equals_a_fresh_draw(tmp_path, sft_cache):
    sim = sim_for(tmp_path, sft_cache)
    sim.cfg.policy.cache_dir = str(tmp_path / "cache")  # SFT is loaded: this test's own round-0 entries (a first miss)
    seed = sim.eval_seed(0, "evaluate")
    fresh = sim.evaluate(sim.eval_prompts, sim.cfg.loop.eval_completions, 0, "evaluate", policy=sim.ref)
    first = round0_cache.cached(sim, lambda: fresh, seed)  # a miss: stores it
    assert first is fresh
    again = round0_cache.cached(sim, lambda: (_ for _ in ()).throw(AssertionError("drawn again")), seed)  # a hit
    assert again.texts == fresh.texts and [p.id for p in again.prompts] == [p.id for p in fresh.prompts]
    for a in round0_cache.ARRAYS:
        x, y = getattr(again, a), getattr(fresh, a)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), a
    assert again.move is None and again.k == fresh.k


def test_the_key_moves_with_what_the_draw_depends_on(tmp_path, sft_cache):
    sim = sim_for(tmp_path, sft_cache)
    key = round0_cache.cache_key(sim, sim.eval_seed(0, "evaluate"))
    assert key == round0_cache.cache_key(sim, sim.eval_seed(0, "evaluate"))
    assert key != round0_cache.cache_key(sim, sim.eval_seed(0, "evaluate") + 1)  # another seed's stream
    t = sim.cfg.policy.temperature
    sim.cfg.policy.temperature = t / 2
    assert key != round0_cache.cache_key(sim, sim.eval_seed(0, "evaluate"))
    sim.cfg.policy.temperature = t
    assert key == round0_cache.cache_key(sim, sim.eval_seed(0, "evaluate"))
    next(sim.ref.parameters()).data.view(-1)[0] += 1e-3  # other reference weights
    assert key != round0_cache.cache_key(sim, sim.eval_seed(0, "evaluate"))
