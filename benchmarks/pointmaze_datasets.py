"""Built-in PointMaze datasets: planner success, generation times, boundary mass, x-bucket statistics.

Run by hand (not by tests)::

    .venv/bin/python benchmarks/pointmaze_datasets.py                 # everything, default sizes
    .venv/bin/python benchmarks/pointmaze_datasets.py --mazes umaze --eval-episodes 50

Datasets are built in a fresh temporary MINARI_DATASETS_PATH (``--root`` to keep them), each
from scratch with the in-process reference-score memo cleared, so every time printed is what
one ``bm datasets make NAME`` costs. A contamination dataset's time excludes its two sources,
which are built (and timed) just before it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring's layout kept, each option's default shown."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--mazes", nargs="+", default=["umaze", "medium", "large"],
                        help="space-separated, of umaze, medium, large")
    parser.add_argument("--eval-episodes", type=int, default=200, help="planner success-rate episodes per maze")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the evaluation episodes and of every dataset built")
    parser.add_argument("--root", default=None, help="MINARI_DATASETS_PATH to build in; unset: a temp dir")
    parser.add_argument("--skip-build", action="store_true", help="only the planner success table")
    args = parser.parse_args()
    os.environ["MINARI_DATASETS_PATH"] = args.root or tempfile.mkdtemp(prefix="pointmaze-bench-")

    import minari

    from behavior_models.data import describe, load_transitions
    from behavior_models.data.aliases import CONTAMINATION_PERCENTS
    from rl.datasets import make_dataset, recipes
    from rl.datasets.analysis import x_bucket_statistics
    from rl.datasets.pointmaze import WaypointPlanner, eval_env_spec, make_env, maze_of
    from rl.datasets.rollout import evaluate

    print(f"datasets root: {os.environ['MINARI_DATASETS_PATH']}")
    print(f"\n## Planner on the evaluation env ({args.eval_episodes} episodes per maze, seed {args.seed})\n")
    print("| maze | horizon | planner success | planner return | random success | random return | steps/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for maze in args.mazes:
        env = make_env(eval_env_spec(maze))
        start = time.perf_counter()
        planner = evaluate(env, WaypointPlanner(maze_of(env)).act, args.eval_episodes, env_seed=args.seed)
        rng = np.random.default_rng(args.seed)
        random = evaluate(env, lambda obs: rng.uniform(-1, 1, 2), args.eval_episodes, env_seed=args.seed)
        steps = 2 * args.eval_episodes * env.spec.max_episode_steps
        print(f"| {maze} | {env.spec.max_episode_steps} | {planner.success_rate:.3f} | {planner.mean_return:.1f} "
              f"| {random.success_rate:.3f} | {random.mean_return:.1f} | {steps / (time.perf_counter() - start):.0f} |")
    if args.skip_build:
        return

    print("\n## Recipes at default sizes (each from scratch)\n")
    print("| dataset | transitions | seconds | return/episode | ref min | ref max | boundary fraction | fingerprint |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    names = []
    for maze in args.mazes:
        names += [f"pointmaze-{maze}-{p}" for p in ("expert", "noisy", "biased", "random")]
        names += [f"pointmaze-{maze}-expert-random-{x}" for x in CONTAMINATION_PERCENTS]
    for name in names:
        recipes._REFERENCE_SCORES.clear()
        start = time.perf_counter()
        dataset_id = make_dataset(name, seed=args.seed, progress=False)
        seconds = time.perf_counter() - start
        summary = describe(load_transitions(dataset_id))
        print(f"| {name} | {summary['transitions']} | {seconds:.1f} | {summary['return_mean']:.1f} "
              f"| {summary['ref_min_score']:.1f} | {summary['ref_max_score']:.1f} "
              f"| {summary['action_boundary_fraction']:.4f} | {summary['fingerprint']} |", flush=True)

    name = f"pointmaze-{args.mazes[0]}-biased"
    first = load_transitions(name).fingerprint
    recipes._REFERENCE_SCORES.clear()
    again = load_transitions(make_dataset(name, seed=args.seed, progress=False, overwrite=True)).fingerprint
    print(f"\nDeterminism: {name} rebuilt with seed {args.seed}: {first} then {again} -> "
          f"{'identical' if first == again else 'DIFFERENT'}")

    from rl.datasets.storage import read_episodes

    for maze in args.mazes:
        for policy in ("noisy", "biased"):
            episodes = read_episodes(minari.load_dataset(f"local/pointmaze-{maze}-{policy}-v0"))
            print(f"\n## pointmaze-{maze}-{policy}: residual a - a_expert per x-bucket "
                  "(expected = closed-form clipped normal)\n")
            print("| bucket | x range | noise | bias | count | mean | expected mean | std | expected std "
                  "| boundary fraction |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for row in x_bucket_statistics(episodes, maze, policy):
                span = f"[{row['x_from']:.3g}, {row['x_to']:.3g})"
                if row["count"] == 0:
                    print(f"| {row['bucket']} | {span} | {row['noise']} | {row['bias']} | 0 | | | | | |")
                    continue
                print(f"| {row['bucket']} | {span} | {row['noise']} | {row['bias']} | {row['count']} "
                      f"| {row['residual_mean']:+.4f} | {row['expected_mean']:+.4f} | {row['residual_std']:.4f} "
                      f"| {row['expected_std']:.4f} | {row['boundary_fraction']:.3f} |")


if __name__ == "__main__":
    main()
