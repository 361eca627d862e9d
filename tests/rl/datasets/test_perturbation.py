import numpy as np
import pytest

from rl.datasets.analysis import clipped_normal_moments
from rl.datasets.perturbation import XBucketPerturbation, bucket_edges, free_cell_x_range

U_MAZE = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
# Seed 000, Appendix B, Code Listing 1, copied here rather than imported: the test checks the
# library's tables as well as its use of them.
LISTING_NOISES = [0.1, 0.0, 0.2, 0.05, 0.3, 0.1, 0.4, 0.2]
LISTING_BIASES = [0.1, -0.1, 0.2, 0.0, 0.2, -0.3, 0.2, 0.0]


def test_edges_map_antmaze_0_to_24_onto_the_free_cell_centres():
    assert free_cell_x_range(U_MAZE) == (-1.0, 1.0)
    edges = bucket_edges(-1.0, 1.0)
    assert edges[0] == -np.inf  # the listing's -20 acts as -inf
    np.testing.assert_allclose(edges[1:], np.linspace(-1.0, 1.0, 7))


def test_bucket_is_the_last_edge_at_or_below_x():
    perturb = XBucketPerturbation.for_maze(U_MAZE, with_bias=True)
    xs = np.array([-1e6, -1.0 - 1e-9, -1.0, -0.5, 0.0, 0.99, 1.0, 50.0])
    np.testing.assert_array_equal(perturb.bucket(xs), [0, 0, 1, 2, 4, 6, 7, 7])


@pytest.mark.parametrize("with_bias", [False, True])
def test_perturbation_has_the_listed_noise_and_subtracted_bias(with_bias):
    perturb = XBucketPerturbation.for_maze(U_MAZE, with_bias=with_bias)
    rng = np.random.default_rng(0)
    centres = [-1.2, -0.8, -0.5, -0.1, 0.1, 0.5, 0.8, 1.2]  # one x per bucket
    n = 4000
    expert = np.array([0.3, -0.2])  # not zero: a perturbation that dropped the expert's action would show
    for k, x in enumerate(centres):
        samples = np.stack([perturb(expert, x, rng) for _ in range(n)])
        bias = LISTING_BIASES[k] if with_bias else 0.0
        for dim in range(2):  # the analytic moments account for the clipping to [-1, 1]
            mean, var = clipped_normal_moments(np.array(expert[dim] - bias), LISTING_NOISES[k])
            column = samples[:, dim]
            assert abs(column.mean() - mean) < 5 * np.sqrt(var / n) + 1e-12
            assert abs(column.std() - np.sqrt(var)) < 0.05 * np.sqrt(var) + 1e-12


def test_clipped_normal_moments_against_monte_carlo():
    rng = np.random.default_rng(1)
    for mean, std in ((0.9, 0.3), (-0.95, 0.4), (0.0, 0.05), (1.3, 0.2)):
        y = np.clip(mean + std * rng.normal(size=400_000), -1, 1)
        expected, variance = clipped_normal_moments(np.array(mean), std)
        assert abs(y.mean() - expected) < 5 * y.std() / np.sqrt(y.size) + 1e-9
        assert abs(y.var() - variance) < 0.02 * variance + 1e-9
