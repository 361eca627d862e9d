"""FrankaKitchen end to end, in the real environment. A dataset laid out as Minari's
``D4RL/kitchen/mixed-v2`` (nested-dict observations; FrankaKitchen-v1 with a 450-step limit as
its env; no reference scores) is loaded by its alias, a score model is fitted on it, a sample
cache drawn, ARQ trained and evaluated in the environment Minari recovers. A user's downloaded
dataset takes exactly this path."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

from behavior_models.data import load_transitions, write_minari_dataset
from cli.bm import main as bm
from cli.rl import main as rl
from rl.core.evaluation import flatten_batch, make_eval_env_factory
from rl.datasets.pointmaze import import_gymnasium_robotics
from tests.helpers import copied, stacked

DATASET_ID = "D4RL/kitchen/mixed-v2"
TASKS = ["microwave", "kettle", "bottom burner", "light switch"]  # kitchen-mixed's four tasks
EPISODES, STEPS = 2, 40
# The fixture's own env warns that its observations share one object: it copies them (copied()).
pytestmark = pytest.mark.filterwarnings("ignore:.*share an object:UserWarning")


@pytest.fixture
def kitchen_dataset():
    """Two short episodes of small random actions, episode i reset with seed i."""
    import_gymnasium_robotics()
    env = gym.make("FrankaKitchen-v1", tasks_to_complete=TASKS, max_episode_steps=450)
    rng = np.random.default_rng(0)
    episodes = []
    for episode in range(EPISODES):
        observation, _ = env.reset(seed=episode)
        frames, actions, rewards = [copied(observation)], [], []
        for _ in range(STEPS):
            action = np.clip(0.3 * rng.normal(size=9), -1, 1).astype(np.float32)
            observation, reward, *_ = env.step(action)
            frames.append(copied(observation))
            actions.append(action)
            rewards.append(reward)
        truncations = np.zeros(STEPS, bool)
        truncations[-1] = True  # cut short by the collection, as Minari records a time limit
        episodes.append({"observations": stacked(frames), "actions": np.asarray(actions),
                         "rewards": np.asarray(rewards, np.float64), "terminations": np.zeros(STEPS, bool),
                         "truncations": truncations})
    write_minari_dataset(DATASET_ID, episodes, env=env)
    env.close()
    return DATASET_ID


def test_the_evaluation_env_sees_the_layout_the_dataset_was_loaded_in(kitchen_dataset):
    data = load_transitions("kitchen-mixed")
    assert data.dataset_id == DATASET_ID
    assert (data.obs_dim, data.act_dim, len(data)) == (59 + 2 * (1 + 7 + 2 + 2), 9, EPISODES * STEPS)
    assert data.info.observation_keys[:2] == ("observation", "achieved_goal/bottom burner")
    env = make_eval_env_factory(DATASET_ID)()
    try:
        for episode in range(EPISODES):  # the same reset seeds give the same states, in the same columns
            observation, _ = env.reset(seed=episode)
            np.testing.assert_allclose(flatten_batch([observation])[0], data.observations[episode * STEPS],
                                       rtol=1e-6, atol=1e-6)
    finally:
        env.close()


def test_fit_cache_train_and_evaluate_on_kitchen(kitchen_dataset, tmp_path):
    model, cache, run = tmp_path / "score", tmp_path / "cache.npz", tmp_path / "arq"
    small = tmp_path / "small.json"  # a small network, and the fast likelihood for its calibration
    small.write_text(json.dumps({"width": 64, "blocks": 1, "default_solver": "fast"}))
    for command, arguments in (
        (bm, ["fit", "--model", "score", "--dataset", "kitchen-mixed", "--out", str(model), "--steps", "20",
              "--batch-size", "64", "--config", str(small)]),
        (bm, ["sample-cache", "--model", str(model), "--dataset", "kitchen-mixed", "--out", str(cache),
              "--num-samples", "4", "--sampler", "fast", "--likelihood", "none", "--no-progress"]),
        (rl, ["train", "arq", "--dataset", "kitchen-mixed", "--behavior", str(cache), "--steps", "10",
              "--batch-size", "32", "--eval-episodes", "1", "--no-progress", "--out", str(run)]),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = CliRunner().invoke(command, arguments)
        assert result.exit_code == 0, result.output
        # The evaluation env runs without gymnasium's env checker, whose warning about
        # FrankaKitchen's shared observation object does not apply to a rollout that copies it.
        assert not [w for w in caught if "share an object" in str(w.message)], command
    assert result.output.strip().splitlines()[-1].startswith("normalized_score: ")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset_id"] == DATASET_ID and summary["score_kind"] == "raw_return"
    assert summary["episode_length_mean"] == 450  # the recovered env's own time limit
    config = json.loads((run / "config.json").read_text())
    assert config["algo"]["q_lr"] == 1e-4  # seed 002's kitchen learning rate, chosen from the id
