"""Where trained policies act at dataset states: beside the data, the planner, each other and a density.

Run by hand (not by the tests), on finished runs of one dataset:

    .venv/bin/python benchmarks/policy_actions.py REFERENCE_RUN RUN [RUN ...] [--density MODEL_DIR]

For ``--states`` dataset states (drawn once, from the first run's dataset view, with ``--seed``)
each run's deterministic action pi(s) is compared with:

* the dataset's action a at that state: mean |pi(s) - a|;
* the waypoint planner's action at that state (built-in PointMaze recipes only; the noise-free
  expert whose actions the recipes perturb): mean |pi(s) - planner(s)|;
* the first run's action: mean |pi(s) - pi_ref(s)| (put the reference, e.g. BC, first);
* and its size, mean |pi(s)|.

With ``--density DIR`` (a behavior-model directory fitted on the same dataset, e.g. the CVAE
that SPOT was trained with) it also prints the mean -log beta_hat(pi(s)|s) under that model,
with the model's own evaluation-grade ``log_prob`` (the CVAE's: the importance-weighted
estimate), and the same for the dataset's actions. Distances are Euclidean in the action box.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rl.core.behavior import load_model
from rl.core.trainer import load_run
from rl.datasets.recipes import planner_actions


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of one dataset (rl train ... --out DIR); the "
                                                "first is the reference")
    parser.add_argument("--density", default=None, help="behavior-model directory (bm fit) whose -log beta_hat "
                                                        "of the actions to print")
    parser.add_argument("--states", type=int, default=2000, help="dataset states")
    parser.add_argument("--seed", type=int, default=0, help="seeds the states drawn and the density's estimator")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference = load_run(args.runs[0])
    transitions = reference.transitions
    rows = np.random.default_rng(args.seed).choice(len(transitions), args.states, replace=False)
    raw_obs = transitions.observations[rows]
    data_actions = torch.as_tensor(transitions.actions[rows])
    expert = planner_actions(transitions.dataset_id, raw_obs)
    expert = None if expert is None else torch.as_tensor(expert, dtype=torch.float32)
    density = None if args.density is None else load_model(args.density, transitions, "cpu")

    def neg_log_density(actions: torch.Tensor) -> str:
        if density is None:
            return ""
        torch.manual_seed(args.seed)
        return f"{-density.log_prob(torch.as_tensor(raw_obs), actions).mean():12.3f}"

    def distance(actions: torch.Tensor, to: torch.Tensor | None) -> str:
        return f"{'-':>10s}" if to is None else f"{(actions - to).norm(dim=-1).mean():10.3f}"

    print(f"# {transitions.dataset_id}: {args.states} dataset states; reference run {args.runs[0]}")
    print(f"{'run':70s} {'|pi-a|':>10s} {'|pi-plan|':>10s} {'|pi-ref|':>10s} {'|pi|':>7s}"
          + (f" {'-log beta':>12s}" if density is not None else ""))
    reference_actions = None
    for run_dir in args.runs:
        run = reference if run_dir == args.runs[0] else load_run(run_dir)
        if run.transitions.fingerprint != transitions.fingerprint:
            raise SystemExit(f"{run_dir} was trained on {run.transitions.dataset_id}, not on {transitions.dataset_id}")
        actions = torch.as_tensor(run.policy(deterministic=True)(raw_obs), dtype=torch.float32)
        reference_actions = actions if reference_actions is None else reference_actions
        print(f"{run_dir:70s} {distance(actions, data_actions)} {distance(actions, expert)} "
              f"{distance(actions, reference_actions)} {actions.norm(dim=-1).mean():7.3f} {neg_log_density(actions)}")
    print(f"{'dataset actions':70s} {'0':>10s} {distance(data_actions, expert)} "
          f"{distance(data_actions, reference_actions)} {data_actions.norm(dim=-1).mean():7.3f} "
          f"{neg_log_density(data_actions)}")


if __name__ == "__main__":
    main()
