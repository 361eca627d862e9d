import copy

import gymnasium as gym
import numpy as np
import pytest

from behavior_models.data import DatasetInfo, write_minari_dataset
from behavior_models.errors import ConfigError
from rl.core.evaluation import flatten_batch, make_eval_env_factory, maze_layout_note, rollout, score
from rl.datasets.pointmaze import import_gymnasium_robotics


def test_normalized_score_is_d4rl_formula():
    info = DatasetInfo("x", 2, 1, 1, 1, ref_min_score=-10.0, ref_max_score=30.0)
    result = score(np.array([-10.0, 10.0, 30.0]), np.array([5, 5, 5]), info)
    np.testing.assert_allclose(result.scores, [0.0, 50.0, 100.0])
    assert result.score_kind == "normalized"
    summary = result.summary()
    assert summary["normalized_score_mean"] == 50.0 and summary["episodes"] == 3
    assert summary["reference_scores"] == [-10.0, 30.0]  # the scale the scores were taken on


def test_without_reference_scores_raw_returns_are_reported_and_labelled():
    info = DatasetInfo("x", 2, 1, 1, 1)
    result = score(np.array([1.0, 3.0]), np.array([5, 5]), info)
    np.testing.assert_allclose(result.scores, [1.0, 3.0])
    assert result.score_kind == "raw_return" and result.summary()["reference_scores"] is None


def test_dict_observations_flatten_in_the_loader_order():
    obs = [{"desired_goal": np.array([5.0, 6.0]), "observation": np.array([1.0, 2.0, 3.0, 4.0]),
            "achieved_goal": np.array([7.0, 8.0])}] * 2
    flat = flatten_batch(obs)
    np.testing.assert_allclose(flat, [[1, 2, 3, 4, 7, 8, 5, 6]] * 2)


class CountingEnv:
    """Episode reset with seed k lasts k + 2 steps; step t (from 1) pays reward t."""

    action_space = type("Box", (), {"low": np.array([-1.0]), "high": np.array([1.0])})

    def reset(self, seed):
        self.t, self.length = 0, seed + 2
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1), float(self.t), self.t == self.length, False, {}

    def close(self):
        pass


def test_rollout_reports_every_step_reward_of_each_episode_in_order():
    seen = {}
    returns, lengths = rollout(lambda obs: np.zeros((len(obs), 1)), CountingEnv, episodes=5, seed=1, parallel=2,
                               on_step=lambda i, reward: seen.setdefault(i, []).append(reward))
    for i in range(5):
        assert seen[i] == [float(t) for t in range(1, i + 4)]  # episode i: seed 1 + i, so i + 3 steps
    np.testing.assert_allclose(returns, [sum(range(1, i + 4)) for i in range(5)])
    np.testing.assert_array_equal(lengths, [i + 3 for i in range(5)])


def test_normalized_score_std_is_taken_over_the_normalised_scores():
    # References 0..200 halve every return: the std of the scores is half the std of the returns.
    info = DatasetInfo("x", 2, 1, 1, 1, ref_min_score=0.0, ref_max_score=200.0)
    summary = score(np.array([0.0, 100.0, 200.0, 300.0]), np.array([5] * 4), info).summary()
    assert summary["normalized_score_std"] == np.std([0.0, 50.0, 100.0, 150.0])
    assert summary["return_std"] == np.std([0.0, 100.0, 200.0, 300.0])


class RecordingBoxEnv:
    """Truncates after 50 steps (so that ignoring max_steps fails rather than hangs); records every
    action it is given; actions live in [-0.5, 2]."""

    action_space = type("Box", (), {"low": np.array([-0.5, -0.5]), "high": np.array([2.0, 2.0])})
    actions: list = []

    def reset(self, seed):
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        RecordingBoxEnv.actions.append(np.array(action))
        return np.zeros(1), 1.0, False, self.t == 50, {}

    def close(self):
        pass


def test_rollout_clips_actions_to_the_env_box_and_caps_episodes_at_max_steps():
    RecordingBoxEnv.actions = []
    policy = lambda obs: np.tile([[-3.0, 5.0]], (len(obs), 1))  # outside the box on both sides
    returns, lengths = rollout(policy, RecordingBoxEnv, episodes=3, seed=0, parallel=2, max_steps=7)
    np.testing.assert_array_equal(lengths, [7, 7, 7])
    np.testing.assert_allclose(returns, [7.0, 7.0, 7.0])
    assert len(RecordingBoxEnv.actions) == 21
    np.testing.assert_array_equal(np.stack(RecordingBoxEnv.actions), np.tile([[-0.5, 2.0]], (21, 1)))


def write_maze_dataset(dataset_id, data_map, eval_map):
    """One three-step PointMaze episode collected in ``data_map``, with ``eval_map`` as its eval env."""
    import_gymnasium_robotics()
    # Collected as Minari's PointMaze data are: goals re-sampled on arrival, a million-step limit.
    env = gym.make("PointMaze_UMaze-v3", maze_map=data_map, continuing_task=True, reset_target=True,
                   max_episode_steps=10**6)
    eval_spec = copy.deepcopy(env.spec)
    eval_spec.kwargs.update(maze_map=eval_map, reset_target=False)
    eval_spec.max_episode_steps = 300
    frames = [env.reset(seed=0)[0]]
    actions = np.zeros((3, 2), np.float32)
    frames += [env.step(action)[0] for action in actions]
    observations = {key: np.stack([frame[key] for frame in frames]) for key in frames[0]}
    episode = {"observations": observations, "actions": actions, "rewards": np.zeros(3),
               "terminations": np.zeros(3, bool), "truncations": np.array([False, False, True])}
    write_minari_dataset(dataset_id, [episode], env=env, eval_env=eval_spec)
    env.close()
    return dataset_id


U = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
U_WITH_START_AND_GOAL = [[1, 1, 1, 1, 1], [1, "g", 0, 0, 1], [1, 1, 1, 0, 1], [1, "r", 0, 0, 1], [1, 1, 1, 1, 1]]
U_MIRRORED = [[1, 1, 1, 1, 1], [1, 0, 0, "r", 1], [1, 0, 1, 1, 1], [1, 0, 0, "g", 1], [1, 1, 1, 1, 1]]


def test_a_maze_evaluated_with_other_walls_is_noted_and_a_fixed_start_and_goal_is_not():
    assert maze_layout_note(write_maze_dataset("test/same-walls-v0", U, U_WITH_START_AND_GOAL)) is None
    dataset_id = write_maze_dataset("test/mirrored-v0", U_WITH_START_AND_GOAL, U_MIRRORED)
    assert "other walls" in maze_layout_note(dataset_id)
    specs = {maze: make_eval_env_factory(dataset_id, maze)().spec for maze in ("evaluation", "data")}
    assert {maze: spec.kwargs["maze_map"] for maze, spec in specs.items()} == {
        "evaluation": U_MIRRORED, "data": U_WITH_START_AND_GOAL}
    # Only the maze is the data's: the goal stays fixed and the time limit is the evaluation's,
    # not the collection's re-sampled goals and million steps.
    assert all(spec.kwargs["reset_target"] is False and spec.max_episode_steps == 300 for spec in specs.values())
    with pytest.raises(ConfigError, match="unknown evaluation maze 'eval'"):
        make_eval_env_factory(dataset_id, "eval")


def test_an_eval_env_spec_written_by_an_older_gymnasium_is_read_as_minari_reads_it(minari_datasets_path):
    """Specs written under gymnasium 0.29 (Minari's AntMaze v1 generation pinned minari 0.4.3)
    carry apply_api_compatibility and autoreset, which this gymnasium's EnvSpec refuses."""
    import json

    import minari

    dataset_id = write_maze_dataset("test/old-spec-v0", U_WITH_START_AND_GOAL, U_MIRRORED)
    path = minari_datasets_path / dataset_id / "data" / "metadata.json"
    metadata = json.loads(path.read_text())
    spec = json.loads(metadata["eval_env_spec"])
    # Ahead of the other fields, as gymnasium 0.29 wrote them (Minari strips them by their text).
    metadata["eval_env_spec"] = json.dumps({"apply_api_compatibility": False, "autoreset": False, **spec})
    path.write_text(json.dumps(metadata))
    assert minari.load_dataset(dataset_id).recover_environment(eval_env=True).spec.max_episode_steps == 300
    assert "other walls" in maze_layout_note(dataset_id)
    assert make_eval_env_factory(dataset_id, "data")().spec.kwargs["maze_map"] == U_WITH_START_AND_GOAL


def test_a_dataset_without_a_maze_has_no_data_maze_to_evaluate_in(minari_datasets_path):
    from behavior_models.errors import DatasetError

    env = gym.make("MountainCarContinuous-v0")
    episode = {"observations": np.zeros((3, 2), np.float32), "actions": np.zeros((2, 1), np.float32),
               "rewards": np.zeros(2), "terminations": np.zeros(2, bool), "truncations": np.array([False, True])}
    write_minari_dataset("test/no-maze-v0", [episode], env=env)
    assert maze_layout_note("test/no-maze-v0") is None
    with pytest.raises(DatasetError, match="not collected in a maze .* drop --eval-maze data"):
        make_eval_env_factory("test/no-maze-v0", "data")
