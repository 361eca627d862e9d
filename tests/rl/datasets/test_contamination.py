import numpy as np
import pytest

from behavior_models.errors import DatasetError
from rl.datasets.contamination import contaminate, head_transitions


def episodes(lengths, tag):
    """Flat episodes whose actions record (tag, episode, step) so every transition is traceable."""
    out = []
    for e, n in enumerate(lengths):
        steps = np.arange(n)
        out.append({
            "observations": {"observation": np.arange(n + 1, dtype=np.float64)[:, None]},
            "actions": np.stack([np.full(n, tag), np.full(n, e), steps], axis=1).astype(np.float64),
            "rewards": np.zeros(n), "terminations": np.zeros(n, bool), "truncations": np.eye(n, dtype=bool)[-1],
        })
    return out


@pytest.mark.parametrize("percent", [10, 30, 50, 70])
def test_final_percent_of_expert_replaced_by_first_random_transitions(percent):
    expert = episodes([37, 41, 29, 52], tag=0)  # N = 159
    random = episodes([23, 31, 60, 44], tag=1)  # 158 >= 0.7 * 159
    mixed, counts = contaminate(expert, random, percent)
    actions = np.concatenate([e["actions"] for e in mixed])
    n_random = percent * 159 // 100
    assert counts.total == len(actions) == 159
    assert counts.random == n_random and counts.expert == 159 - n_random
    # The first N - n_random expert transitions, in order, then the first n_random random ones.
    expected_expert = np.concatenate([e["actions"] for e in expert])[: 159 - n_random]
    expected_random = np.concatenate([e["actions"] for e in random])[:n_random]
    np.testing.assert_array_equal(actions, np.concatenate([expected_expert, expected_random]))


def test_paper_table_counts():
    # seed 001, Table 3: hopper expert-random-X from a 999,034-transition expert dataset.
    for percent, n_expert, n_random in ((10, 899_131, 99_903), (30, 699_324, 299_710), (70, 299_711, 699_323)):
        _, counts = contaminate([_lengths_only(999_034)], [_lengths_only(999_034)], percent)
        assert (counts.expert, counts.random) == (n_expert, n_random)


def _lengths_only(n):
    return {"observations": np.zeros((n + 1, 1)), "actions": np.zeros((n, 1)), "rewards": np.zeros(n),
            "terminations": np.zeros(n, bool), "truncations": np.eye(1, n, n - 1, dtype=bool)[0]}


def test_a_cut_episode_ends_truncated_with_its_observations_kept():
    kept, cut_inside = head_transitions(episodes([5, 6], tag=0), 8)
    assert cut_inside and [len(e["actions"]) for e in kept] == [5, 3]
    last = kept[-1]
    assert last["observations"]["observation"].shape == (4, 1)  # T + 1 observations
    assert last["truncations"].tolist() == [False, False, True] and not last["terminations"].any()
    kept, cut_inside = head_transitions(episodes([5, 6], tag=0), 5)  # cut on an episode boundary
    assert not cut_inside and len(kept) == 1


def test_too_small_random_dataset_is_refused():
    with pytest.raises(DatasetError, match="random dataset holds 10 transitions"):
        contaminate(episodes([100], tag=0), episodes([10], tag=1), 30)
