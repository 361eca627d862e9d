import numpy as np

from rl.datasets.pointmaze import (
    EVAL_EPISODE_STEPS, WaypointPlanner, data_env_spec, eval_env_spec, make_env, maze_of,
)
from rl.datasets.rollout import evaluate


def umaze_planner():
    env = make_env(eval_env_spec("umaze"))
    return env, WaypointPlanner(maze_of(env))


def test_grid_distances_match_the_umaze_by_hand():
    # U_MAZE: free cells (1,1) (1,2) (1,3) (2,3) (3,3) (3,2) (3,1) form one corridor.
    _, planner = umaze_planner()
    dist = planner.distances((3, 1))
    corridor = [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
    assert [int(dist[c]) for c in corridor] == [6, 5, 4, 3, 2, 1, 0]
    assert dist[0, 0] == -1 and dist[2, 1] == -1  # walls


def test_waypoint_is_the_next_cell_centre_then_the_goal():
    _, planner = umaze_planner()
    goal = np.array([-1.1, -0.9])  # inside cell (3, 1), bottom left
    start = np.array([-1.0, 1.0])  # centre of cell (1, 1), top left
    np.testing.assert_allclose(planner.waypoint(start, goal), [0.0, 1.0])  # cell (1, 2)
    np.testing.assert_allclose(planner.waypoint(np.array([1.0, 0.0]), goal), [1.0, -1.0])  # (2,3) -> (3,3)
    np.testing.assert_allclose(planner.waypoint(np.array([-0.9, -1.1]), goal), goal)  # in the goal cell


def test_actions_stay_in_the_box():
    _, planner = umaze_planner()
    obs = {"observation": np.array([-1.0, 1.0, 4.0, -4.0]), "desired_goal": np.array([-1.0, -1.0])}
    action = planner.act(obs)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)


def test_planner_reaches_the_umaze_goal_in_at_least_95_percent_of_episodes():
    env, planner = umaze_planner()
    result = evaluate(env, planner.act, 40, env_seed=123)
    assert result.success_rate >= 0.95, result.successes
    # Sparse reward counts the steps spent within 0.45 of the goal: reaching it early scores high.
    assert result.mean_return > 0.5 * EVAL_EPISODE_STEPS["umaze"]


def test_env_specs_carry_every_constructor_argument():
    spec = eval_env_spec("medium")
    assert spec.max_episode_steps == 600
    assert spec.kwargs["continuing_task"] is True and spec.kwargs["reset_target"] is False
    assert len(spec.kwargs["maze_map"]) == 8
    data = data_env_spec("medium", 1234)
    assert data.max_episode_steps == 1234 and data.kwargs["reset_target"] is True
