"""PointMaze environments and the scripted expert that D4RL's maze2d data came from.

The expert (Fu et al. 2020, D4RL, maze2d) is a waypoint planner followed by a PD controller:

1. the maze map is a grid of cells; a breadth-first search from the goal cell gives every
   free cell its number of moves to the goal (4-connected, walls excluded);
2. the waypoint is the centre of the neighbouring cell one move closer to the goal, or the
   goal itself once the ball is in the goal cell;
3. a PD controller drives the ball there: a = clip(k_p (w - x) - k_d v, -1, 1), with x and v
   the ball's position and velocity from the ``observation`` entry (x, y, vx, vy).

The planner is a pure function of the observation dict (it reads the goal from
``desired_goal``), so when the environment re-samples the goal on arrival
(``continuing_task=True, reset_target=True``) the planner simply follows the new one.

Environments (gymnasium-robotics ``PointMaze_*-v3``, sparse reward: 1 within 0.45 of the goal):

* data collection: ``continuing_task=True, reset_target=True`` and a long horizon, so one
  episode visits many goals, as D4RL's maze2d stream did;
* evaluation (stored as the dataset's eval env): ``continuing_task=True, reset_target=False``
  and the registered horizon (300 / 600 / 800 steps for UMaze / Medium / Large). The return
  is the number of steps spent at the goal, D4RL's maze2d score.

Both specs carry every constructor argument (``maze_map`` included), so
``minari.load_dataset(id).recover_environment(eval_env=True)`` rebuilds the evaluation
environment with no extra arguments.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

MAZE_ENV_IDS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}
EVAL_EPISODE_STEPS = {"umaze": 300, "medium": 600, "large": 800}  # the registered horizons (D4RL's maze2d)
GOAL_RADIUS = 0.45  # gymnasium-robotics' success / sparse-reward radius


def import_gymnasium_robotics():
    """``import gymnasium_robotics`` without the unrelated notice it prints at first import.

    On its first import gymnasium_robotics prints ``farama_notifications.notifications
    ["gymnasium_robotics"][its version]`` to stderr (for 1.2.1-1.4.2: that the AdroitHand*Dense-v1
    rewards changed), with no environment variable or option to turn it off. So the first import
    runs with stderr captured, and everything captured but that notice is written back. Later
    imports print nothing anyway. Call it before anything that makes a PointMaze env, including
    ``recover_environment`` of a PointMaze dataset, whose ``gym.make`` would import it loudly.
    """
    if "gymnasium_robotics" in sys.modules:
        return sys.modules["gymnasium_robotics"]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import gymnasium_robotics
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
    text = captured.getvalue()
    try:
        from farama_notifications import notifications

        notice = notifications.get("gymnasium_robotics", {}).get(gymnasium_robotics.__version__)
    except ImportError:
        notice = None
    if notice:
        text = text.replace(notice + "\n", "", 1)
    sys.stderr.write(text)
    return gymnasium_robotics


def _check_maze(maze: str) -> None:
    if maze not in MAZE_ENV_IDS:
        raise ValueError(f"unknown maze {maze!r}; expected one of {', '.join(MAZE_ENV_IDS)}")


def _registered_spec(maze: str):
    import gymnasium as gym

    _check_maze(maze)
    gym.register_envs(import_gymnasium_robotics())
    return gym.spec(MAZE_ENV_IDS[maze])


def env_spec(maze: str, *, continuing_task: bool, reset_target: bool, max_episode_steps: int):
    """A complete ``EnvSpec`` for a PointMaze: every kwarg spelled out, ``maze_map`` included."""
    from dataclasses import replace

    base = _registered_spec(maze)
    kwargs = dict(base.kwargs)
    kwargs.update(reward_type="sparse", continuing_task=continuing_task, reset_target=reset_target)
    return replace(base, kwargs=kwargs, max_episode_steps=int(max_episode_steps))


def data_env_spec(maze: str, episode_steps: int):
    """Where datasets are collected: the goal is re-sampled on arrival, episodes are long."""
    return env_spec(maze, continuing_task=True, reset_target=True, max_episode_steps=episode_steps)


def eval_env_spec(maze: str):
    """Where policies are scored: one fixed goal per episode, the registered horizon."""
    return env_spec(maze, continuing_task=True, reset_target=False, max_episode_steps=EVAL_EPISODE_STEPS[maze])


def make_env(spec):
    import gymnasium as gym

    gym.register_envs(import_gymnasium_robotics())
    return gym.make(spec)


def maze_of(env) -> Any:
    """The gymnasium-robotics ``Maze`` (map, cell <-> xy conversions) behind a PointMaze env."""
    return env.unwrapped.maze


@dataclass(frozen=True)
class PlannerConfig:
    """Gains of the PD waypoint controller (D4RL maze2d's values: k_p = 10, k_d = 1)."""

    p_gain: float = 10.0
    d_gain: float = 1.0


class WaypointPlanner:
    """Shortest path over the maze grid, then a PD controller towards the next waypoint.

    ``maze`` is the environment's ``Maze`` object (``maze_of(env)``), whose ``cell_xy_to_rowcol``
    and ``cell_rowcol_to_xy`` define the grid; the breadth-first distances to each goal cell
    are computed once and cached.
    """

    def __init__(self, maze: Any, config: PlannerConfig = PlannerConfig()) -> None:
        self.maze = maze
        self.config = config
        self.free = np.array([[cell != 1 for cell in row] for row in maze.maze_map], bool)
        self._distances: dict[tuple[int, int], np.ndarray] = {}
        self._centres = {
            (i, j): np.asarray(maze.cell_rowcol_to_xy(np.array([i, j])), np.float64)
            for i, j in zip(*np.nonzero(self.free))
        }

    # ----- grid -----
    def cell(self, xy: np.ndarray) -> tuple[int, int]:
        """The free cell holding ``xy`` (the nearest free cell if rounding put it in a wall)."""
        i, j = (int(v) for v in self.maze.cell_xy_to_rowcol(xy))
        if 0 <= i < self.free.shape[0] and 0 <= j < self.free.shape[1] and self.free[i, j]:
            return i, j
        return min(self._centres, key=lambda c: float(np.sum((self._centres[c] - xy) ** 2)))

    def distances(self, goal: tuple[int, int]) -> np.ndarray:
        """Moves from every cell to ``goal`` (breadth-first search; -1 for walls and unreachable cells)."""
        if goal not in self._distances:
            dist = np.full(self.free.shape, -1, np.int64)
            dist[goal] = 0
            queue = deque([goal])
            while queue:
                i, j = queue.popleft()
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    n = (i + di, j + dj)
                    if (0 <= n[0] < dist.shape[0] and 0 <= n[1] < dist.shape[1]
                            and self.free[n] and dist[n] < 0):
                        dist[n] = dist[i, j] + 1
                        queue.append(n)
            self._distances[goal] = dist
        return self._distances[goal]

    def waypoint(self, position: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The next point to steer to: the goal itself in the goal cell, else the next cell's centre."""
        here, goal_cell = self.cell(position), self.cell(goal)
        if here == goal_cell:
            return goal
        dist = self.distances(goal_cell)
        i, j = here
        # Fixed neighbour order (up, down, left, right) breaks ties deterministically.
        for n in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            if n in self._centres and dist[n] == dist[here] - 1:
                return self._centres[n]
        raise RuntimeError(f"goal cell {goal_cell} is unreachable from {here} in this maze")

    # ----- control -----
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """PD action towards the waypoint, in [-1, 1]^2."""
        state = np.asarray(obs["observation"], np.float64)
        position, velocity = state[:2], state[2:4]
        target = self.waypoint(position, np.asarray(obs["desired_goal"], np.float64))
        action = self.config.p_gain * (target - position) - self.config.d_gain * velocity
        return np.clip(action, -1.0, 1.0)

