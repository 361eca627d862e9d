import numpy as np

from behavior_models.data import DatasetInfo
from rl.core.evaluation import flatten_batch, score


def test_normalized_score_is_d4rl_formula():
    info = DatasetInfo("x", 2, 1, 1, 1, ref_min_score=-10.0, ref_max_score=30.0)
    result = score(np.array([-10.0, 10.0, 30.0]), np.array([5, 5, 5]), info)
    np.testing.assert_allclose(result.scores, [0.0, 50.0, 100.0])
    assert result.score_kind == "normalized"
    summary = result.summary()
    assert summary["normalized_score_mean"] == 50.0 and summary["episodes"] == 3


def test_without_reference_scores_raw_returns_are_reported_and_labelled():
    info = DatasetInfo("x", 2, 1, 1, 1)
    result = score(np.array([1.0, 3.0]), np.array([5, 5]), info)
    np.testing.assert_allclose(result.scores, [1.0, 3.0])
    assert result.score_kind == "raw_return"


def test_dict_observations_flatten_in_the_loader_order():
    obs = [{"desired_goal": np.array([5.0, 6.0]), "observation": np.array([1.0, 2.0, 3.0, 4.0]),
            "achieved_goal": np.array([7.0, 8.0])}] * 2
    flat = flatten_batch(obs)
    np.testing.assert_allclose(flat, [[1, 2, 3, 4, 7, 8, 5, 6]] * 2)
