"""How ARQ's critic ranks the fresh candidates its implicit policy (seed 002, Eq. 6) chooses from.

Run by hand (not by the tests), on finished ARQ runs:

    .venv/bin/python benchmarks/arq_implicit_ranking.py RUN_DIR [RUN_DIR ...]

For ``--states`` dataset states of each run, N fresh candidates are drawn from the behaviour
model exactly as the implicit policy draws them (``load_run(..., acting={"policy": "implicit"})``:
the cache's sampler) and scored by the trained critic, min over the two Q's. Printed per run:

* the distance to the dataset action of the candidate Eq. 6 picks deterministically (largest Q),
  of a candidate taken at random (what beta alone would act), and of the nearest candidate;
* Q(argmax candidate) - Q(s, a_dataset): how far above the data action the critic puts its pick;
* the std of Q over the candidates at a state, beside Q's own scale;
* the per-state Spearman correlation between Q and closeness to the dataset action, averaged
  over states (1: the critic ranks candidates by closeness to what the data did; 0: unrelated).

On the built-in PointMaze recipes the same figures are also printed against the waypoint
planner's action at each state (the noise-free expert whose actions the recipes perturb,
``rl.datasets.pointmaze``): whether the critic prefers the candidates closest to the expert; and
how far the dataset's own actions lie from the planner's, the spread a faithful model of the
behaviour would reproduce.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rl.core.trainer import load_run
from rl.datasets.recipes import planner_actions


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..N-1 along the last dimension (no ties in continuous samples)."""
    return values.argsort(-1).argsort(-1).float()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman correlation of ``a`` and ``b`` [R, N] -> [R]."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1))


def ranking_row(q: torch.Tensor, candidates: torch.Tensor, reference: torch.Tensor, q_reference: torch.Tensor) -> str:
    distance = (candidates - reference.unsqueeze(1)).norm(dim=-1)  # [states, N]
    pick = q.argmax(1)
    return (f"{distance.gather(1, pick[:, None]).mean():9.3f} {distance[:, 0].mean():9.3f} "
            f"{distance.min(1).values.mean():9.3f} {(q.max(1).values - q_reference).mean():9.3f} "
            f"{q.std(1).mean():7.3f} {q.mean():8.2f} {spearman(q, -distance).mean():9.3f}")


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="ARQ run directories (rl train arq --out DIR)")
    parser.add_argument("--states", type=int, default=2000, help="dataset states drawn per run")
    parser.add_argument("--candidates", type=int, default=30, help="fresh candidates per state (App. A.2: 30)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the states drawn and the model's samples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {args.states} dataset states per run, {args.candidates} fresh candidates each; distances are "
          "Euclidean in the action box; Q = min of the two critics")
    print(f"{'run':70s} {'a':>8s} {'|pick-a|':>9s} {'|rand-a|':>9s} {'|near-a|':>9s} {'Qpick-Qa':>9s} {'Q std':>7s} "
          f"{'Q mean':>8s} {'Spearman':>9s}")
    for run_dir in args.runs:
        run = load_run(run_dir, acting={"policy": "implicit", "implicit_samples": args.candidates})
        algorithm, transitions = run.algorithm, run.transitions
        rows = np.random.default_rng(args.seed).choice(len(transitions), args.states, replace=False)
        raw = torch.as_tensor(transitions.observations[rows], device=run.device)
        data_actions = torch.as_tensor(transitions.actions[rows], device=run.device)
        obs = (raw - torch.as_tensor(run.stats.mean, device=run.device)) / torch.as_tensor(run.stats.std,
                                                                                            device=run.device)
        torch.manual_seed(args.seed)
        candidates = algorithm.behavior.model.sample(raw, args.candidates, **algorithm.sampler_options())
        q = algorithm.critic(obs.unsqueeze(1).expand(-1, args.candidates, -1), candidates).min(0).values
        q_data = algorithm.critic(obs, data_actions).min(0).values
        print(f"{run_dir:70s} {'dataset':>8s} {ranking_row(q, candidates, data_actions, q_data)}")
        expert = planner_actions(transitions.dataset_id, transitions.observations[rows])
        if expert is not None:
            expert = torch.as_tensor(expert, dtype=torch.float32, device=run.device)
            q_expert = algorithm.critic(obs, expert).min(0).values
            print(f"{'':70s} {'planner':>8s} {ranking_row(q, candidates, expert, q_expert)}  "
                  f"(dataset actions: {(data_actions - expert).norm(dim=-1).mean():.3f} from the planner's)")


if __name__ == "__main__":
    main()
