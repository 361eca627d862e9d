"""The DASCO noisy / biased behaviour policy (seed 000, Appendix B, Code Listing 1).

The listing perturbs an expert action by an amount that depends on the agent's x-position::

    NOISES   = [0.1, 0.0, 0.2, 0.05, 0.3, 0.1, 0.4, 0.2]
    BIASES   = [0.1, -0.1, 0.2, 0.0, 0.2, -0.3, 0.2, 0.0]
    POSITION = [-20.0, 0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    k = max{i : POSITION[i] <= x}
    a = clip(a_expert + N(0, 1) * NOISES[k] - BIASES[k], -1, 1)      (one normal draw per entry)

The bias is *subtracted*, equally on every action entry. The ``noisy`` recipe uses the noise
alone (bias 0); the ``biased`` recipe uses noise and bias, exactly as listed.

Mapping the edges onto PointMaze. The edges are AntMaze x-coordinates. The first edge, -20,
lies outside every maze and acts as -inf (so every position falls in some bucket). The edges
0, 4, ..., 24 are mapped linearly (proportionally) onto the PointMaze's x-range:

    x_edge = x_first + (e / 24) * (x_last - x_first),    e in {0, 4, ..., 24}

where x_first and x_last are the x-coordinates of the centres of the leftmost and rightmost free
cells. This mirrors AntMaze, whose origin x = 0 is the centre of its leftmost free cell (the
ant's start): positions left of that centre fall in bucket 0 and positions right of the last
mapped edge in bucket 7, so all eight buckets are used. For PointMaze (cells of size 1):

    UMaze   x_first, x_last = -1.0, 1.0   edges -1, -0.667, -0.333, 0, 0.333, 0.667, 1
    Medium  x_first, x_last = -2.5, 2.5   edges -2.5, -1.667, -0.833, 0, 0.833, 1.667, 2.5
    Large   x_first, x_last = -4.5, 4.5   edges -4.5, -3, -1.5, 0, 1.5, 3, 4.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISES = (0.1, 0.0, 0.2, 0.05, 0.3, 0.1, 0.4, 0.2)
BIASES = (0.1, -0.1, 0.2, 0.0, 0.2, -0.3, 0.2, 0.0)
POSITION = (-20.0, 0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0)
ANTMAZE_X_SPAN = (0.0, 24.0)  # the finite edges' span, mapped onto [x_first, x_last]


def free_cell_x_range(maze_map: list[list]) -> tuple[float, float]:
    """x of the leftmost and rightmost free-cell centres (gymnasium-robotics' coordinates, scaling 1)."""
    free = np.array([[cell != 1 for cell in row] for row in maze_map], bool)
    columns = np.nonzero(free.any(axis=0))[0]
    x_centre = free.shape[1] / 2.0
    return float(columns.min() + 0.5 - x_centre), float(columns.max() + 0.5 - x_centre)


def bucket_edges(x_first: float, x_last: float) -> np.ndarray:
    """The listing's POSITION edges in maze coordinates: -inf, then 0..24 mapped onto [x_first, x_last]."""
    low, high = ANTMAZE_X_SPAN
    finite = np.asarray(POSITION[1:], np.float64)
    mapped = x_first + (finite - low) / (high - low) * (x_last - x_first)
    return np.concatenate([[-np.inf], mapped])


@dataclass(frozen=True)
class XBucketPerturbation:
    """clip(a + N(0, noise_k^2) - bias_k, -1, 1), with k the x-bucket of the agent (Listing 1)."""

    edges: tuple[float, ...]
    noises: tuple[float, ...] = NOISES
    biases: tuple[float, ...] = BIASES

    @classmethod
    def for_maze(cls, maze_map: list[list], *, with_bias: bool) -> "XBucketPerturbation":
        edges = tuple(float(e) for e in bucket_edges(*free_cell_x_range(maze_map)))
        return cls(edges, NOISES, BIASES if with_bias else (0.0,) * len(BIASES))

    def bucket(self, x: float | np.ndarray) -> np.ndarray:
        """max{k : edges[k] <= x}; edges[0] = -inf, so every x has a bucket."""
        return np.searchsorted(np.asarray(self.edges), x, side="right") - 1

    def __call__(self, action: np.ndarray, x: float, rng: np.random.Generator) -> np.ndarray:
        k = int(self.bucket(x))
        noisy = action + rng.normal(size=action.shape) * self.noises[k] - self.biases[k] * np.ones_like(action)
        return np.clip(noisy, -1.0, 1.0)
