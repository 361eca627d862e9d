"""Reference throughput of d3rlpy 2.8.1's BC (and TD3+BC) at the hopper-like shapes of
``benchmarks/rl_throughput.py``, for the comparison in that benchmark.

d3rlpy is not a dependency of this library: run this with an interpreter that has it, e.g.

    python -m venv /tmp/d3 && /tmp/d3/bin/pip install torch==2.13.0 d3rlpy==2.8.1
    /tmp/d3/bin/python benchmarks/d3rlpy_reference.py --steps 2000

It times ``algo.fit`` on a synthetic 100,000-transition dataset (obs 17, act 6) with logging
and checkpoints off, i.e. d3rlpy's own minibatch sampling plus its update, as our steps/s
also includes ours. Default configs: BCConfig (batch 100, deterministic policy, 256x256),
TD3PlusBCConfig (batch 256), BEARConfig (batch 256; ``--bear-warmup-steps 0`` to time its
update after the warm start, the work that ``rl_throughput.py``'s BEAR rows time).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000,
                        help="timed training steps per algorithm (after a 20-step warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--algos", default="bc,td3bc",
                        help="comma-separated, of bc, td3bc, bear (d3rlpy's default configs)")
    parser.add_argument("--bear-warmup-steps", type=int, default=None,
                        help="BEARConfig.warmup_steps; d3rlpy's default (40,000) times only the warm start, "
                             "whose actor skips the Q term. 0 times the full update, as rl_throughput's BEAR rows do")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import d3rlpy
    from d3rlpy.logging import NoopAdapterFactory

    rng = np.random.default_rng(0)
    size, obs_dim, act_dim = 100_000, 17, 6
    terminals = np.zeros(size)
    timeouts = (np.arange(size) % 1000) == 999
    dataset = d3rlpy.dataset.MDPDataset(rng.normal(size=(size, obs_dim)).astype(np.float32),
                                        rng.uniform(-1, 1, (size, act_dim)).astype(np.float32),
                                        rng.normal(size=size).astype(np.float32), terminals, timeouts)
    bear_options = {} if args.bear_warmup_steps is None else {"warmup_steps": args.bear_warmup_steps}
    # BEAR at its defaults otherwise: VAE 256x256, 4 MMD and 10 target samples, its VAE trained in the update.
    configs = {"bc": d3rlpy.algos.BCConfig(), "td3bc": d3rlpy.algos.TD3PlusBCConfig(),
               "bear": d3rlpy.algos.BEARConfig(**bear_options)}
    print(f"# d3rlpy {d3rlpy.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}; "
          f"torch {torch.__version__} kernels for {torch.backends.cpu.get_cpu_capability()}")
    for name in args.algos.split(","):
        algo = configs[name].create(device="cpu:0")
        algo.fit(dataset, n_steps=20, n_steps_per_epoch=20, show_progress=False, logger_adapter=NoopAdapterFactory(),
                 save_interval=10**9)  # builds the networks; warm-up
        tic = time.perf_counter()
        algo.fit(dataset, n_steps=args.steps, n_steps_per_epoch=args.steps, show_progress=False,
                 logger_adapter=NoopAdapterFactory(), save_interval=10**9)
        print(f"{name}: {args.steps / (time.perf_counter() - tic):.1f} steps/s (batch {configs[name].batch_size})")


if __name__ == "__main__":
    main()
