"""How well the policy that produced each built-in PointMaze dataset does on its evaluation task.

Run by hand (not by the tests):

    .venv/bin/python benchmarks/behaviour_policy_score.py                 # umaze and medium
    .venv/bin/python benchmarks/behaviour_policy_score.py --mazes umaze --episodes 100

For every maze, the recipe behaviour policies (``rl.datasets.recipes.behaviour_policy``:
the waypoint planner, and the planner with DASCO's x-bucketed noise, with and without its
bias) and the uniform random policy act in the dataset's own evaluation environment, all on
the same seeded start/goal pairs. The table gives each one's success rate and its
D4RL-normalised score against the dataset's stored reference scores (``ref_min_score`` =
random, ``ref_max_score`` = planner, each from the dataset's own reference episodes).

This is the ceiling context of the offline RL tables: behaviour cloning of a near-expert
behaviour policy is near-expert too, and an offline RL method can only beat BC where the
behaviour policy leaves return on the table.
"""

from __future__ import annotations

import argparse

import numpy as np

from behavior_models.data import load_transitions
from rl.datasets import make_dataset
from rl.datasets.pointmaze import eval_env_spec, make_env
from rl.datasets.recipes import behaviour_policy
from rl.datasets.rollout import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mazes", default="umaze,medium",
                        help="comma-separated, of umaze, medium, large (pointmaze-MAZE-biased is built if missing)")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per policy")
    parser.add_argument("--seed", type=int, default=1000, help="seeds the start/goal pairs and the policies' noise")
    args = parser.parse_args()
    print(f"# {args.episodes} episodes per policy on each dataset's evaluation environment, seed {args.seed}")
    print("| maze | policy | success rate | normalised score (mean ± std over episodes) |")
    print("|---|---|---|---|")
    for maze in args.mazes.split(","):
        info = load_transitions(make_dataset(f"pointmaze-{maze}-biased", progress=False)).info
        env = make_env(eval_env_spec(maze))
        for policy in ("expert", "noisy", "biased", "random"):
            rng = np.random.default_rng(args.seed)
            result = evaluate(env, behaviour_policy(policy, env, rng), args.episodes, env_seed=args.seed)
            scores = info.normalized_score(result.returns)
            print(f"| {maze} | {policy} | {result.success_rate:.2f} | {scores.mean():.1f} ± {scores.std():.1f} |")
        env.close()


if __name__ == "__main__":
    main()
