"""How narrow a conditional each score-model sampler resolves, given the exact score.

Run by hand (not by the tests), in a few seconds:

    .venv/bin/python benchmarks/pc_resolution.py

The data distribution is a 2-D Gaussian N(m, s^2 I), whose VP-SDE marginal is
N(alpha(t) m, (alpha(t)^2 s^2 + sigma(t)^2) I), so its score is known in closed form and no
network is involved: what is printed is the sampler's own error. For each data std s it prints
the sample std of PC-500 (the paper's sampler), the fast DPM-Solver (15 steps) and the
probability-flow ODE (dopri5), each from the same 2000 prior draws. A faithful sampler gives s.
"""

from __future__ import annotations

import argparse

import torch

from behavior_models.score.sampling import fast_sample, ode_sample, pc_sample
from behavior_models.score.sde import VPSDE

MODE = (0.3, -0.2)


def gaussian_score(sde: VPSDE, std: float):
    mode = torch.tensor(MODE, dtype=torch.float64)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = sde.alpha(t), sde.sigma(t)
        return -(x - alpha * mode) / (alpha**2 * std**2 + sigma**2)

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="prior draws per data std")
    parser.add_argument("--stds", default="0.003,0.005,0.01,0.02,0.05,0.1", help="comma-separated data stds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sde = VPSDE()
    print("| data std | PC-500 | fast (15 steps) | ODE (dopri5) |")
    print("|---|---|---|---|")
    for std in (float(value) for value in args.stds.split(",")):
        score = gaussian_score(sde, std)
        prior = torch.randn(args.samples, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        pc = pc_sample(sde, score, prior, steps=500, generator=torch.Generator().manual_seed(2))
        fast, _ = fast_sample(sde, score, prior)
        ode, _ = ode_sample(sde, score, prior, divergence=None)
        spreads = [float(samples.std(0).mean()) for samples in (pc, fast, ode)]
        print(f"| {std:g} | " + " | ".join(f"{spread:.4f}" for spread in spreads) + " |")


if __name__ == "__main__":
    main()
