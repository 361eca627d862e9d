"""DASCO's two generators as policies: the policy (primary generator) and the auxiliary generator.

Run by hand on finished DASCO run directories (e.g. those of ``benchmarks/offline_rl.py``):

    .venv/bin/python benchmarks/dasco_generators.py benchmark_output/offline_rl/runs/dasco/*/seed*

For each run it loads the newest checkpoint and evaluates, on the same episode seeds, the
policy (tanh of its mean) and the auxiliary generator G(s, z = 0) (seed 000 evaluates the
auxiliary generator too), and prints the normalised scores side by side.
"""

from __future__ import annotations

import argparse
import os

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="DASCO run directories")
    parser.add_argument("--episodes", type=int, default=10,
                        help="evaluation episodes per run and generator (the same episode seeds for both)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from rl.core.trainer import load_run

    print(f"# load average {os.getloadavg()[0]:.1f}; {args.episodes} episodes each, same episode seeds")
    print(f"{'run':70s} {'policy':>15s} {'aux generator':>15s}")
    for run_dir in args.runs:
        run = load_run(run_dir)
        if run.algorithm_name != "dasco" or run.algorithm.aux_generator is None:
            print(f"{run_dir:70s} skipped (not a DASCO run with an auxiliary generator)")
            continue
        cells = []
        for actor in ("policy", "aux_generator"):
            run.algorithm.set_acting(eval_actor=actor)
            result = run.evaluate(args.episodes, step=run.run_config.steps)
            cells.append(f"{result.scores.mean():6.1f} ± {result.scores.std():5.1f}")
        print(f"{run_dir:70s} {cells[0]:>15s} {cells[1]:>15s}")


if __name__ == "__main__":
    main()
