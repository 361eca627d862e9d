"""Speed and accuracy of the score model's samplers and likelihood solvers (issue 5).

Run by hand (not by the tests)::

    .venv/bin/python benchmarks/score_speed.py                  # fits a model first (a few minutes)
    .venv/bin/python benchmarks/score_speed.py --model DIR      # reuse a fitted score model on the same task

Everything is measured on one model and one set of inputs, with ``--threads`` torch threads
(default 1), on whatever else the machine is running: say so next to the figures.

The task ("mix-4d"-like, as the density benchmark): states s ~ U[-1, 1]^2, actions from a
three-component Gaussian mixture in 4-D whose means move with s (std 0.08), so the analytic
log-density is known. The model has the paper's network (width 256, 3 blocks).

Printed:

1. the roofline: GFLOP/s of the network forward at a batch of ``--rows`` (>= 8192) rows with a
   shared t (the form every sampler step uses), counted as 2 x in x out per linear layer;
2. samples/s of PC-500, the adaptive probability-flow ODE (dopri5) and the fast sampler
   (DPM-Solver), with each one's network FLOP rate as a fraction of the roofline (PC is timed
   over ``--pc-time-steps`` of its 500 steps and scaled: every step costs the same);
3. log-likelihood evaluations/s and mean |error| against a tight exact solve (dopri5,
   rtol = atol = 1e-9, float64) for dopri5 + exact divergence, dopri5 + Hutchinson, the fast
   solver and the score_sde-style scipy RK45 reference; the Hutchinson probes needed for
   0.01 nats and the reference's cost at that accuracy;
4. the fast sampler against the number of steps, next to PC-500 and the dopri5 sampler:
   sample quality (mean true log-density of the samples, and of true draws for scale), the
   error of its accumulated log-likelihood against a dopri5 exact solve of the same samples,
   and the mean distance of its samples to the dopri5 ODE sampler's from the same prior draws.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from behavior_models.score.model import ScoreBehaviorModel, ScoreConfig  # noqa: E402
from behavior_models.score.sampling import fast_sample, ode_sample, pc_sample  # noqa: E402

MEANS = np.array([[0.45, 0.45, -0.45, 0.0], [-0.45, 0.0, 0.45, 0.45], [0.0, -0.45, 0.0, -0.45]])
LOGIT_W = np.array([[2.0, 0.0], [-1.0, 2.0], [-1.0, -2.0]]) * 1.5
STD = 0.08


def task_means(s):
    return MEANS[None] + 0.1 * s[:, :1, None]


def task_weights(s):
    z = s @ LOGIT_W.T
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def task_sample(s, rng):
    k = (rng.uniform(size=(len(s), 1)) > np.cumsum(task_weights(s), 1)).sum(1)
    return task_means(s)[np.arange(len(s)), k] + STD * rng.normal(size=(len(s), 4))


def task_log_density(s, a):
    comp = (-0.5 * ((a[:, None] - task_means(s)) / STD) ** 2 - math.log(STD) - 0.5 * math.log(2 * math.pi)).sum(-1)
    comp = comp + np.log(task_weights(s))
    top = comp.max(1)
    return top + np.log(np.exp(comp - top[:, None]).sum(1))


def fit(steps: int, out: Path, time_embedding_scale: float) -> ScoreBehaviorModel:
    from gymnasium import spaces

    from behavior_models.data import load_transitions, write_minari_dataset

    os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(100):
        obs = rng.uniform(-1, 1, (201, 2))
        act = np.clip(task_sample(obs[:-1], rng), -1, 1)
        episodes.append({"observations": obs.astype(np.float32), "actions": act.astype(np.float32),
                         "rewards": np.zeros(200, np.float32), "terminations": np.zeros(200, bool),
                         "truncations": np.eye(200, dtype=bool)[-1]})
    write_minari_dataset("bench/score-mix4d-v0", episodes, overwrite=True,
                         observation_space=spaces.Box(-1, 1, (2,), np.float32),
                         action_space=spaces.Box(-1, 1, (4,), np.float32))
    data = load_transitions("bench/score-mix4d-v0")
    config = ScoreConfig(steps=steps, batch_size=256, lr=1e-3, lr_final_fraction=0.01, holdout_fraction=0.0,
                         time_embedding_scale=time_embedding_scale)
    return ScoreBehaviorModel.fit(data, config, out_dir=out, force=True)


class Counted:
    """A score function that counts its calls (network evaluations)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


def timed(fn, repeat: int = 1):
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, help="a fitted score model on this task (else one is fitted)")
    parser.add_argument("--fit-steps", type=int, default=3000,
                        help="gradient steps of the fit when no fitted --model is given")
    parser.add_argument("--time-embedding-scale", type=float, default=ScoreConfig.time_embedding_scale,
                        help="for the fitted model (see score.network)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rows", type=int, default=8192, help="rows (states x samples) for the throughput figures")
    parser.add_argument("--pc-time-steps", type=int, default=25,
                        help="steps of PC-500 actually timed, scaled to the whole chain")
    parser.add_argument("--ll-rows", type=int, default=64, help="rows for the likelihood figures")
    parser.add_argument("--quality-rows", type=int, default=512,
                        help="states (one sample each) for the sample-quality figures (part 4)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the states and inputs measured (torch and numpy)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.model and (args.model / "model.json").exists():
        import behavior_models
        model = behavior_models.load(args.model)
    else:
        out = args.model or Path(tempfile.mkdtemp()) / "score"
        print(f"fitting the score model ({args.fit_steps} steps) into {out} ...")
        model = fit(args.fit_steps, out, args.time_embedding_scale)
    model.eval()
    sde, net, cfg = model.sde, model.networks[0], model.config
    rng = np.random.default_rng(args.seed)
    print(f"\nscore model: width {cfg.width}, {cfg.blocks} blocks, time embedding {cfg.time_embedding_scale:g} t, "
          f"A = {model.act_dim}, S = {model.obs_dim}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU shared with other jobs "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

    # ---------------------------------------------------------------- 1. roofline
    flops = net.flops_per_row()
    obs = torch.as_tensor(rng.uniform(-1, 1, (args.rows, 2)), dtype=torch.float32)
    norm_obs = model.normalize(obs)
    x = torch.randn(args.rows, model.act_dim)

    @torch.no_grad()
    def roofline_now() -> float:
        """GFLOP/s of the bare network forward at --rows rows, best of 3 (re-measured around each
        sampler, since the other jobs on the machine change the available CPU minute by minute)."""
        seconds, _ = timed(lambda: net(x, norm_obs, torch.tensor(0.5)), repeat=3)
        return flops * args.rows / seconds / 1e9

    roofline_now()
    first = roofline_now()
    print(f"\n1. roofline: network forward at {args.rows} rows, {flops / 1e6:.3f} MFLOP/row -> {first:.1f} GFLOP/s")

    # ---------------------------------------------------------------- 2. sampling throughput
    print(f"\n2. sampling, {args.rows} rows (fraction: the sampler's network FLOP rate over the roofline "
          "measured just before and after it)")
    print(f"   {'sampler':<22}{'samples/s':>12}{'NFE':>8}{'GFLOP/s':>9}{'roofline':>10}{'fraction':>10}")
    prior = torch.randn(args.rows, model.act_dim)

    def report(label: str, rows: int, run) -> None:
        before = roofline_now()
        score = Counted(model.score_fn(norm_obs[:rows]))
        seconds, (scale, nfe) = timed(lambda: run(score))
        after = roofline_now()
        achieved = nfe * rows * flops / (seconds / scale) / 1e9
        roof = 0.5 * (before + after)
        print(f"   {label:<22}{rows / (seconds / scale):>12.1f}{nfe:>8}{achieved:>9.1f}{roof:>10.1f}{achieved / roof:>10.1%}")

    def pc_run(score):
        _pc_partial(sde, score, prior, cfg, args.pc_time_steps)
        return args.pc_time_steps / cfg.pc_steps, 2 * cfg.pc_steps  # timed share of the chain, NFE of all of it

    report("PC-500 (scaled)", args.rows, pc_run)
    ode_rows = min(args.rows, 2048)

    def ode_run(score):
        ode_sample(sde, score, prior[:ode_rows].double(), t_end=cfg.likelihood_eps, divergence=None)
        return 1.0, score.calls

    report(f"ODE dopri5 ({ode_rows})", ode_rows, ode_run)
    for steps in (10, 20):
        def fast_run(score, steps=steps):
            fast_sample(sde, score, prior, steps=steps, t_end=cfg.likelihood_eps)
            return 1.0, score.calls

        report(f"fast, {steps} steps", args.rows, fast_run)

    # ---------------------------------------------------------------- 3. likelihood
    n = args.ll_rows
    s_np = rng.uniform(-1, 1, (n, 2))
    a_np = np.clip(task_sample(s_np, rng), -0.999, 0.999)
    obs_ll, act_ll = torch.as_tensor(s_np, dtype=torch.float32), torch.as_tensor(a_np, dtype=torch.float32)
    print(f"\n3. log-likelihood, {n} dataset-like (s, a) pairs; error = mean |log p - tight exact solve|")
    tight_time, tight = timed(lambda: model.log_prob(obs_ll, act_ll, rtol=1e-9, atol=1e-9))
    truth = task_log_density(s_np, a_np)
    print(f"   tight exact solve: {tight_time:.1f} s; its mean |error| against the analytic density "
          f"(model error, not solver error): {np.abs(tight.numpy() - truth).mean():.3f} nats")
    rows = []

    def run(label, **options):
        seconds, value = timed(lambda: model.log_prob(obs_ll, act_ll, generator=torch.Generator().manual_seed(1),
                                                      **options))
        error = (value - tight).abs()
        rows.append((label, n / seconds, float(error.mean()), float(error.max()), seconds))
        return value

    run("dopri5 exact (1e-5)")
    hutch = run("dopri5 Hutchinson x1", divergence="hutchinson")
    run("fast exact, 20 steps", solver="fast", steps=20)
    run("fast exact, 40 steps", solver="fast", steps=40)
    run("scipy RK45 Hutch. x1", solver="scipy-rk45", divergence="hutchinson")
    run("scipy RK45 exact", solver="scipy-rk45")
    print(f"   {'solver':<24}{'evals/s':>10}{'mean err':>10}{'max err':>10}")
    for label, rate, mean_err, max_err, _ in rows:
        print(f"   {label:<24}{rate:>10.2f}{mean_err:>10.4f}{max_err:>10.4f}")
    # Hutchinson: per-sample std of one probe -> probes for a 0.01-nat standard error.
    spread = float((hutch - tight).pow(2).mean().sqrt())
    probes = max(1, math.ceil((spread / 0.01) ** 2))
    reference_1 = rows[4][4]
    dopri5_exact = rows[0][4]
    print(f"   one Hutchinson probe: RMS error {spread:.3f} nats -> {probes} probes for 0.01 nats; the reference "
          f"at that accuracy costs ~{probes} x {reference_1:.1f} s = {probes * reference_1:.0f} s "
          f"(rows scale linearly), i.e. {probes * reference_1 / dopri5_exact:.0f}x dopri5 exact "
          f"({dopri5_exact:.1f} s); scipy with the exact divergence: {rows[5][4] / dopri5_exact:.1f}x")

    # ---------------------------------------------------------------- 4. quality vs steps
    q = args.quality_rows
    s_np = rng.uniform(-1, 1, (q, 2))
    obs_q = torch.as_tensor(s_np, dtype=torch.float32)
    true_draws = task_sample(s_np, rng)
    print(f"\n4. samplers on {q} states (one sample each): quality = mean analytic log-density of the samples "
          f"(true draws: {task_log_density(s_np, true_draws).mean():.3f}); LL error = mean |own log p - dopri5 "
          f"exact of the returned sample|; to ODE = mean distance to the dopri5 ODE sample of the same prior draw")
    print(f"   {'sampler':<18}{'NFE':>6}{'quality':>10}{'LL error':>10}{'to ODE':>9}{'seconds':>9}")
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    seconds, pcs = timed(lambda: model.sample(obs_q, 1, sampler="pc", generator=gen()))
    pcs = pcs[:, 0].numpy()
    print(f"   {'PC-500':<18}{1000:>6}{task_log_density(s_np, pcs).mean():>10.3f}{'-':>10}{'-':>9}{seconds:>9.1f}")
    ode_actions = None  # the same generator seed gives every sampler below the same prior draw
    for sampler, steps in [("ode", None), ("fast", 5), ("fast", 10), ("fast", 15), ("fast", 20), ("fast", 25)]:
        seconds, (actions, log_p) = timed(lambda: model.sample_and_log_prob(obs_q, 1, sampler=sampler, steps=steps,
                                                                            generator=gen()))
        exact = model.log_prob(obs_q, actions[:, 0])
        ode_actions = actions[:, 0] if sampler == "ode" else ode_actions
        label = "dopri5 ODE" if sampler == "ode" else f"fast {steps}"
        nfe = "adapt" if sampler == "ode" else str(steps + 1)
        print(f"   {label:<18}{nfe:>6}{task_log_density(s_np, actions[:, 0].numpy()).mean():>10.3f}"
              f"{float((log_p[:, 0] - exact).abs().mean()):>10.4f}"
              f"{float((actions[:, 0] - ode_actions).norm(dim=1).mean()):>9.4f}{seconds:>9.1f}")


def _pc_partial(sde, score, prior, cfg, steps: int):
    """The first ``steps`` of the 500-step PC chain (same per-step work as the full chain)."""
    times = torch.linspace(1.0, cfg.pc_t_end, cfg.pc_steps)
    return pc_sample(sde, score, prior, steps=steps, t_end=float(times[steps - 1]), snr=cfg.pc_snr,
                     langevin_step=cfg.langevin_step)


if __name__ == "__main__":
    main()
