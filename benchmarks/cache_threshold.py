"""How much of a behavior model's own samples the ARQ threshold would drop.

Run by hand (not by the tests):

    .venv/bin/python benchmarks/cache_threshold.py --model DIR --dataset ID [--states 300] [--samples 10]

``bm sample-cache --likelihood none`` keeps every candidate and skips the likelihood pass (the
expensive part for the score model). This measures what that gives up: at ``--states`` random
dataset states it draws ``--samples`` candidates with their log-densities
(``sample_and_log_prob``, the same call the cache makes with ``--likelihood joint``) and prints
the fraction with log beta(a|s) >= ``--threshold`` (ARQ's e^-5 by default), and the same
fraction for the dataset's own actions at those states.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import behavior_models
from behavior_models.base import ARQ_LOG_THRESHOLD
from behavior_models.data import load_transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="a fitted model directory (bm fit)")
    parser.add_argument("--dataset", required=True, help="dataset whose states are used: alias or Minari id, on disk")
    parser.add_argument("--states", type=int, default=300,
                        help="random dataset states, drawn without replacement (at most the dataset's size)")
    parser.add_argument("--samples", type=int, default=10, help="candidates drawn per state")
    parser.add_argument("--threshold", type=float, default=ARQ_LOG_THRESHOLD, help="log-density threshold")
    parser.add_argument("--sampler", default=None, help="sampler option of the model (score model: fast, ode, pc)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of states and the sampling")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = behavior_models.load(args.model)
    transitions = load_transitions(args.dataset)
    rows = np.random.default_rng(args.seed).choice(len(transitions), min(args.states, len(transitions)), replace=False)
    obs = torch.as_tensor(transitions.observations[rows])
    options = {"sampler": args.sampler} if args.sampler else {}
    with torch.no_grad():
        _, log_probs = model.sample_and_log_prob(obs, args.samples, **options)
        data_log_probs = model.log_prob(obs, torch.as_tensor(transitions.actions[rows]))
    kept = (log_probs >= args.threshold).float()
    print(f"{args.model} on {args.dataset}: {len(rows)} states x {args.samples} samples, threshold {args.threshold:g}")
    print(f"samples kept: {100 * kept.mean():.2f}%  (states keeping none: {int((kept.sum(1) == 0).sum())}; "
          f"log-density min {log_probs.min():.2f}, median {log_probs.median():.2f})")
    print(f"dataset actions above the threshold: {100 * (data_log_probs >= args.threshold).float().mean():.2f}%")


if __name__ == "__main__":
    main()
