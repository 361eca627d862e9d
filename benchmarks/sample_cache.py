"""Throughput (samples/s) and peak memory of `bm sample-cache`, per backend, on PointMaze.

Run by hand (not by the tests):

    .venv/bin/python benchmarks/sample_cache.py                      # every registered backend
    .venv/bin/python benchmarks/sample_cache.py --backends gaussian,score --score-samplers fast,ode

For each backend a model is fitted briefly in a worker process (``--fit-steps``: sampling
cost does not depend on how well a model is trained, except for adaptive ODE solvers, whose
step count grows as the learned score gets sharper); then a cache is built over the first
``--states`` transitions of the dataset in a fresh process per (backend, sampler), so that
each peak RSS is that build's own. Printed per row: states M, samples/s of the build, the
process's RSS before the build (imports and dataset loaded) and its peak RSS. Backends whose module is missing or fails to
load are listed with the error and skipped.

Peak RSS includes what glibc's malloc keeps after the model's activations are freed; run
with ``MALLOC_MMAP_THRESHOLD_=131072`` to see the cache's own footprint (one chunk plus the
output arrays).

The dataset is ``pointmaze-umaze-biased`` built by ``rl.datasets.make_dataset`` when that is
available; ``--synthetic`` uses a PointMaze-shaped stand-in instead (8-d observations:
position, velocity, achieved and desired goal; 2-d actions in [-1, 1]).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET = "pointmaze-umaze-biased"
SYNTHETIC = "bench/pointmaze-shaped-v0"
# backend -> [(label, likelihood, sampler options)]. The score model has its own samplers.
SCORE_SAMPLERS = {
    "fast": ("joint", {"sampler": "fast"}),
    "ode": ("joint", {"sampler": "ode"}),
    "pc": ("separate", {"sampler": "pc"}),
}


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_synthetic(dataset_id: str, episodes: int = 40, steps: int = 250, seed: int = 0) -> None:
    """A PointMaze-shaped dataset: a point moved by a noisy goal-seeking controller in a 2-D box."""
    import numpy as np
    from gymnasium import spaces

    from behavior_models.data import is_local, write_minari_dataset

    if is_local(dataset_id):
        return
    rng = np.random.default_rng(seed)
    buffers = []
    for _ in range(episodes):
        goal = rng.uniform(-1.5, 1.5, 2)
        pos, vel = rng.uniform(-1.5, 1.5, 2), np.zeros(2)
        obs, act = [], []
        for _ in range(steps):
            obs.append(np.concatenate([pos, vel, pos, goal]))
            action = np.clip(2.0 * (goal - pos) - 0.5 * vel + 0.3 * rng.normal(size=2), -1, 1)
            vel = np.clip(vel + 0.1 * action, -5, 5)
            pos = pos + 0.1 * vel
            act.append(action)
        obs.append(np.concatenate([pos, vel, pos, goal]))
        buffers.append({"observations": np.asarray(obs, np.float32), "actions": np.asarray(act, np.float32),
                        "rewards": np.zeros(steps, np.float32), "terminations": np.zeros(steps, bool),
                        "truncations": np.eye(steps, dtype=bool)[-1]})
    write_minari_dataset(dataset_id, buffers, observation_space=spaces.Box(-np.inf, np.inf, (8,), np.float32),
                         action_space=spaces.Box(-1, 1, (2,), np.float32))


def load_prefix(dataset: str, states: int):
    """The first ``states`` transitions (whole episodes, the last one possibly cut)."""
    import numpy as np

    from behavior_models.data import load_transitions

    data = load_transitions(dataset)
    return data.subset(np.arange(min(len(data), states)))


def fit_worker(args: argparse.Namespace) -> None:
    """Fit one backend briefly into ``args.model_dir`` (its own process: its memory is not counted)."""
    import torch

    from behavior_models.registry import backend_class

    torch.set_num_threads(args.threads)
    cls = backend_class(args.fit)
    cls.fit(load_prefix(args.dataset, args.states), cls.config_class(steps=args.fit_steps), out_dir=args.model_dir,
            progress=False)


def build_worker(args: argparse.Namespace) -> None:
    """Build one cache in a fresh process and print one JSON line with its speed and memory."""
    import numpy as np
    import torch

    from behavior_models.cache import build_sample_cache

    torch.set_num_threads(args.threads)
    data = load_prefix(args.dataset, args.states)
    likelihood, options = SCORE_SAMPLERS[args.sampler] if args.sampler else ("joint", {})
    before = rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = build_sample_cache(args.model_dir, data, Path(tmp) / "cache.npz", num_samples=args.num_samples,
                                 likelihood=likelihood, sampler_options=options, batch_states=args.batch_states,
                                 seed=0, progress=False)
        seconds = time.perf_counter() - start
        size = out.stat().st_size
        meta = json.loads(str(np.load(out, allow_pickle=False)["metadata_json"]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"sampler": args.sampler or "default", "states": meta["num_states"],
                      "samples_per_s": meta["num_states"] * args.num_samples / seconds, "seconds": seconds,
                      "rss_before_mib": before, "peak_rss_mib": peak, "file_mib": size / 2**20}))


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring's layout kept, each option's default shown."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--backends", default=None, help="comma-separated; unset: every registered backend")
    parser.add_argument("--score-samplers", default="fast,ode", help=f"of {sorted(SCORE_SAMPLERS)}")
    parser.add_argument("--states", type=int, default=2000, help="transitions used (a prefix of the dataset)")
    parser.add_argument("--pc-states", type=int, default=200, help="states for the (slow) PC sampler")
    parser.add_argument("--num-samples", type=int, default=30, help="candidates N per state (ARQ: 30)")
    parser.add_argument("--batch-states", type=int, default=256, help="states per model call (times N samples each)")
    parser.add_argument("--fit-steps", type=int, default=200, help="gradient steps of each backend's brief fit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each fit and build process")
    parser.add_argument("--synthetic", action="store_true", help="use a PointMaze-shaped stand-in dataset")
    parser.add_argument("--dataset", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fit", default=None, help=argparse.SUPPRESS)  # worker modes
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sampler", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit:
        return fit_worker(args)
    if args.build:
        return build_worker(args)

    from behavior_models.registry import BACKENDS

    if args.synthetic:
        write_synthetic(SYNTHETIC)
        dataset = SYNTHETIC
    else:
        from rl.datasets import make_dataset

        dataset = make_dataset(DATASET, progress=False)
    runs = []
    for backend in (args.backends.split(",") if args.backends else list(BACKENDS)):
        samplers = args.score_samplers.split(",") if backend == "score" else [None]
        runs += [(backend, sampler) for sampler in samplers]
    print(f"dataset {dataset}, N = {args.num_samples}, batch {args.batch_states} states, "
          f"{args.threads} thread(s), fit {args.fit_steps} steps")
    print(f"{'backend':10s} {'sampler':8s} {'states':>7s} {'samples/s':>10s} {'seconds':>8s} "
          f"{'RSS before':>10s} {'peak RSS':>9s} {'file':>7s}")
    common = ["--dataset", dataset, "--num-samples", str(args.num_samples), "--batch-states",
              str(args.batch_states), "--fit-steps", str(args.fit_steps), "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        for backend, sampler in runs:
            model_dir = Path(tmp) / backend
            fit = None if model_dir.exists() else subprocess.run(
                [sys.executable, __file__, "--fit", backend, "--model-dir", str(model_dir), "--states",
                 str(args.states), *common], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            states = args.pc_states if sampler == "pc" else args.states
            command = [sys.executable, __file__, "--build", "--model-dir", str(model_dir), "--states", str(states),
                       *common, *(["--sampler", sampler] if sampler else [])]
            run = fit if fit is not None and fit.returncode != 0 else subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if run.returncode != 0:
                reason = (run.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{backend:10s} {sampler or '-':8s} skipped: {reason[:150]}")
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{backend:10s} {row['sampler']:8s} {row['states']:7d} {row['samples_per_s']:10.0f} "
                  f"{row['seconds']:8.1f} {row['rss_before_mib']:8.0f}Mi {row['peak_rss_mib']:7.0f}Mi "
                  f"{row['file_mib']:5.1f}Mi", flush=True)

if __name__ == "__main__":
    main()
