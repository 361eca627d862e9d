"""Runs on the relabelled view of a PointMaze recipe's goal switches (behavior_models.data.goals)."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from behavior_models.cache import SampleCache, build_sample_cache
from behavior_models.data import load_transitions
from behavior_models.data.goals import goal_switches
from behavior_models.errors import ArtefactMismatchError, DatasetError
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from cli.bm import main as bm_main
from rl.algos.arq import ARQConfig
from rl.core.rewards import goal_switch_view
from rl.core.trainer import Run, RunConfig, load_run, settings_changes, train
from rl.datasets import make_dataset
from tests.helpers import write_goal_switch_dataset

QUIET = {"progress": False, "echo": lambda _: None}
SHORT = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
ARQ_SMALL = ARQConfig(batch_size=16, hidden=(16,), actor_hidden=(16,))


@pytest.fixture
def maze(tmp_path):
    torch.set_num_threads(1)
    dataset_id = make_dataset("pointmaze-umaze-biased", episodes=2, episode_steps=400, reference_episodes=1,
                              progress=False)
    transitions = load_transitions(dataset_id)
    model_dir = tmp_path / "gaussian"
    GaussianBehaviorModel.fit(transitions, GaussianConfig(steps=50, hidden=(16,)), out_dir=model_dir, progress=False)
    return transitions, model_dir


def test_arq_trains_on_the_relabelled_view_with_a_cache_drawn_for_it(maze, tmp_path):
    transitions, model_dir = maze
    switches = int(goal_switches(transitions).sum())
    result = CliRunner().invoke(bm_main, ["sample-cache", "--model", str(model_dir), "--dataset", "pointmaze-umaze-biased",
                                          "--out", str(tmp_path / "cache.npz"), "--num-samples", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    cache = SampleCache.load(tmp_path / "cache.npz")
    assert cache.goal_switch == "relabel"  # auto on a maze id
    # one extra row per switch: the next state with its goal kept, which no transition starts from
    assert cache.num_states == len(transitions) + transitions.info.num_episodes + switches

    run = Run.build("arq", transitions, ARQ_SMALL, SHORT, behavior=str(tmp_path / "cache.npz"))
    assert run.algo_config.goal_switch == "relabel" and run.transitions.info.goal_switch == "relabel"
    view = goal_switch_view(transitions, "relabel")  # what the buffer must hold: rewards r - 1 of the view
    np.testing.assert_array_equal(run.buffer.column("rewards").numpy(), view.rewards - 1.0)
    np.testing.assert_array_equal(run.buffer.column("raw_next_observations").numpy(), view.next_observations)
    assert (view.rewards != transitions.rewards).any()

    train("arq", transitions, tmp_path / "run", ARQ_SMALL, SHORT, behavior=str(tmp_path / "cache.npz"), **QUIET)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["algo"]["goal_switch"] == "relabel"
    assert load_run(tmp_path / "run").transitions.info.goal_switch == "relabel"  # `rl eval` opens the same view

    with pytest.raises(ArtefactMismatchError, match="'relabel' view .* --goal-switch keep"):
        Run.build("arq", transitions, ARQConfig(goal_switch="keep"), SHORT, behavior=str(tmp_path / "cache.npz"))


def test_a_run_recorded_before_the_field_existed_is_read_as_trained_on_the_recorded_data(maze, tmp_path):
    transitions, model_dir = maze
    keep_cache = tmp_path / "keep.npz"
    build_sample_cache(model_dir, transitions, keep_cache, num_samples=4, progress=False)
    config = ARQConfig(batch_size=16, hidden=(16,), actor_hidden=(16,), goal_switch="keep")
    train("arq", transitions, tmp_path / "run", config, SHORT, behavior=str(keep_cache), **QUIET)
    path = tmp_path / "run" / "config.json"
    record = json.loads(path.read_text())
    del record["algo"]["goal_switch"]  # as written before goal_switch was a field
    path.write_text(json.dumps(record))
    assert load_run(tmp_path / "run").algo_config.goal_switch == "keep"
    wanted = {**record, "algo": {**record["algo"], "goal_switch": "keep"}}
    assert settings_changes(record, wanted) == []
    wanted["algo"]["goal_switch"] = "relabel"
    assert settings_changes(record, wanted) == ["algo.goal_switch: 'keep' -> 'relabel'"]


def test_rl_train_takes_the_view_as_an_option(maze, tmp_path):
    from cli.rl import main as rl_main

    out = tmp_path / "bc"
    result = CliRunner().invoke(rl_main, ["train", "bc", "--dataset", "pointmaze-umaze-biased", "--goal-switch", "keep",
                                          "--steps", "2", "--eval-episodes", "0", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["algo"]["goal_switch"] == "keep"


def test_relabelling_a_dataset_without_an_environment_is_refused_with_the_way_out():
    data, _, _ = write_goal_switch_dataset()  # written without an env spec: no compute_reward to relabel with
    with pytest.raises(DatasetError, match="goal_switch=keep"):
        goal_switch_view(data, "relabel")
