from types import SimpleNamespace

from rlhfsim.diagnostics.run_stop import stagnation_stop

CFG = SimpleNamespace(stagnation_window=3, stagnation_slope=0.0, stagnation_level=0.95)


def _rows(golds, move=0.1):
    return [{"round": 0, "eval/gold": 0.3}] + [
        {"round": r, "eval/gold": g, "eval/gold_se": 0.005, "eval/policy_move": move} for r, g in enumerate(golds, 1)
    ]


def test_stops_once_gold_stops_rising_while_the_policy_moves():
    rising = [0.30, 0.35, 0.40, 0.45]
    assert stagnation_stop(_rows(rising), CFG) is None
    assert stagnation_stop(_rows(rising[:2]), CFG) is None  # shorter than one window: never
    out = stagnation_stop(_rows(rising + [0.45, 0.45]), CFG)
    assert out["round"] == 6 and out["stagnation_round"] == 4 and out["kind"] == "stagnation"
    # within the noise (se 0.005: slope interval +-0.007) a small wobble is still flat ...
    assert stagnation_stop(_rows(rising + [0.452, 0.447]), CFG)["kind"] == "stagnation"
    # ... while a clear fall is over-optimisation, not stagnation
    over = stagnation_stop(_rows(rising + [0.40, 0.35]), CFG)
    assert (
        over["kind"] == "overoptimisation" and over["stagnation_round"] == 4 and "over-optimisation" in over["reason"]
    )
    # a policy that does not move has not stagnated, it has stopped
    assert stagnation_stop(_rows([0.3, 0.3, 0.3, 0.3], move=0.0), CFG) is None
