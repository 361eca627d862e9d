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

``--density-actions`` adds two rows that need no trained policy, only that density, and a column
of every row's distance to the second of them:

* the mean of ``--density-samples`` draws of the model's sampler (for the CVAE, BCQ's sampler:
  decoder means at latents clipped to [-0.5, 0.5]), its estimate of the conditional mean that BC
  regresses to;
* its peak: a local maximum of the objective SPOT's actor ascends when the density term
  dominates (large lambda), reached by Adam on a = tanh(u) from that mean. For a CVAE the
  objective is the ELBO (SPOT's estimator) averaged over ``--density-samples`` draws, for other
  backends ``log_prob``; the score model's Adam steps follow its score (``grad_log_prob``, the
  gradient SPOT's actor follows). It is the peak gradient ascent finds from the mean, not necessarily the
  global one: a density with mass on the box's edges (a flow on clipped actions) has higher
  peaks there. Cost: ``--peak-steps`` passes over states x samples rows of the model (about two
  minutes for a 750-wide CVAE at 500 states and 16 samples on one core).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rl.algos.spot import density_options, density_penalty, resolve_density
from rl.core.behavior import load_model
from rl.core.trainer import load_run
from rl.datasets.recipes import planner_actions


def density_peak(density, raw_obs: torch.Tensor, start: torch.Tensor, samples: int, steps: int,
                 lr: float) -> torch.Tensor:
    """argmax_a of SPOT's density objective at each state, by Adam on a = tanh(u) from ``start``."""
    options = density_options(density, "elbo", samples)
    # SPOT's own choice of how the density's gradient reaches the action (the score model: its score)
    how = resolve_density("auto", density.capabilities(), density.name)
    u = torch.atanh(start.clamp(-0.999, 0.999)).requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=lr)
    with torch.enable_grad():  # main() runs without grad
        for _ in range(steps):
            # Every state's objective depends on its own action only: the sum's gradient is per state.
            loss = density_penalty(density, how, raw_obs, torch.tanh(u), options)[0].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return torch.tanh(u).detach()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of one dataset (rl train ... --out DIR); the "
                                                "first is the reference")
    parser.add_argument("--density", default=None, help="behavior-model directory (bm fit) whose -log beta_hat "
                                                        "of the actions to print")
    parser.add_argument("--density-actions", action="store_true",
                        help="add the density's conditional mean and its peak (needs --density)")
    parser.add_argument("--density-samples", type=int, default=16,
                        help="sampler draws for the density's mean; a CVAE's ELBO draws per state in the peak search")
    parser.add_argument("--peak-steps", type=int, default=300, help="Adam steps of the peak search")
    parser.add_argument("--peak-lr", type=float, default=0.01, help="Adam learning rate of the peak search (on atanh a)")
    parser.add_argument("--states", type=int, default=2000, help="dataset states")
    parser.add_argument("--seed", type=int, default=0, help="seeds the states drawn and the density's estimator")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference = load_run(args.runs[0])
    transitions = reference.transitions
    rows = np.random.default_rng(args.seed).choice(len(transitions), args.states, replace=False)
    raw_obs = transitions.observations[rows]
    obs = torch.as_tensor(raw_obs)
    data_actions = torch.as_tensor(transitions.actions[rows])
    expert = planner_actions(transitions.dataset_id, raw_obs)
    expert = None if expert is None else torch.as_tensor(expert, dtype=torch.float32)
    density = None if args.density is None else load_model(args.density, transitions, "cpu")
    if args.density_actions and density is None:
        raise SystemExit("--density-actions needs --density MODEL_DIR")

    def neg_log_density(actions: torch.Tensor) -> str:
        torch.manual_seed(args.seed)
        return f"{-density.log_prob(obs, actions).mean():12.3f}"

    rows_by_label: dict[str, torch.Tensor] = {}
    for run_dir in args.runs:
        run = reference if run_dir == args.runs[0] else load_run(run_dir)
        if run.transitions.fingerprint != transitions.fingerprint:
            raise SystemExit(f"{run_dir} was trained on {run.transitions.dataset_id}, not on {transitions.dataset_id}")
        rows_by_label[run_dir] = torch.as_tensor(run.policy(deterministic=True)(raw_obs), dtype=torch.float32)
    reference_actions = rows_by_label[args.runs[0]]
    rows_by_label["dataset actions"] = data_actions
    peak = None
    if args.density_actions:
        torch.manual_seed(args.seed)
        mean = density.sample(obs, args.density_samples).mean(dim=1)
        rows_by_label[f"density: mean of {args.density_samples} draws"] = mean
        torch.manual_seed(args.seed)
        peak = density_peak(density, obs, mean, args.density_samples, args.peak_steps, args.peak_lr)
        rows_by_label[f"density: peak ({args.peak_steps} Adam steps)"] = peak

    columns = {"|pi-a|": data_actions, "|pi-plan|": expert, "|pi-ref|": reference_actions}
    if peak is not None:
        columns["|pi-peak|"] = peak
    print(f"# {transitions.dataset_id}: {args.states} dataset states; reference run {args.runs[0]}")
    print(f"{'row':70s}" + "".join(f" {name:>10s}" for name in columns) + f" {'|pi|':>7s}"
          + (f" {'-log beta':>12s}" if density is not None else ""))
    for label, actions in rows_by_label.items():
        distances = "".join(f" {'-':>10s}" if to is None else f" {(actions - to).norm(dim=-1).mean():10.3f}"
                            for to in columns.values())
        print(f"{label:70s}{distances} {actions.norm(dim=-1).mean():7.3f}"
              + (f" {neg_log_density(actions)}" if density is not None else ""))


if __name__ == "__main__":
    main()
