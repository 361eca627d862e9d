import shutil
import time

import numpy as np
import pytest
from gymnasium import spaces

from behavior_models.data import ALIASES, load_transitions, recipe_for, resolve_dataset_id, write_minari_dataset
from behavior_models.data.minari_io import describe, flatten_observations, list_local_datasets
from behavior_models.errors import DatasetError, DatasetNotFoundError
from tests.helpers import write_flat_dataset


def test_flat_dataset_round_trip():
    episodes = write_flat_dataset("test/flat-v0", episode_lengths=(5, 7, 4))
    data = load_transitions("test/flat-v0")
    assert len(data) == 16 and data.obs_dim == 3 and data.act_dim == 2
    assert data.observations.dtype == np.float32 and data.terminals.dtype == bool
    np.testing.assert_array_equal(data.observations[:5], episodes[0]["observations"][:-1])
    np.testing.assert_array_equal(data.next_observations[:5], episodes[0]["observations"][1:])
    np.testing.assert_array_equal(data.actions[5:12], episodes[1]["actions"])
    assert data.info.num_episodes == 3 and data.info.num_transitions == 16
    np.testing.assert_array_equal(data.timesteps[:6], [0, 1, 2, 3, 4, 0])


def test_next_actions_align_within_episodes_and_are_invalid_at_ends():
    episodes = write_flat_dataset("test/next-v0", episode_lengths=(3, 4))
    data = load_transitions("test/next-v0")
    np.testing.assert_array_equal(data.next_action_valid, [True, True, False, True, True, True, False])
    np.testing.assert_array_equal(data.next_actions[:2], episodes[0]["actions"][1:])
    np.testing.assert_array_equal(data.next_actions[3:6], episodes[1]["actions"][1:])
    # The last step's a' must not leak the first action of the next episode.
    assert not np.allclose(data.next_actions[2], episodes[1]["actions"][0])
    np.testing.assert_array_equal(data.episode_ends, [False, False, True, False, False, False, True])


def test_terminal_is_termination_only():
    write_flat_dataset("test/done-v0", episode_lengths=(3, 4), terminated=[True, False])
    data = load_transitions("test/done-v0")
    np.testing.assert_array_equal(data.terminals, [False, False, True, False, False, False, False])
    np.testing.assert_array_equal(data.timeouts, [False, False, False, False, False, False, True])


def test_nested_dict_observations_flatten_in_documented_order():
    rng = np.random.default_rng(0)
    steps = 4
    goal_space = spaces.Dict({"microwave": spaces.Box(-9, 9, (1,), np.float64), "kettle": spaces.Box(-9, 9, (2,), np.float64)})
    obs_space = spaces.Dict({
        "desired_goal": goal_space, "achieved_goal": goal_space, "observation": spaces.Box(-9, 9, (3,), np.float64)})

    def goals():
        return {"microwave": rng.normal(size=(steps + 1, 1)), "kettle": rng.normal(size=(steps + 1, 2))}

    observations = {"observation": rng.normal(size=(steps + 1, 3)), "achieved_goal": goals(), "desired_goal": goals()}
    episode = {"observations": observations, "actions": rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
               "rewards": np.zeros(steps), "terminations": np.zeros(steps, bool),
               "truncations": np.eye(steps, dtype=bool)[-1]}
    write_minari_dataset("test/kitchenlike-v0", [episode], observation_space=obs_space,
                         action_space=spaces.Box(-1, 1, (2,), np.float32))
    data = load_transitions("test/kitchenlike-v0")
    assert data.info.observation_keys == (
        "observation", "achieved_goal/kettle", "achieved_goal/microwave", "desired_goal/kettle", "desired_goal/microwave")
    assert data.info.observation_sizes == (3, 2, 1, 2, 1)
    expected = np.concatenate([observations["observation"], observations["achieved_goal"]["kettle"],
                               observations["achieved_goal"]["microwave"], observations["desired_goal"]["kettle"],
                               observations["desired_goal"]["microwave"]], axis=1).astype(np.float32)
    np.testing.assert_allclose(data.observations, expected[:-1])
    np.testing.assert_allclose(data.next_observations, expected[1:])


def test_flatten_orders_other_top_level_keys_after_the_goal_keys():
    flat, names, sizes = flatten_observations({"zeta": np.zeros((2, 1)), "desired_goal": np.zeros((2, 2)),
                                               "alpha": np.zeros((2, 1)), "observation": np.zeros((2, 3))})
    assert names == ["observation", "desired_goal", "alpha", "zeta"]
    assert sizes == [3, 2, 1, 1] and flat.shape == (2, 7)


def test_aliases_resolve_to_minari_ids():
    assert resolve_dataset_id("kitchen-mixed") == "D4RL/kitchen/mixed-v2"
    assert resolve_dataset_id("hopper-medium") == "mujoco/hopper/medium-v0"
    assert resolve_dataset_id("door-cloned") == "D4RL/door/cloned-v2"
    assert resolve_dataset_id("antmaze-large-diverse") == "D4RL/antmaze/large-diverse-v1"
    assert resolve_dataset_id("pointmaze-umaze-noisy") == "local/pointmaze-umaze-noisy-v0"
    assert resolve_dataset_id("some/other-v3") == "some/other-v3"


# The datasets the Minari remote holds under mujoco/ (its namespace_metadata.json, and the pages
# minari.farama.org/main/datasets/mujoco/<env>): Swimmer, Reacher, Pusher and the two pendulums
# have medium and expert datasets only, no simple one.
MINARI_REMOTE_MUJOCO = {
    f"mujoco/{env}/{quality}-v0"
    for envs, qualities in (
        (("halfcheetah", "hopper", "walker2d", "ant", "humanoid"), ("simple", "medium", "expert")),
        (("swimmer", "reacher", "pusher", "invertedpendulum", "inverteddoublependulum"), ("medium", "expert")),
    )
    for env in envs for quality in qualities
}


def test_every_mujoco_alias_names_a_dataset_the_minari_remote_holds():
    """An alias of a dataset that does not exist would tell the user to `minari download` it."""
    targets = {alias.dataset_id for alias in ALIASES.values() if alias.dataset_id.startswith("mujoco/")}
    assert targets <= MINARI_REMOTE_MUJOCO, sorted(targets - MINARI_REMOTE_MUJOCO)
    with pytest.raises(DatasetNotFoundError, match="neither a known alias"):
        load_transitions("swimmer-simple")


def test_alias_loads_a_dataset_stored_under_its_target_id():
    write_flat_dataset("D4RL/kitchen/mixed-v2")
    assert load_transitions("kitchen-mixed").dataset_id == "D4RL/kitchen/mixed-v2"


def test_missing_dataset_fails_fast_with_instructions(minari_datasets_path):
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as error:
        load_transitions("kitchen-mixed")
    assert time.perf_counter() - start < 5.0
    message = str(error.value)
    assert "D4RL/kitchen/mixed-v2" in message and str(minari_datasets_path) in message
    assert "minari download D4RL/kitchen/mixed-v2" in message and "MINARI_DATASETS_PATH" in message



@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_minari_datasets_path_is_refused_naming_the_fix(monkeypatch, value):
    monkeypatch.setenv("MINARI_DATASETS_PATH", value)
    with pytest.raises(DatasetError, match="MINARI_DATASETS_PATH is set but empty: unset it"):
        load_transitions("kitchen-mixed")

def test_a_name_with_stray_spaces_resolves_as_a_recipe_too():
    # resolve_dataset_id strips the name; recipe_for must agree, or a recipe (which cannot be
    # downloaded) is neither built on first use nor named as a recipe in the error.
    assert recipe_for(" pointmaze-umaze-biased ").name == "pointmaze-umaze-biased"
    with pytest.raises(DatasetNotFoundError, match="bm datasets make pointmaze-umaze-biased") as error:
        load_transitions("pointmaze-umaze-biased ")
    assert "minari download" not in str(error.value)


def test_unknown_name_suggests_close_aliases():
    with pytest.raises(DatasetNotFoundError, match="Did you mean kitchen-mixed"):
        load_transitions("kitchen-mixd")


def test_a_mistyped_local_id_suggests_recipes_not_a_download():
    """local/ is this library's namespace: `minari download` would never find it there."""
    with pytest.raises(DatasetNotFoundError, match="Did you mean pointmaze-umaze-biased") as error:
        load_transitions("local/pointmaze-umaze-biasd-v0")
    assert "minari download" not in str(error.value) and "bm datasets make" in str(error.value)


@pytest.mark.parametrize("field", ["observations", "actions", "rewards"])
def test_non_finite_values_are_refused(field):
    def poison(episodes):
        episodes[1][field][2] = np.nan

    write_flat_dataset("test/nan-v0", mutate=poison)
    with pytest.raises(DatasetError, match=f"non-finite.*{field}.*episode 1"):
        load_transitions("test/nan-v0")


def test_a_non_finite_final_observation_is_refused():
    """An episode's last observation is only ever a next observation: its check must cover that column."""
    def poison(episodes):
        episodes[1]["observations"][-1] = np.inf

    write_flat_dataset("test/nan-last-v0", mutate=poison)
    with pytest.raises(DatasetError, match="non-finite.*next_observations.*episode 1"):
        load_transitions("test/nan-last-v0")


def _truncate_hdf5(data_dir):
    path = data_dir / "main_data.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_truncate_hdf5, lambda data_dir: (data_dir / "metadata.json").unlink()])
def test_a_partly_downloaded_dataset_gets_a_dataset_error_naming_the_fix(minari_datasets_path, damage):
    """What an interrupted `minari download` leaves; Minari's own OSError/ValueError named no fix."""
    write_flat_dataset("D4RL/door/human-v2")
    damage(minari_datasets_path / "D4RL" / "door" / "human-v2" / "data")
    with pytest.raises(DatasetError, match=r"cannot read dataset D4RL/door/human-v2.*minari download D4RL/door/human-v2 --force"):
        load_transitions("door-human")


def test_empty_dataset_is_refused():
    write_flat_dataset("test/empty-v0", episode_lengths=())
    with pytest.raises(DatasetError, match="empty"):
        load_transitions("test/empty-v0")


def test_actions_outside_the_box_are_clipped_with_a_warning():
    def push_out(episodes):
        episodes[0]["actions"][1] = [1.5, -3.0]

    write_flat_dataset("test/outside-v0", mutate=push_out)
    with pytest.warns(UserWarning, match="2 action entries lie outside"):
        data = load_transitions("test/outside-v0")
    np.testing.assert_array_equal(data.actions[1], [1.0, -1.0])
    np.testing.assert_array_equal(data.next_actions[0], [1.0, -1.0])  # a' of step 0: clipped like the action
    assert data.info.clipped_action_entries == 2


def test_fingerprint_is_content_based():
    write_flat_dataset("test/a-v0", seed=1)
    write_flat_dataset("test/b-v0", seed=1)
    write_flat_dataset("test/c-v0", seed=2)
    a, b, c = (load_transitions(f"test/{x}-v0") for x in "abc")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def _set(episode: int, key: str, index, value):
    def mutate(episodes):
        episodes[episode][key][index] = value
    return mutate


def _split_episode_1(episodes):
    """Episode 1 (7 steps) as two episodes of 3 and 4 steps that share the boundary observation: every
    per-transition array stays the same (the first part ends neither terminated nor truncated), only
    the episode ids change."""
    first, second = ({key: value[:3] for key, value in episodes[1].items()},
                     {key: value[3:] for key, value in episodes[1].items()})
    first["observations"] = episodes[1]["observations"][:4]
    episodes[1:2] = [first, second]


FINGERPRINTED = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "episode_ids")
ONE_FIELD = {  # mutation of one field of write_flat_dataset's episodes -> the Transitions arrays it changes
    "first observation": (_set(0, "observations", (0, 1), 9.0), {"observations"}),
    "last observation": (_set(2, "observations", (-1, 0), 9.0), {"next_observations"}),
    "action": (_set(1, "actions", (2, 0), 0.5), {"actions"}),
    "reward": (_set(0, "rewards", 3, 7.0), {"rewards"}),
    "termination": (_set(2, "terminations", -1, True), {"terminals"}),  # still truncated too
    "truncation": (_set(0, "truncations", -1, False), {"timeouts"}),
    "episode boundary": (_split_episode_1, {"episode_ids"}),
}


@pytest.mark.parametrize("field", ONE_FIELD)
def test_fingerprint_changes_with_each_field_alone(field):
    """Each fingerprinted array on its own changes the fingerprint; an identical rebuild keeps it."""
    mutate, changed = ONE_FIELD[field]
    write_flat_dataset("test/base-v0")
    base = load_transitions("test/base-v0")
    write_flat_dataset("test/base-v0", overwrite=True)  # rebuilt with the same content
    assert load_transitions("test/base-v0").fingerprint == base.fingerprint
    write_flat_dataset("test/one-field-v0", mutate=mutate)
    other = load_transitions("test/one-field-v0")
    assert {key for key in FINGERPRINTED
            if not np.array_equal(getattr(base, key), getattr(other, key))} == changed  # only that field differs
    assert other.fingerprint != base.fingerprint


def test_reference_scores_and_describe():
    write_flat_dataset("test/ref-v0", episode_lengths=(2, 3), ref_min_score=-1.0, ref_max_score=3.0)
    data = load_transitions("test/ref-v0")
    assert (data.info.ref_min_score, data.info.ref_max_score) == (-1.0, 3.0)
    np.testing.assert_allclose(data.info.normalized_score(np.array([1.0])), [50.0])
    summary = describe(data)
    assert summary["episodes"] == 2 and summary["transitions"] == 5
    assert summary["fingerprint"] == data.fingerprint


def test_split_by_episodes_and_state_stats():
    write_flat_dataset("test/split-v0", episode_lengths=(3, 4, 5, 6))
    data = load_transitions("test/split-v0")
    train, held = data.split_episodes(0.25, seed=0)
    assert len(train) + len(held) == len(data)
    assert not set(train.episode_ids) & set(held.episode_ids)
    assert len(np.unique(held.episode_ids)) == 1  # round(0.25 * 4)
    train, held = data.split_episodes(0.0, seed=0)  # 0 holds out nothing
    assert len(held) == 0 and len(train) == len(data)
    train, held = data.split_episodes(0.01, seed=0)  # any positive fraction: at least one episode
    assert len(np.unique(held.episode_ids)) == 1
    stats = data.state_stats()
    np.testing.assert_allclose(stats.mean, data.observations.mean(0), rtol=1e-5, atol=1e-6)
    assert np.all(stats.std > 0)


def test_list_local_datasets_skips_dot_dirs(minari_datasets_path):
    write_flat_dataset("test/listed-v0")
    # What a killed build leaves: a staging root holding a complete-looking copy.
    shutil.copytree(minari_datasets_path / "test", minari_datasets_path / ".building-1@host.x1" / "test")
    assert list_local_datasets() == ["test/listed-v0"]


def test_state_stats_add_eps_to_the_std_so_a_constant_dimension_normalises_finitely():
    """std = population std + eps, per dimension: a constant observation (a sensor that never
    changes) gets std = eps, not 0, and normalises to 0 instead of NaN."""
    def constant_first_dimension(episodes):
        for episode in episodes:
            episode["observations"][:, 0] = 2.5

    write_flat_dataset("test/constant-v0", mutate=constant_first_dimension)
    data = load_transitions("test/constant-v0")
    stats = data.state_stats(eps=1e-3)
    expected = data.observations.astype(np.float64).std(0) + 1e-3
    np.testing.assert_allclose(stats.std, expected, rtol=1e-6)
    assert stats.std[0] == pytest.approx(1e-3) and stats.mean[0] == pytest.approx(2.5)
    assert np.all(stats.normalize(data.observations)[:, 0] == 0.0)
