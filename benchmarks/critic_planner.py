"""Does a run's critic prefer the waypoint planner's action to its own policy's, and does its
action gradient point there?

Run by hand (not by the tests), on finished runs of a built-in PointMaze recipe whose algorithm
has a critic (SPOT, TD3+BC(++), BEAR(++), ARQ, DASCO):

    .venv/bin/python benchmarks/critic_planner.py RUN [RUN ...] [--states 2000]

(A run without a critic, BC, gets only the |pi - planner| column, for comparison.)

The recipes perturb a noise-free waypoint planner (``rl.datasets.recipes.planner_actions``),
which scores near the top of the normalised scale; a critic that has learnt the task should value
the planner's action at a dataset state above the policy's own. For ``--states`` dataset states
(drawn once, from the first run's dataset view, with ``--seed``) and each run's deterministic
action pi(s), per run:

* mean |pi(s) - planner(s)|;
* Q1 and min_j Q_j at pi(s), at the planner's action and at the dataset's action: the share of
  states where the planner's (the data's) action is valued above pi(s), and the mean difference;
  Q1 is the critic whose gradient SPOT's and TD3+BC's actors follow;
* the cosine between dQ1/da at pi(s) and planner(s) - pi(s): the mean, and the share of states
  where it is positive (the actor's critic step moves towards the planner);
* mean |Q1(s, pi(s))|, the scale of SPOT's and TD3+BC's Q normalisation;

over the states drawn, and again over as many states drawn from those on their goal (within the
0.45 at which PointMaze pays its reward; all of them if there are fewer), where holding still is
worth a reward per step.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rl.core.trainer import load_run
from rl.datasets.pointmaze import GOAL_RADIUS
from rl.datasets.recipes import planner_actions


def on_goal(raw_obs: np.ndarray) -> np.ndarray:
    """States whose ball (``observation[:2]``) is on its ``desired_goal`` (columns 6:8): where
    PointMaze pays its sparse reward."""
    return np.linalg.norm(raw_obs[:, :2] - raw_obs[:, 6:8], axis=1) <= GOAL_RADIUS


def critic_report(run, raw_obs: np.ndarray, data_actions: np.ndarray, planner: torch.Tensor) -> dict[str, float]:
    """The figures of the module docstring for one run at ``raw_obs``, whose planner actions are
    ``planner``; for a run without a critic (BC) only where its actions are."""
    obs = torch.as_tensor(run.stats.normalize(raw_obs), dtype=torch.float32)
    pi = torch.as_tensor(run.policy(deterministic=True)(raw_obs), dtype=torch.float32)
    report = {"|pi-plan|": float((pi - planner).norm(dim=-1).mean())}
    critic = getattr(run.algorithm, "critic", None)
    if critic is None:
        return report
    at_pi = pi.clone().requires_grad_(True)
    with torch.enable_grad():
        q_pi = critic(obs, at_pi)
        (gradient,) = torch.autograd.grad(q_pi[0].sum(), at_pi)
    q_pi = q_pi.detach()
    others = {"planner": planner, "data": torch.as_tensor(data_actions, dtype=torch.float32)}
    with torch.no_grad():
        for name, actions in others.items():
            q_other = critic(obs, actions)
            for label, difference in (("Q1", q_other[0] - q_pi[0]), ("minQ", q_other.min(0).values - q_pi.min(0).values)):
                report[f"{name}>pi {label}"] = float((difference > 0).float().mean())
                report[f"{name}-pi {label}"] = float(difference.mean())
    cosine = torch.nn.functional.cosine_similarity(gradient, planner - pi, dim=-1)
    report["cos(dQ1/da, plan-pi)"] = float(cosine.mean())
    report["cos>0"] = float((cosine > 0).float().mean())
    report["|Q1(pi)|"] = float(q_pi[0].abs().mean())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of one dataset (rl train ... --out DIR)")
    parser.add_argument("--states", type=int, default=2000, help="dataset states")
    parser.add_argument("--seed", type=int, default=0, help="seeds the states drawn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = [load_run(run_dir) for run_dir in args.runs]
    transitions = runs[0].transitions
    for run_dir, run in zip(args.runs, runs):
        if run.transitions.fingerprint != transitions.fingerprint:
            raise SystemExit(f"{run_dir} was trained on {run.transitions.dataset_id}, not on {transitions.dataset_id}")
    rng = np.random.default_rng(args.seed)
    goal_rows = np.flatnonzero(on_goal(transitions.observations))
    subsets = {"all": rng.choice(len(transitions), args.states, replace=False),
               "on goal": rng.choice(goal_rows, min(args.states, len(goal_rows)), replace=False)}
    print(f"# {transitions.dataset_id}: {args.states} dataset states (seed {args.seed}); "
          f"{len(subsets['on goal'])} of the {len(goal_rows)} on their goal")
    planner = {}  # the same states for every run: the planner is rolled over them once
    for subset_name, rows in subsets.items():
        expert = planner_actions(transitions.dataset_id, transitions.observations[rows])
        if expert is None:
            raise SystemExit(f"{transitions.dataset_id} is not a built-in PointMaze recipe: no planner to compare with")
        planner[subset_name] = torch.as_tensor(expert, dtype=torch.float32)
    reports = [(run_dir, subset_name, critic_report(run, transitions.observations[rows], transitions.actions[rows],
                                                    planner[subset_name]))
               for run_dir, run in zip(args.runs, runs) for subset_name, rows in subsets.items()]
    columns = max((list(report) for *_, report in reports), key=len)
    print(f"{'run':64s} {'states':>8s}" + "".join(f" {name:>20s}" for name in columns))
    for run_dir, subset_name, report in reports:
        print(f"{run_dir:64s} {subset_name:>8s}"
              + "".join(f" {report[name]:20.3f}" if name in report else f" {'-':>20s}" for name in columns))


if __name__ == "__main__":
    main()
