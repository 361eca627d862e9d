"""Three more of Minari's layouts end to end, each written from real environment episodes the way
Minari stores the stock dataset, loaded by its alias, trained on and evaluated in the environment
Minari recovers (as tests/cli/test_kitchen_end_to_end.py does for FrankaKitchen):

* ``mujoco/hopper/medium-v0``: flat observations (11,), Hopper-v5 with its 1000-step limit, and
  reference scores, as Minari's MuJoCo datasets carry them: the score is the normalised one;
* ``D4RL/antmaze/umaze-v1``: dict observations, collected and evaluated as Minari's generation
  script for the v1 AntMaze datasets does (Farama-Foundation/minari-dataset-generation-scripts,
  scripts/antmaze/create_antmaze_dataset.py at f0e60c1): ``AntMaze_UMaze-v4`` with
  ``continuing_task=True, reset_target=False`` and the registered 700-step limit, collected in a
  U-maze whose goal is top left and reset bottom left, evaluated (its eval env spec) in the
  mirrored map, reset top right and goal bottom right;
* ``D4RL/door/human-v2``: flat observations (39,), actions (28,), AdroitHandDoor-v1 (200 steps).

A user's downloaded dataset takes exactly these paths. The reference scores are plausible values
(D4RL's for Hopper and Door), not Minari's own."""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

from behavior_models.data import load_transitions, write_minari_dataset
from cli.bm import main as bm
from cli.rl import main as rl
from rl.core.evaluation import flatten_batch, make_eval_env_factory, maze_layout_note
from rl.datasets.pointmaze import import_gymnasium_robotics
from tests.helpers import copied, stacked

EPISODES = 2
HOPPER_ID, HOPPER_REFERENCES = "mujoco/hopper/medium-v0", (-20.272305, 3234.3)
ANTMAZE_ID, ANTMAZE_REFERENCES = "D4RL/antmaze/umaze-v1", (0.0, 450.0)
DOOR_ID, DOOR_REFERENCES = "D4RL/door/human-v2", (-56.512833, 2880.5693)
G, R = "g", "r"
ANTMAZE_COLLECTION_MAP = [[1, 1, 1, 1, 1], [1, G, 0, 0, 1], [1, 1, 1, 0, 1], [1, R, 0, 0, 1], [1, 1, 1, 1, 1]]
ANTMAZE_EVAL_MAP = [[1, 1, 1, 1, 1], [1, 0, 0, R, 1], [1, 0, 1, 1, 1], [1, 0, 0, G, 1], [1, 1, 1, 1, 1]]
ANTMAZE_KEYS = ("observation", "achieved_goal", "desired_goal")  # the documented flattening order
# The v1 AntMaze datasets name the v4 environment (27 proprioceptive numbers; v5 adds contact forces).
pytestmark = pytest.mark.filterwarnings("ignore:.*AntMaze_UMaze-v4 is out of date:DeprecationWarning")


def collect(env, steps: int, scale: float = 0.3, step_infos=None):
    """``EPISODES`` episodes of small random actions, episode i reset with seed i (recorded, as
    Minari's DataCollector records it); an episode ends early if the environment terminates it.
    ``step_infos(observation, info)``, if given, is the infos dict recorded at each step.
    Returns the episodes and their first observations."""
    rng = np.random.default_rng(0)
    episodes, firsts = [], []
    for episode in range(EPISODES):
        observation, info = env.reset(seed=episode)
        firsts.append(copied(observation))
        frames, actions, rewards, terminations = [copied(observation)], [], [], []
        infos = [step_infos(observation, info)] if step_infos else []
        for _ in range(steps):
            action = np.clip(scale * rng.normal(size=env.action_space.shape), -1, 1).astype(np.float32)
            observation, reward, terminated, truncated, info = env.step(action)
            frames.append(copied(observation))
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            if step_infos:
                infos.append(step_infos(observation, info))
            if terminated or truncated:
                break
        truncations = np.zeros(len(actions), bool)
        truncations[-1] = not terminations[-1]  # cut short by the collection, as Minari records a time limit
        episodes.append({"seed": episode, "observations": stacked(frames), "actions": np.asarray(actions),
                         "rewards": np.asarray(rewards, np.float64), "terminations": np.asarray(terminations),
                         "truncations": truncations, **({"infos": stacked(infos)} if step_infos else {})})
    return episodes, firsts


def first_rows(data) -> np.ndarray:
    return np.flatnonzero(data.timesteps == 0)


def assert_eval_env_resets_to_the_first_states(data, env_id: str, time_limit: int) -> None:
    """The recovered evaluation env is ``env_id`` with ``time_limit`` steps, and its reset
    observations, flattened by the evaluation, equal the dataset's first states column for column."""
    env = make_eval_env_factory(data.dataset_id)()
    try:
        assert env.spec.id == env_id and env.spec.max_episode_steps == time_limit
        for episode, row in enumerate(first_rows(data)):
            observation, _ = env.reset(seed=episode)
            np.testing.assert_allclose(flatten_batch([observation])[0], data.observations[row], rtol=1e-6, atol=1e-6)
    finally:
        env.close()


def train(tmp_path, algorithm: str, alias: str, *extra: str):
    """``rl train`` for 10 steps with small networks and one evaluation episode; the run directory's
    summary.json and config.json, and what it printed."""
    run = tmp_path / algorithm
    result = CliRunner().invoke(rl, ["train", algorithm, "--dataset", alias, "--steps", "10", "--batch-size", "32",
                                     "--set", "hidden=32,32", "--eval-episodes", "1", "--no-progress",
                                     "--out", str(run), *extra])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    return summary, config, result.output


def fit(tmp_path, backend: str, alias: str) -> str:
    model = tmp_path / backend
    small = tmp_path / f"{backend}.json"
    small.write_text(json.dumps({"hidden": [32, 32]}))
    result = CliRunner().invoke(bm, ["fit", "--model", backend, "--dataset", alias, "--out", str(model),
                                     "--steps", "20", "--batch-size", "32", "--config", str(small)])
    assert result.exit_code == 0, result.output
    return str(model)


def assert_normalized(summary, references, output):
    """The score is D4RL's 100 (R - min) / (max - min) of the reported return, labelled so."""
    low, high = references
    assert summary["score_kind"] == "normalized" and summary["reference_scores"] == pytest.approx([low, high])
    expected = 100.0 * (summary["return_mean"] - low) / (high - low)
    assert summary["normalized_score_mean"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert output.strip().splitlines()[-1] == f"normalized_score: {expected:.2f}"


# ----------------------------------------------------------------------------- Hopper


@pytest.fixture
def hopper_dataset(minari_datasets_path):
    env = gym.make("Hopper-v5")  # Minari's mujoco/ datasets: the v5 env, its 1000-step limit
    episodes, firsts = collect(env, steps=30)
    write_minari_dataset(HOPPER_ID, episodes, env=env, ref_min_score=HOPPER_REFERENCES[0],
                         ref_max_score=HOPPER_REFERENCES[1])
    env.close()
    assert (minari_datasets_path / HOPPER_ID / "data").is_dir()  # the test's own datasets directory
    return episodes, firsts


def test_hopper_evaluation_env_sees_the_layout_the_dataset_was_loaded_in(hopper_dataset):
    episodes, firsts = hopper_dataset
    data = load_transitions("hopper-medium")
    assert data.dataset_id == HOPPER_ID
    assert (data.obs_dim, data.act_dim, data.info.observation_keys) == (11, 3, ())
    # Like Minari's Hopper data, one episode ends in a fall (terminated), the other at a time limit.
    assert [bool(e["terminations"][-1]) for e in episodes] == [False, True]
    assert len(data) == sum(len(e["actions"]) for e in episodes) < EPISODES * 30
    assert (data.terminals.sum(), data.timeouts.sum()) == (1, 1)
    assert (data.info.ref_min_score, data.info.ref_max_score) == pytest.approx(HOPPER_REFERENCES)
    np.testing.assert_allclose(data.observations[first_rows(data)], np.stack(firsts), rtol=1e-6, atol=1e-6)
    assert_eval_env_resets_to_the_first_states(data, "Hopper-v5", 1000)


def test_train_and_evaluate_on_hopper_with_the_normalised_score(hopper_dataset, tmp_path):
    summary, config, output = train(tmp_path, "td3bc", "hopper-medium")
    assert summary["dataset_id"] == HOPPER_ID and summary["episodes"] == 1
    assert 1 <= summary["episode_length_mean"] <= 1000  # Hopper-v5 ends a fall early, else at its limit
    assert_normalized(summary, HOPPER_REFERENCES, output)
    # reward_transform=auto on mujoco/ ids is the algorithm's own convention (rl/core/rewards.py):
    # raw rewards for TD3+BC, as for SPOT below.
    assert config["algo"]["reward_transform"] == "none"
    summary, config, output = train(tmp_path, "spot", "hopper-medium", "--behavior",
                                       fit(tmp_path, "gaussian", "hopper-medium"))
    assert_normalized(summary, HOPPER_REFERENCES, output)
    assert config["algo"]["reward_transform"] == "none"
    assert (config["algo"]["actor_lr"], config["algo"]["normalize_states"]) == (3e-4, True)  # TD3's, not the maze's


# ----------------------------------------------------------------------------- AntMaze


def antmaze_infos(observation, info):
    """What the v1 script records beside each step: the simulator state and the goal."""
    return {"success": np.asarray(bool(info.get("success", False))),
            "qpos": np.concatenate([observation["achieved_goal"], observation["observation"][:13]]),
            "qvel": np.array(observation["observation"][13:]), "goal": np.array(observation["desired_goal"])}


@pytest.fixture
def antmaze_dataset(minari_datasets_path):
    import_gymnasium_robotics()
    env = gym.make("AntMaze_UMaze-v4", maze_map=ANTMAZE_COLLECTION_MAP, continuing_task=True, reset_target=False)
    eval_spec = copy.deepcopy(env.spec)
    eval_spec.kwargs["maze_map"] = ANTMAZE_EVAL_MAP
    episodes, firsts = collect(env, steps=40, step_infos=antmaze_infos)
    write_minari_dataset(ANTMAZE_ID, episodes, env=env, eval_env=eval_spec, ref_min_score=ANTMAZE_REFERENCES[0],
                         ref_max_score=ANTMAZE_REFERENCES[1])
    env.close()
    assert (minari_datasets_path / ANTMAZE_ID / "data").is_dir()
    return episodes, firsts


def by_hand(observation) -> np.ndarray:
    """One dict observation flattened in the documented order, without the library."""
    return np.concatenate([np.asarray(observation[key], np.float64).ravel() for key in ANTMAZE_KEYS])


def test_antmaze_evaluation_env_sees_the_layout_the_dataset_was_loaded_in(antmaze_dataset):
    import minari

    _, firsts = antmaze_dataset
    data = load_transitions("antmaze-umaze")
    assert data.dataset_id == ANTMAZE_ID
    assert (data.obs_dim, data.act_dim, len(data)) == (27 + 2 + 2, 8, EPISODES * 40)
    assert (data.info.observation_keys, data.info.observation_sizes) == (ANTMAZE_KEYS, (27, 2, 2))
    rows = first_rows(data)
    np.testing.assert_allclose(data.observations[rows], np.stack([by_hand(o) for o in firsts]),
                               rtol=1e-6, atol=1e-6)
    # The collection env Minari recovers gives back the dataset's first states, column for column.
    collection = minari.load_dataset(ANTMAZE_ID).recover_environment()
    try:
        for episode, row in enumerate(rows):
            observation, _ = collection.reset(seed=episode)
            np.testing.assert_allclose(flatten_batch([observation])[0], data.observations[row], rtol=1e-6, atol=1e-6)
    finally:
        collection.close()
    env = make_eval_env_factory(ANTMAZE_ID)()
    try:
        spec = env.spec
        assert (spec.id, spec.max_episode_steps) == ("AntMaze_UMaze-v4", 700)
        assert (spec.kwargs["maze_map"], spec.kwargs["continuing_task"], spec.kwargs["reset_target"]) == (
            ANTMAZE_EVAL_MAP, True, False)
        maze = env.unwrapped.maze
        for episode, row in enumerate(rows):
            observation, _ = env.reset(seed=episode)
            flat = flatten_batch([observation])[0]
            np.testing.assert_allclose(flat, by_hand(observation), rtol=1e-6, atol=1e-6)
            # The same seed gives the same body state; only the maze (so the ant's place and its goal) differs.
            np.testing.assert_allclose(flat[:27], data.observations[row, :27], rtol=1e-6, atol=1e-6)
            reset_cell, goal_cell = (maze.cell_rowcol_to_xy(np.array(cell)) for cell in ((1, 3), (3, 3)))
            # Where the eval map puts r and g, within their reset noise of a quarter cell.
            assert np.abs(flat[27:29] - reset_cell).max() <= 0.25 * maze.maze_size_scaling
            assert np.abs(flat[29:31] - goal_cell).max() <= 0.25 * maze.maze_size_scaling
            np.testing.assert_allclose(flat[29:31], env.unwrapped.goal, rtol=1e-6, atol=1e-6)
    finally:
        env.close()


def test_train_and_evaluate_on_antmaze_with_the_maze_reward(antmaze_dataset, tmp_path):
    summary, config, output = train(tmp_path, "spot", "antmaze-umaze", "--behavior",
                                       fit(tmp_path, "cvae", "antmaze-umaze"))
    assert summary["dataset_id"] == ANTMAZE_ID
    assert summary["episode_length_mean"] == 700  # a continuing task: the eval env's own time limit
    assert_normalized(summary, ANTMAZE_REFERENCES, output)
    algo = config["algo"]
    # SPOT on AntMaze (rl/core/rewards.py, rl/algos/spot.py): r - 1, with its maze settings.
    assert (algo["reward_transform"], algo["goal_switch"]) == ("minus_one", "relabel")
    assert (algo["actor_lr"], algo["normalize_states"]) == (1e-4, False)
    # The evaluation maze is not the data's: the run says so before it trains.
    assert summary["eval_maze"] == "evaluation" and "note: D4RL/antmaze/umaze-v1's evaluation environment" in output


def test_antmaze_evaluates_in_the_data_maze_on_request(antmaze_dataset, tmp_path):
    note = maze_layout_note(ANTMAZE_ID)
    assert "other walls" in note and "--eval-maze data" in note
    env = make_eval_env_factory(ANTMAZE_ID, "data")()
    try:
        assert env.spec.kwargs["maze_map"] == ANTMAZE_COLLECTION_MAP
        assert (env.spec.id, env.spec.max_episode_steps, env.spec.kwargs["reset_target"]) == (
            "AntMaze_UMaze-v4", 700, False)
    finally:
        env.close()
    summary, config, output = train(tmp_path, "td3bc", "antmaze-umaze", "--eval-maze", "data")
    assert (summary["eval_maze"], config["run"]["eval_maze"]) == ("data", "data") and "note:" not in output
    assert_normalized(summary, ANTMAZE_REFERENCES, output)
    # rl eval scores the run in its own env by default, in the other one on request, into its own file.
    run = tmp_path / "td3bc"
    for extra, written, maze in (([], "eval[eval_maze=data].json", "data"),
                                 (["--eval-maze", "evaluation"], "eval.json", "evaluation")):
        result = CliRunner().invoke(rl, ["eval", "--run", str(run), "--episodes", "1", *extra])
        assert result.exit_code == 0, result.output
        assert json.loads((run / written).read_text())["eval_maze"] == maze
        assert ("note:" in result.output) == (maze == "evaluation")


# ----------------------------------------------------------------------------- Door


@pytest.fixture
def door_dataset(minari_datasets_path):
    import_gymnasium_robotics()
    env = gym.make("AdroitHandDoor-v1")  # its 200-step limit
    episodes, firsts = collect(env, steps=20)
    write_minari_dataset(DOOR_ID, episodes, env=env, ref_min_score=DOOR_REFERENCES[0],
                         ref_max_score=DOOR_REFERENCES[1])
    env.close()
    assert (minari_datasets_path / DOOR_ID / "data").is_dir()
    return episodes, firsts


def test_door_evaluation_env_sees_the_layout_the_dataset_was_loaded_in(door_dataset):
    _, firsts = door_dataset
    data = load_transitions("door-human")
    assert data.dataset_id == DOOR_ID
    assert (data.obs_dim, data.act_dim, len(data), data.info.observation_keys) == (39, 28, EPISODES * 20, ())
    np.testing.assert_allclose(data.observations[first_rows(data)], np.stack(firsts), rtol=1e-6, atol=1e-6)
    assert_eval_env_resets_to_the_first_states(data, "AdroitHandDoor-v1", 200)


def test_train_and_evaluate_on_door(door_dataset, tmp_path):
    summary, config, output = train(tmp_path, "td3bc", "door-human")
    assert summary["dataset_id"] == DOOR_ID
    assert summary["episode_length_mean"] == 200  # the door never ends an episode early
    assert_normalized(summary, DOOR_REFERENCES, output)
    assert config["algo"]["reward_transform"] == "none"  # neither a maze nor a mujoco/ id
