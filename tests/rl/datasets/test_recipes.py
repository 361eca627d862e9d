import functools

import minari
import numpy as np
import pytest
from click.testing import CliRunner

import rl.datasets
from behavior_models.data import load_transitions
from behavior_models.errors import ArtefactMismatchError, ConfigError, DatasetNotFoundError
from cli.bm import main as bm
from behavior_models.data.goals import goal_columns, goal_switches
from rl.core.evaluation import maze_layout_note
from rl.core.rewards import goal_switch_view
from rl.datasets import make_dataset
from rl.datasets.recipes import planner_actions

SMALL = {"episodes": 3, "episode_steps": 50, "reference_episodes": 2, "progress": False}


def test_recipe_is_deterministic_for_a_seed():
    first = load_transitions(make_dataset("pointmaze-umaze-noisy", seed=3, **SMALL)).fingerprint
    again = load_transitions(make_dataset("pointmaze-umaze-noisy", seed=3, overwrite=True, **SMALL)).fingerprint
    other = load_transitions(make_dataset("pointmaze-umaze-noisy", seed=4, overwrite=True, **SMALL)).fingerprint
    assert first == again
    assert other != first


def test_planner_actions_reproduce_the_expert_recipe_from_flat_observations():
    data = load_transitions(make_dataset("pointmaze-umaze-expert", **SMALL))
    # The expert recipe records the planner's own actions, so this also checks the flat layout it reads.
    # atol: the observations are stored in float32, and the PD gain of 10 scales their rounding.
    np.testing.assert_allclose(planner_actions(data.dataset_id, data.observations), data.actions, atol=1e-5)
    noisy = load_transitions(make_dataset("pointmaze-umaze-noisy", **SMALL))
    assert np.abs(planner_actions(noisy.dataset_id, noisy.observations) - noisy.actions).max() > 0.1
    assert planner_actions("D4RL/kitchen/mixed-v2", data.observations) is None


def test_goal_switches_of_a_recipe_are_relabelled_with_the_evaluation_reward():
    data = load_transitions(make_dataset("pointmaze-umaze-biased", episodes=2, episode_steps=400,
                                         reference_episodes=1, progress=False))
    switch = goal_switches(data)
    achieved, desired = goal_columns(data)
    assert switch.sum() >= 3  # the planner reaches several goals in 800 steps
    # Every switch starts at its own goal (the arrival), and its recorded reward is paid against the new goal.
    at_goal = np.linalg.norm(data.observations[:, achieved] - data.observations[:, desired], axis=1) <= 0.45
    np.testing.assert_array_equal(switch, at_goal)
    new_goal = np.linalg.norm(data.next_observations[:, achieved] - data.next_observations[:, desired], axis=1) <= 0.45
    np.testing.assert_array_equal(data.rewards[switch], new_goal[switch])

    view = goal_switch_view(data, "relabel")
    kept_goal = np.linalg.norm(data.next_observations[:, achieved] - data.observations[:, desired], axis=1) <= 0.45
    np.testing.assert_array_equal(view.rewards[switch], kept_goal[switch])
    assert view.rewards[switch].mean() > 0.9  # the ball is still at the goal it arrived at
    np.testing.assert_array_equal(view.rewards[~switch], data.rewards[~switch])


def test_metadata_and_eval_env_are_stored():
    dataset_id = make_dataset("pointmaze-umaze-biased", **SMALL)
    assert dataset_id == "local/pointmaze-umaze-biased-v0"
    dataset = minari.load_dataset(dataset_id)
    meta = dataset.storage.metadata
    assert meta["ref_min_score"] < meta["ref_max_score"]
    assert meta["recipe"]["config"]["policy"] == "biased" and meta["recipe"]["config"]["seed"] == 0
    env = dataset.recover_environment(eval_env=True)  # no extra arguments needed
    assert env.spec.max_episode_steps == 300
    assert env.spec.kwargs["reset_target"] is False and env.spec.kwargs["continuing_task"] is True
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    assert dataset.recover_environment().spec.max_episode_steps == 50  # the collection env
    info = load_transitions(dataset_id).info
    assert info.has_reference_scores and info.has_env_spec and info.obs_dim == 8 and info.act_dim == 2
    # Evaluated in the data's maze: nothing to warn about.
    assert dataset.recover_environment().spec.kwargs["maze_map"] == env.spec.kwargs["maze_map"]
    assert maze_layout_note(dataset_id) is None


def test_contamination_recipe_end_to_end():
    # N = 3 x 50 = 150 expert transitions; 30% -> 45 random, so both cuts fall inside episodes.
    data = load_transitions(make_dataset("pointmaze-umaze-expert-random-30", **SMALL))
    expert = load_transitions("pointmaze-umaze-expert")
    random = load_transitions("pointmaze-umaze-random")
    assert len(data) == 150
    np.testing.assert_array_equal(data.actions[:105], expert.actions[:105])
    np.testing.assert_array_equal(data.actions[105:], random.actions[:45])
    np.testing.assert_array_equal(data.observations[105:], random.observations[:45])
    ends = np.flatnonzero(data.episode_ends)
    assert ends.tolist() == [49, 99, 104, 149]
    assert data.timeouts[ends].all() and not data.terminals.any()  # cuts end truncated, not terminal
    assert not data.next_action_valid[104] and not data.next_action_valid[149]
    assert data.next_action_valid[:104].sum() == 102  # only episode ends lack a next action
    meta = minari.load_dataset("local/pointmaze-umaze-expert-random-30-v0").storage.metadata
    assert meta["recipe"]["counts"]["random"] == 45 and meta["recipe"]["counts"]["expert"] == 105
    assert meta["ref_max_score"] == minari.load_dataset("local/pointmaze-umaze-expert-v0").storage.metadata[
        "ref_max_score"]


def test_a_dataset_from_another_recipe_is_refused_without_overwrite():
    make_dataset("pointmaze-umaze-random", seed=0, **SMALL)
    assert make_dataset("pointmaze-umaze-random", seed=0, **SMALL) == "local/pointmaze-umaze-random-v0"
    with pytest.raises(ArtefactMismatchError, match="--force") as error:
        make_dataset("pointmaze-umaze-random", seed=1, **SMALL)
    assert "on disk -> asked: seed: 0 -> 1)" in str(error.value) and "episodes" not in str(error.value)  # what differs only


def test_a_leftover_folder_is_refused_before_anything_is_generated(minari_datasets_path, monkeypatch):
    """A killed build (or a folder made by hand) leaves local/<name>-v0 without its data: refused with
    the fix up front, not after the whole dataset was collected."""
    (minari_datasets_path / "local" / "pointmaze-umaze-expert-v0").mkdir(parents=True)
    monkeypatch.setattr(rl.datasets.recipes, "collect_episodes", lambda *a, **k: pytest.fail("generated anyway"))
    with pytest.raises(ArtefactMismatchError, match="holds no readable dataset.*make pointmaze-umaze-expert --force"):
        make_dataset("pointmaze-umaze-expert", **SMALL)


def test_a_negative_seed_is_refused_naming_the_field():
    # numpy's SeedSequence takes no negative seed; its bare ValueError would reach the CLI as a traceback.
    with pytest.raises(ConfigError, match="seed must be at least 0, got -1"):
        make_dataset("pointmaze-umaze-expert", seed=-1, **SMALL)


def test_unknown_name_fails_fast():
    with pytest.raises(DatasetNotFoundError, match="not a built-in recipe"):
        make_dataset("pointmaze-umaze-expertt")


def test_make_of_a_stock_dataset_name_says_how_to_get_it_and_suggests_only_recipes():
    # A stock Minari alias is not "mistyped": suggesting the very name typed would mislead.
    with pytest.raises(DatasetNotFoundError) as error:
        make_dataset("kitchen-mixed")
    message = str(error.value)
    assert "minari download D4RL/kitchen/mixed-v2" in message and "Did you mean" not in message
    with pytest.raises(DatasetNotFoundError) as error:
        make_dataset("pointmaze-umaze")  # the stock D4RL/pointmaze/umaze-v2, next to the recipes
    assert "minari download D4RL/pointmaze/umaze-v2" in str(error.value)
    with pytest.raises(DatasetNotFoundError, match="Did you mean pointmaze-umaze-noisy") as error:
        make_dataset("pointmaze-umaze-nosy")
    assert "antmaze" not in str(error.value)  # `bm datasets make` builds recipes only


def test_cli_make_and_build_on_first_use(monkeypatch):
    runner = CliRunner()
    result = runner.invoke(bm, ["datasets", "make", "pointmaze-medium-random", "--episodes", "2",
                                "--episode-steps", "20", "--reference-episodes", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "local/pointmaze-medium-random-v0: 40 transitions" in result.output
    # Any command given a recipe name that is not on disk builds it first (here with small sizes).
    monkeypatch.setattr(rl.datasets, "make_dataset", functools.partial(make_dataset, **SMALL))
    result = runner.invoke(bm, ["datasets", "info", "pointmaze-large-expert"])
    assert result.exit_code == 0, result.output
    assert "local/pointmaze-large-expert-v0" in result.output and "ref_max_score" in result.output


def test_biased_dataset_noise_and_bias_follow_listing_1_per_x_bucket():
    import minari

    from rl.datasets.analysis import x_bucket_statistics
    from rl.datasets.storage import read_episodes

    dataset_id = make_dataset("pointmaze-umaze-biased", episodes=6, episode_steps=1000, reference_episodes=1,
                              progress=False)
    rows = x_bucket_statistics(read_episodes(minari.load_dataset(dataset_id)), "umaze", "biased")
    checked = [row for row in rows if row["count"] >= 200]
    assert len(checked) >= 6  # the planner visits most of the x-range
    for row in checked:
        # The measured residual mean matches the clipped-normal expectation given each expert action.
        assert abs(row["residual_mean"] - row["expected_mean"]) < 6 * row["mean_standard_error"] + 1e-6, row
        assert abs(row["residual_std"] - row["expected_std"]) < 0.1 * row["expected_std"] + 1e-6, row
    means = {row["bucket"]: row["residual_mean"] for row in checked}
    assert means[5] > 0.1 and means[4] < -0.1  # bias -0.3 (so added) versus +0.2 (subtracted)
