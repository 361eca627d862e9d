"""Update throughput of BC, ARQ and SPOT at hopper-like shapes, against an in-run roofline.

Run by hand (not by the tests):

    .venv/bin/python benchmarks/rl_throughput.py                  # BC, ARQ (N=30), SPOT (CVAE)
    .venv/bin/python benchmarks/rl_throughput.py --seconds 10 --threads 1

Shapes: observations 17, actions 6 (hopper), a synthetic dataset of 100,000 transitions held
on the device. Each algorithm runs its own ``update(batch)`` on minibatches drawn by the
shared :class:`rl.core.buffer.DeviceBuffer` exactly as in training; per row:

* steps/s: updates per second of wall time after a warm-up;
* GFLOP/update: the floating-point operations of an update (mean over 4) as counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; elementwise work
  is not counted, so the achieved figure is a lower bound);
* achieved GFLOP/s = GFLOP/update * steps/s;
* roofline: GFLOP/s of a bare ``torch.mm`` at the update's dominant layer shape, in the same
  process (what this CPU does on that matmul now);
* fraction = achieved / roofline.

The update and the bare matmul alternate in ``--rounds`` windows (``--seconds / --rounds`` of
updates, then half that of matmuls), so load from a neighbour on a shared machine falls on
both. Each round gives a fraction; the row reports the median round (steps/s and roofline
likewise the medians) and the range of the rounds' fractions.

Networks: BC as d3rlpy 2.8.1's BCConfig (deterministic policy, 256x256 encoder, batch 100,
Adam 1e-3) and at batch 256; ARQ at its paper defaults (2 Q's of 256x256, batch 512, N = 30
cached candidates, K = 9, explicit AWR policy); SPOT at its locomotion defaults (TD3's, batch
256, and the actor dropout of 0.1 of SPOT's released code) with an (unfitted: cost does not
depend on the weights) CVAE of 750x750 and its one-sample ELBO.
Figures measured while other jobs share the CPU say so in the header line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from behavior_models.cache import SampleCache
from behavior_models.cvae import CVAEBehaviorModel, CVAEConfig
from behavior_models.data import DatasetInfo, Transitions
from rl.algos.arq import ARQConfig
from rl.algos.base import BehaviorInputs
from rl.algos.bc import BCConfig
from rl.algos.bear import BEARConfig
from rl.algos.dasco import DASCOConfig
from rl.algos.spot import SPOTConfig
from rl.algos.td3bc import TD3BCConfig
from rl.core.trainer import Run, RunConfig

OBS, ACT, SIZE = 17, 6, 100_000


def synthetic_transitions(seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    episode_length = 1000
    obs = rng.normal(size=(SIZE, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(SIZE, ACT)).astype(np.float32)
    ends = (np.arange(SIZE) % episode_length) == episode_length - 1
    info = DatasetInfo("bench/hopper-shaped-v0", OBS, ACT, SIZE // episode_length, SIZE)
    return Transitions(observations=obs, actions=act, rewards=rng.normal(size=SIZE).astype(np.float32),
                       next_observations=rng.normal(size=(SIZE, OBS)).astype(np.float32),
                       next_actions=np.roll(act, -1, 0), next_action_valid=~ends,
                       terminals=np.zeros(SIZE, bool), timeouts=ends, episode_ids=np.arange(SIZE) // episode_length,
                       timesteps=np.arange(SIZE) % episode_length, info=info)


def synthetic_cache(transitions: Transitions, n: int, seed: int = 0) -> SampleCache:
    rng = np.random.default_rng(seed)
    rows = 2 * len(transitions)
    return SampleCache(torch.as_tensor(rng.uniform(-1, 1, (rows, n, ACT)).astype(np.float32)),
                       torch.as_tensor(rng.normal(size=(rows, n)).astype(np.float32)),
                       torch.as_tensor(rng.uniform(size=(rows, n)) > 0.2), torch.arange(len(transitions)),
                       torch.arange(len(transitions), rows),
                       {"dataset_id": transitions.dataset_id, "dataset_fingerprint": transitions.fingerprint})


def matmul_rate(a: torch.Tensor, b: torch.Tensor, seconds: float) -> float:
    """GFLOP/s of ``a @ b`` over one window of ``seconds``."""
    count, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        a @ b
        count += 1
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] * count / (time.perf_counter() - tic) / 1e9


def matmul_operands(rows: int, width_in: int, width_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random [rows, in] and [in, out] operands, multiplied a few times to warm the kernel up."""
    a, b = torch.randn(rows, width_in), torch.randn(width_in, width_out)
    for _ in range(5):
        a @ b
    return a, b


def matmul_roofline(rows: int, width_in: int, width_out: int, seconds: float) -> float:
    """GFLOP/s of torch.mm at [rows, in] x [in, out], best of three windows."""
    a, b = matmul_operands(rows, width_in, width_out)
    return max(matmul_rate(a, b, seconds / 3) for _ in range(3))


def flops_per_update(run: Run, batch_size: int, generator: torch.Generator, updates: int) -> float:
    """Matmul and convolution FLOPs of one update, averaged over ``updates`` updates (FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        for _ in range(updates):
            run.algorithm.update(run.buffer.sample(batch_size, generator))
    return counter.get_total_flops() / updates


def update_rate(run: Run, batch_size: int, generator: torch.Generator, seconds: float) -> float:
    """Updates per second over one window of ``seconds`` (at least one update)."""
    count, tic = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - tic < seconds:
        run.algorithm.update(run.buffer.sample(batch_size, generator))
        count += 1
    return count / (time.perf_counter() - tic)


def measure(label: str, run: Run, batch_size: int, roofline_shape: tuple[int, int, int], seconds: float,
            rounds: int, flop_updates: int = 4) -> dict:
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        run.algorithm.update(run.buffer.sample(batch_size, generator))
    # over 4 updates: SPOT's actor steps every 2nd one (10 for the ++ variants: their gradient penalty runs every 5th)
    flops = flops_per_update(run, batch_size, generator, flop_updates)
    a, b = matmul_operands(*roofline_shape)
    steps, roofs = [], []
    for _ in range(rounds):
        roofs.append(matmul_rate(a, b, seconds / rounds / 2))
        steps.append(update_rate(run, batch_size, generator, seconds / rounds))
    fractions = [flops * rate / 1e9 / roof for rate, roof in zip(steps, roofs)]
    steps_per_second = float(np.median(steps))
    return {"label": label, "steps_per_second": steps_per_second, "gflop_per_update": flops / 1e9,
            "achieved_gflops": flops * steps_per_second / 1e9, "roofline_gflops": float(np.median(roofs)),
            "fraction": float(np.median(fractions)), "fraction_range": (min(fractions), max(fractions))}


def cpu_model() -> str:
    """The CPU's model name: the fractions depend on it, since the fixed per-update overhead weighs
    more beside a faster matmul (docs/throughput.md)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed window per algorithm")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating windows of updates and bare matmuls per row (the median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--only", default="bc-d3rlpy,bc,arq,spot,td3bc,td3bc++,bear-d3rlpy,bear-d3rlpy+vae,dasco",
                        help="comma-separated subset")
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0:
        parser.error(f"need --rounds >= 1 and --seconds > 0, got {args.rounds} and {args.seconds}")
    torch.set_num_threads(args.threads)
    transitions = synthetic_transitions()
    run_config = RunConfig(seed=0)
    rows = []
    wanted = args.only.split(",")
    load = os.getloadavg()[0]
    print(f"# hopper-like shapes obs {OBS}, act {ACT}; {args.threads} torch thread(s); load average {load:.1f} on "
          f"{os.cpu_count()} cores{' (shared: other jobs were running)' if load > 1.5 else ''}")
    print(f"# CPU: {cpu_model()}, torch {torch.__version__} kernels for {torch.backends.cpu.get_cpu_capability()}")
    if "bc-d3rlpy" in wanted:
        run = Run.build("bc", transitions, BCConfig(batch_size=100, lr=1e-3), run_config)
        rows.append(measure("BC (d3rlpy BCConfig: batch 100)", run, 100, (100, 256, 256),
                            args.seconds, args.rounds))
    if "bc" in wanted:
        run = Run.build("bc", transitions, BCConfig(), run_config)
        rows.append(measure("BC (batch 256)", run, 256, (256, 256, 256), args.seconds, args.rounds))
    if "arq" in wanted:
        config = ARQConfig()
        run = Run.build("arq", transitions, config, run_config,
                        behavior_inputs=BehaviorInputs(cache=synthetic_cache(transitions, 30)))
        rows.append(measure("ARQ (N=30, batch 512)", run, config.batch_size, (512 * 30, 256, 256),
                            args.seconds, args.rounds))
    if "spot" in wanted:
        torch.manual_seed(0)
        cvae = CVAEBehaviorModel(OBS, ACT, CVAEConfig()).requires_grad_(False).eval()
        config = SPOTConfig()
        run = Run.build("spot", transitions, config, run_config, behavior_inputs=BehaviorInputs(model=cvae))
        rows.append(measure("SPOT (CVAE 750x750, ELBO)", run, config.batch_size, (256, 750, 750),
                            args.seconds, args.rounds))
    rows += issue8_rows(wanted, transitions, run_config, args.seconds, args.rounds)
    print(f"{'update':34s} {'steps/s':>9s} {'GFLOP/upd':>10s} {'GFLOP/s':>9s} {'roofline':>9s} {'fraction':>9s} "
          f"{'rounds':>10s}")
    for row in rows:
        print(f"{row['label']:34s} {row['steps_per_second']:9.1f} {row['gflop_per_update']:10.3f} "
              f"{row['achieved_gflops']:9.1f} {row['roofline_gflops']:9.1f} {100 * row['fraction']:8.0f}% "
              f"{100 * row['fraction_range'][0]:4.0f}–{100 * row['fraction_range'][1]:.0f}%")


# ---------------------------------------------------------------------------- issue 8: TD3+BC, BEAR, DASCO
class UpdateThenFitBehavior:
    """BEAR's update followed by one fit step of its CVAE: the work of one d3rlpy BEAR step, which
    trains its VAE inside the loop (ours is fitted beforehand, so its own step excludes that)."""

    def __init__(self, algorithm, model) -> None:
        self.algorithm, self.model = algorithm, model.requires_grad_(True).train()
        self.optimizers = model.make_optimizers()

    def update(self, batch):
        metrics = self.algorithm.update(batch)
        self.model.training_step(self.model.normalize(batch.raw_observations), batch.actions, 0, self.optimizers)
        return metrics


def issue8_rows(wanted: list[str], transitions: Transitions, run_config: RunConfig, seconds: float,
                rounds: int) -> list[dict]:
    """TD3+BC(++) at its defaults; BEAR on d3rlpy 2.8.1's BEARConfig (actor and critics 256x256, VAE
    encoder/decoder 256x256 with latent 2A, 4 MMD samples, 10 target samples, batch 256); DASCO."""
    rows = []
    for name in ("td3bc", "td3bc++"):
        if name in wanted:
            config = TD3BCConfig() if name == "td3bc" else TD3BCConfig(gradient_penalty=1.0, constraint_relaxation=True)
            run = Run.build("td3bc", transitions, config, run_config)
            rows.append(measure(f"{name.upper().replace('BC', '+BC' if name == 'td3bc' else 'BC')} (batch 256)", run,
                                256, (256, 256, 256), seconds, rounds, flop_updates=10))
    for name in ("bear-d3rlpy", "bear-d3rlpy+vae"):
        if name in wanted:
            torch.manual_seed(0)
            cvae = CVAEBehaviorModel(OBS, ACT, CVAEConfig(hidden=(256, 256))).requires_grad_(False).eval()
            config = BEARConfig(mmd_samples=4, target_samples=10, warmup_steps=0)  # after the warm start
            run = Run.build("bear", transitions, config, run_config, behavior_inputs=BehaviorInputs(model=cvae))
            label = "BEAR (d3rlpy config)"
            if name.endswith("+vae"):
                run = dataclasses.replace(run, algorithm=UpdateThenFitBehavior(run.algorithm, cvae))
                label += " + VAE step"
            rows.append(measure(label, run, 256, (256 * 10, 256, 256), seconds, rounds))
    if "dasco" in wanted:
        run = Run.build("dasco", transitions, DASCOConfig(), run_config)
        rows.append(measure("DASCO (batch 256)", run, 256, (256, 256, 256), seconds, rounds))
    return rows


if __name__ == "__main__":
    main()
