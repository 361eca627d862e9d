"""How noisy is the gradient in the action of a CVAE's one-sample ELBO, SPOT's training-time penalty?

Two estimators of the same ELBO (behavior_models/cvae.py): the log importance weight of one draw,
log p(a|z,s) + log p(z) - log q(z|s,a) (the KL sampled), and log p(a|z,s) - KL(q || p) (the KL in
closed form, ``estimator="elbo"``, as SPOT's code computes it). For each, the gradient in the action
is drawn ``--draws`` times at ``--states`` dataset states, at the dataset's actions and at actions
moved off them by U(-shift, shift); the script prints the median over states of the norm of the
mean gradient and of the per-draw standard deviation.

    MINARI_DATASETS_PATH=$PWD/benchmark_output/minari .venv/bin/python benchmarks/cvae_elbo_gradient_noise.py \\
        benchmark_output/s23_spot_iw_m/models/pointmaze-medium-biased/cvae local/pointmaze-medium-biased-v0
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import behavior_models
from behavior_models.data import load_transitions


def action_gradients(model, obs: torch.Tensor, act: torch.Tensor, closed_form_kl: bool, draws: int) -> torch.Tensor:
    """[draws, B, A] gradients in the action of one-sample ELBO estimates."""
    grads = []
    for _ in range(draws):
        a = act.clone().requires_grad_(True)
        if closed_form_kl:
            value = model.log_prob(obs, a, estimator="elbo", num_samples=1)
        else:
            value = model.log_weights(model.normalize(obs), a, 1)[:, 0]
        grads.append(torch.autograd.grad(value.sum(), a)[0])
    return torch.stack(grads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("dataset")
    parser.add_argument("--states", type=int, default=256)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--shifts", default="0,0.3", help="comma-separated off-data shifts of the actions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = behavior_models.load(args.model_dir)
    data = load_transitions(args.dataset)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(data), args.states, replace=False)
    obs = torch.as_tensor(data.observations[rows])
    for shift in (float(s) for s in args.shifts.split(",")):
        noise = torch.as_tensor(rng.uniform(-shift, shift, (args.states, data.act_dim)), dtype=obs.dtype)
        act = (torch.as_tensor(data.actions[rows]) + noise).clamp(-1.0, 1.0)
        for label, closed in (("KL sampled", False), ("KL closed form", True)):
            torch.manual_seed(args.seed)
            grads = action_gradients(model, obs, act, closed, args.draws)
            mean_norm = grads.mean(0).norm(dim=-1).median()
            spread = grads.std(0).norm(dim=-1).median()
            print(f"shift {shift:.2f}  {label:15s} |mean gradient| {mean_norm:7.3f}   per-draw std {spread:7.3f}")


if __name__ == "__main__":
    main()
