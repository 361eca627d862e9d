"""Where a maze policy's score comes from: reaching the goal, or staying on it.

Run by hand (not by the tests):

    .venv/bin/python benchmarks/goal_arrival.py benchmark_output/offline_rl/runs/bc/pointmaze-medium-biased/seed0 ...

The PointMaze recipes re-sample the goal on arrival (D4RL maze2d style): the one recorded step
per arrival that starts on the goal already carries the next goal and its reward (0), so as
recorded no transition shows that holding position on the goal pays (``goal_switch=relabel``,
the default on maze ids, gives those steps back their goal: behavior_models.data.goals). The
evaluation env keeps one goal per episode and pays the sparse reward on every step spent within
reach of it. For each run's final checkpoint this
rolls out deterministic episodes (reset seeds ``--seed`` + i, the benchmark's ``--final-seed``
by default) and prints how many reached the goal, the median first-arrival step, and the mean
share of the steps from first arrival on that are spent on the goal (rewarded).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rl.core.evaluation import make_eval_env_factory, rollout
from rl.core.trainer import load_run


def arrival_statistics(run_dir: str, episodes: int, seed: int) -> dict[str, float]:
    run = load_run(run_dir)
    rewards: dict[int, list[float]] = {}
    rollout(run.policy(deterministic=True), make_eval_env_factory(run.transitions.dataset_id), episodes, seed,
            on_step=lambda episode, reward: rewards.setdefault(episode, []).append(reward))
    arrivals, shares = [], []
    for episode_rewards in rewards.values():
        rewarded = np.flatnonzero(np.asarray(episode_rewards) > 0)  # steps on the goal (sparse reward), 0-based
        if len(rewarded):
            arrivals.append(rewarded[0] + 1)
            shares.append(len(rewarded) / (len(episode_rewards) - rewarded[0]))
    return {"reached": len(arrivals), "episodes": episodes,
            "median_first_arrival": float(np.median(arrivals)) if arrivals else float("nan"),
            "share_on_goal_after_arrival": float(np.mean(shares)) if shares else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (`rl train --out`)")
    parser.add_argument("--episodes", type=int, default=30, help="deterministic episodes per run")
    parser.add_argument("--seed", type=int, default=1_000_000, help="reset seed of episode 0 (episode i: seed + i)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| run | reached | median first arrival (step) | share of steps on the goal after arrival |")
    print("|---|---|---|---|")
    for run_dir in args.runs:
        stats = arrival_statistics(run_dir, args.episodes, args.seed)
        print(f"| {run_dir} | {stats['reached']}/{stats['episodes']} | {stats['median_first_arrival']:.0f} | "
              f"{stats['share_on_goal_after_arrival']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
