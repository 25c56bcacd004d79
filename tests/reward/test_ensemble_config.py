"""Config rules for ensembles and early stopping: bad combinations fail at load time with the fix."""

import pytest

from rlhfsim.config import ConfigError, config_from_dict


@pytest.mark.parametrize("method", ["wco", "uwo", "median"])
def test_conservative_aggregation_with_one_member_is_refused(method):
    with pytest.raises(ConfigError, match="ensemble_size >= 2"):
        config_from_dict({"reward": {"aggregation": method}})
    cfg = config_from_dict({"reward": {"aggregation": method, "ensemble_size": 2}})
    assert cfg.reward.aggregation == method


@pytest.mark.parametrize(
    "reward, match",
    [
        ({"early_stop": {"mode": "collapse"}}, "min_shape_dep"),
        ({"early_stop": {"mode": "patience", "holdout": 0.0}}, "holdout > 0"),
        ({"epochs": 2, "early_stop": {"min_epochs": 3}}, "min_epochs"),
        ({"ensemble_data": "bagging"}, "ensemble_data"),
        ({"early_stop": {"mode": "always"}}, "mode"),
        ({"early_stop": {"patiance": 2}}, "patience"),
    ],
)
def test_bad_early_stop_and_ensemble_settings(reward, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"reward": reward})


def test_defaults_keep_a_single_plain_model():
    cfg = config_from_dict({})
    assert cfg.reward.ensemble_size == 1 and cfg.reward.aggregation == "mean"
    assert cfg.reward.early_stop.mode == "none" and cfg.loop.stop_on_stagnation is False
    ok = config_from_dict({"reward": {"epochs": 6, "early_stop": {"mode": "collapse", "max_saturation": 0.5}}})
    assert ok.reward.early_stop.max_saturation == 0.5


def test_checkpoint_reward_models_refuse_what_their_trainer_lacks():
    from rlhfsim.config import RewardConfig

    with pytest.raises(ValueError, match="early_stop.mode"):
        RewardConfig(checkpoint="org/rm", early_stop={"mode": "patience", "holdout": 0.15})
    with pytest.raises(ValueError, match="bootstrap"):
        RewardConfig(checkpoint="org/rm", ensemble_size=2, ensemble_data="bootstrap")
    assert RewardConfig(checkpoint="org/rm").early_stop.mode == "none"
