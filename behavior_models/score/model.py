"""The score behavior model: a conditional VP-SDE (seed 002, Sec. 4.3 and App. A.2).

beta(a|s) is represented by a noise-prediction network eps_theta(a_t, s, t) trained by denoising
score matching, ``loss = ||eps_theta(alpha(t) a + sigma(t) z, s, t) - z||^2`` with
t ~ U(``train_t_min``, 1) and z ~ N(0, I) (Song et al. 2021, Eq. 7 with the noise
parameterisation); the score is -eps_theta / sigma(t). The EMA of the weights (0.999, kept by
the generic fit loop) is what sampling and likelihood use.

* ``log_prob(obs, act, solver="dopri5"|"scipy-rk45"|"fast", divergence="exact"|"hutchinson")``:
  the exact log-density log p_eps(a|s) at eps = ``likelihood_eps`` by the probability-flow ODE
  (``score.likelihood``); ``"fast"`` is the DPM-Solver approximation (``score.sampling``).
  ``probes=k`` averages k Hutchinson probes.
* ``sample(obs, n, sampler="pc"|"ode"|"fast")``: the predictor-corrector sampler of the paper,
  the adaptive probability-flow ODE, or the few-step DPM-Solver.
* ``sample_and_log_prob(obs, n, sampler="ode"|"fast")``: one solve gives samples and log-probs.
* ``grad_log_prob(obs, act)``: the score at t = ``grad_t``, one network call per member.

**Boundary (+-1).** The fit sees actions clipped to [-1 + delta, 1 - delta] (``boundary_delta``),
and ``log_prob``/``grad_log_prob`` clamp their actions to the same box, so an action exactly on
the boundary is scored like its clipped neighbour (the density over R^A is unbounded there).
Samples are clipped to [-1, 1]; ``sample_and_log_prob`` re-scores every sample that lies
outside [-1 + delta, 1 - delta] (by the same solver family), so the returned log-probs are
those ``log_prob`` gives for the returned actions.

**Ensembles** (``ensemble=k``, seed 002 Table A.1): k networks, each trained on its own share of
every minibatch, acting as the uniform mixture (1/k) sum_j p_j(a|s): a sample comes from a
uniformly chosen member, ``log_prob`` is the log-mean-exp of the members' log-densities
(k solves). ``grad_log_prob`` averages the members' scores: that is the score of their
normalised geometric mean, equal to the mixture's score where the members agree, and it keeps
the one-call cost (the exact mixture score would need every member's density).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from behavior_models.base import BehaviorModel, BehaviorModelConfig
from behavior_models.errors import ConfigError, require_at_least
from behavior_models.nets import adam
from behavior_models.score.likelihood import ScoreFn, log_likelihood, rademacher
from behavior_models.score.network import NoiseEnsemble
from behavior_models.score.sampling import fast_log_likelihood, fast_sample, ode_sample, pc_sample
from behavior_models.score.sde import VPSDE

SAMPLERS = ("pc", "ode", "fast")
SOLVERS = ("dopri5", "scipy-rk45", "fast")


@dataclass(frozen=True)
class ScoreConfig(BehaviorModelConfig):
    # Training (seed 002, App. A.2): Adam 1e-4, batch 512, EMA 0.999, constant learning rate.
    steps: int = 300_000  # seed 002 Table A.1 uses 150K-1M by dataset (300K: Kitchen, Adroit)
    batch_size: int = 512  # split evenly among the ensemble members
    lr: float = 1e-4
    ema_decay: float = 0.999
    lr_final_fraction: float = 1.0  # 1.0 = no decay, as the paper
    train_t_min: float = 1e-5  # DSM times t ~ U(train_t_min, 1)
    # The VP-SDE.
    beta_min: float = 0.1
    beta_max: float = 20.0
    # The network (seed 002, App. A.2) and the ensemble size (Table A.1: 1 or 3).
    width: int = 256
    blocks: int = 3
    ensemble: int = 1
    time_embedding_scale: float = 1000.0  # sinusoidal embedding of scale * t (see score.network)
    # Sampling.
    default_sampler: str = "pc"  # "pc" | "ode" | "fast"
    pc_steps: int = 500
    pc_snr: float = 0.16
    pc_t_end: float = 1e-3
    pc_corrector_steps: int = 1
    # Langevin step size: "annealed" (default, 2 alpha_i snr^2 sigma(t)^2), "per-sample" or
    # "batch" (score_sde's); see score.sampling.pc_sample for why the default deviates.
    langevin_step: str = "annealed"
    fast_steps: int = 20  # DPM-Solver steps (network evaluations; +1 with the log-likelihood)
    fast_order: int = 3
    # Likelihood: the probability-flow ODE from likelihood_eps to 1.
    likelihood_eps: float = 1e-5
    default_solver: str = "dopri5"  # "dopri5" | "scipy-rk45" | "fast"
    default_divergence: str = "exact"  # "exact" | "hutchinson"
    ode_rtol: float = 1e-5
    ode_atol: float = 1e-5
    # Integrate the ODEs (dopri5, scipy, fast) with a float64 state, as the scipy reference does;
    # the network still runs in the model's dtype. Needed for tolerances below ~1e-6.
    ode_float64: bool = True
    # Held-out points for the calibrated threshold (the base default is 4096): each costs an
    # exact dopri5 solve, minutes per thousand points on a CPU at A ~ 10.
    calibration_points: int = 1024
    # grad_log_prob: the score at this small t (one network call). Not 1e-3 (the sampler's end
    # time): DSM's weighting lambda(t) = sigma(t)^2 leaves the smallest t learnt last, and on
    # tests/behavior_models/score/test_model.py's analytic task the score's size at 1e-3 was
    # 1.69x / 1.55x / 1.11x the truth after 6k / 12k / 20k steps, at 3e-3 1.01x / 0.99x / 0.95x
    # (direction right at both: cosine 0.998). The diffusion at 3e-3 (sigma_t = 0.02) moves
    # the score of a std-0.1 action by ~4%.
    grad_t: float = 3e-3
    # bf16 autocast of the PC sampler's network calls, on CUDA only (ignored on CPU, where it
    # is ~100x slower than fp32). Likelihood solves always run in the input dtype.
    cuda_bf16_sampling: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [("default_sampler", self.default_sampler, SAMPLERS), ("default_solver", self.default_solver, SOLVERS),
                  ("default_divergence", self.default_divergence, ("exact", "hutchinson")),
                  ("langevin_step", self.langevin_step, ("annealed", "per-sample", "batch"))]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
        require_at_least(self, {"pc_steps": 1, "fast_steps": 1, "fast_order": 1, "width": 1, "blocks": 0,
                                "pc_corrector_steps": 0})
        if self.fast_order > 3:
            raise ConfigError(f"fast_order must be 1, 2 or 3 (the DPM-Solver orders implemented), got {self.fast_order}")
        if self.ensemble < 1 or self.batch_size < self.ensemble:
            raise ConfigError(f"ensemble must be >= 1 and <= batch_size, got {self.ensemble} (batch {self.batch_size})")
        # At t = 0 the perturbation's sigma(t) is 0, and the score (-eps / sigma) divides by it.
        outside = [f"{name}={getattr(self, name)}" for name in ("train_t_min", "likelihood_eps", "pc_t_end", "grad_t")
                   if not 0.0 < getattr(self, name) < 1.0]
        if outside:
            raise ConfigError(f"{', '.join(outside)}: these diffusion times must be in (0, 1)")


class ScoreBehaviorModel(BehaviorModel):
    name = "score"
    config_class = ScoreConfig
    log_prob_kind = "exact"  # up to the ODE solver's tolerance; "fast" is an approximation
    differentiable_log_prob = False  # the ODE solve runs without autograd; use grad_log_prob
    native_grad_log_prob = True
    reparameterized_sample = False

    config: ScoreConfig

    def __init__(self, obs_dim: int, act_dim: int, config: ScoreConfig) -> None:
        super().__init__(obs_dim, act_dim, config)
        self.sde = VPSDE(config.beta_min, config.beta_max)
        self.networks = NoiseEnsemble(act_dim, obs_dim, config.width, config.blocks, config.ensemble,
                                      config.time_embedding_scale)

    # ------------------------------------------------------------------ the score
    def score_fn(self, obs: Tensor, member: int = 0, low_precision: bool = False) -> ScoreFn:
        """The score s(x, t) = -eps_theta(x, obs, t) / sigma(t) of one member, rows bound to ``obs``."""
        network = self.networks[member]
        use_bf16 = low_precision and self.config.cuda_bf16_sampling and obs.device.type == "cuda"

        def score(x: Tensor, t: Tensor) -> Tensor:
            context = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
            with context:
                eps = network(x.to(obs.dtype), obs, t.to(obs.dtype))
            return -eps.to(x.dtype) / self.sde.sigma(t)

        return score

    def _clamp(self, act: Tensor) -> Tensor:
        delta = self.config.boundary_delta
        return act.clamp(-1.0 + delta, 1.0 - delta)

    @torch.no_grad()
    def _grad_log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """The score at t = grad_t (a value, like the autograd gradient of the other backends)."""
        t = act.new_full((), self.config.grad_t)  # filled on the device: no host-to-device copy per call
        act = self._clamp(act)
        scores = [self.score_fn(obs, j)(act, t) for j in range(len(self.networks))]
        return scores[0] if len(scores) == 1 else torch.stack(scores).mean(0)

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def _log_prob(self, obs: Tensor, act: Tensor, solver: str | None = None, divergence: str | None = None,
                  probes: int = 1, rtol: float | None = None, atol: float | None = None, steps: int | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
        cfg = self.config
        solver = solver or cfg.default_solver
        divergence = divergence or cfg.default_divergence
        if solver not in SOLVERS:
            raise ConfigError(f"solver must be one of {SOLVERS}, got {solver!r}")
        steps, rtol, atol = _checked_steps(steps, cfg.fast_steps), _or_default(rtol, cfg.ode_rtol), _or_default(atol, cfg.ode_atol)
        if rtol <= 0 or atol <= 0:  # atol = 0 stalls dopri5 on the log-det state, which starts at 0
            raise ConfigError(f"need rtol > 0 and atol > 0, got rtol={rtol}, atol={atol}")
        if probes < 1 or (probes > 1 and divergence != "hutchinson"):
            raise ConfigError(f"probes={probes}: averaging probes needs divergence='hutchinson' and probes >= 1")
        out_dtype = act.dtype
        act = self._clamp(act).to(self._ode_dtype(act))
        if probes > 1:  # each row repeated once per probe: same path, independent divergence estimates
            obs, act = obs.repeat_interleave(probes, 0), act.repeat_interleave(probes, 0)
        probe = (rademacher(tuple(act.shape), device=act.device, dtype=act.dtype, generator=generator)
                 if divergence == "hutchinson" else None)
        per_member = []
        for j in range(len(self.networks)):
            score = self.score_fn(obs, j)
            if solver == "fast":
                per_member.append(fast_log_likelihood(self.sde, score, act, eps=cfg.likelihood_eps,
                                                      steps=steps, order=cfg.fast_order,
                                                      divergence=divergence, probe=probe))
            else:
                per_member.append(log_likelihood(self.sde, score, act, eps=cfg.likelihood_eps, solver=solver,
                                                 divergence=divergence, rtol=rtol, atol=atol, probe=probe))
        # Average each member's probes before the mixture's logsumexp: the probe average is what is
        # unbiased, and the convex logsumexp of single-probe estimates would be biased upward.
        per_member = [member.reshape(-1, probes).mean(1) for member in per_member]
        log_p = per_member[0] if len(per_member) == 1 else (
            torch.logsumexp(torch.stack(per_member), 0) - math.log(len(per_member)))
        return log_p.to(out_dtype)

    def _ode_dtype(self, like: Tensor) -> torch.dtype:
        return torch.float64 if self.config.ode_float64 else like.dtype

    # ------------------------------------------------------------------ sampling
    def _run_sampler(self, obs: Tensor, sampler: str, with_log_prob: bool, steps: int | None,
                     generator: torch.Generator | None, member: int = 0) -> tuple[Tensor, Tensor | None]:
        """Samples (one per row of ``obs``) from one member, and their log-probs when asked (ode/fast)."""
        cfg = self.config
        dtype = obs.dtype if sampler == "pc" else self._ode_dtype(obs)
        x = self.sde.prior_sample((obs.shape[0], self.act_dim), device=obs.device, dtype=dtype, generator=generator)
        divergence = cfg.default_divergence if with_log_prob else None
        probe = (rademacher(tuple(x.shape), device=x.device, dtype=x.dtype, generator=generator)
                 if divergence == "hutchinson" else None)
        if sampler == "pc":
            score = self.score_fn(obs, member, low_precision=True)
            return pc_sample(self.sde, score, x, steps=_checked_steps(steps, cfg.pc_steps), snr=cfg.pc_snr, t_end=cfg.pc_t_end,
                             corrector_steps=cfg.pc_corrector_steps, langevin_step=cfg.langevin_step,
                             generator=generator), None
        score = self.score_fn(obs, member)
        if sampler == "ode":
            x, log_p = ode_sample(self.sde, score, x, t_end=cfg.likelihood_eps, divergence=divergence, probe=probe,
                                  rtol=cfg.ode_rtol, atol=cfg.ode_atol)
        elif sampler == "fast":
            x, log_p = fast_sample(self.sde, score, x, steps=_checked_steps(steps, cfg.fast_steps), order=cfg.fast_order,
                                   t_end=cfg.likelihood_eps, divergence=divergence, probe=probe)
        else:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        return x.to(obs.dtype), None if log_p is None else log_p.to(obs.dtype)

    def _members_of(self, rows: int, device: torch.device, generator: torch.Generator | None) -> list[Tensor]:
        """Row indices drawn by each ensemble member (uniform mixture weights)."""
        choice = torch.randint(len(self.networks), (rows,), device=device, generator=generator)
        return [torch.nonzero(choice == j).squeeze(1) for j in range(len(self.networks))]

    @torch.no_grad()
    def _sample(self, obs: Tensor, n: int, sampler: str | None = None, steps: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        sampler = sampler or self.config.default_sampler
        obs = obs.repeat_interleave(n, 0)
        if len(self.networks) == 1:
            x, _ = self._run_sampler(obs, sampler, False, steps, generator)
        else:
            x = obs.new_empty(obs.shape[0], self.act_dim)
            for j, rows in enumerate(self._members_of(obs.shape[0], obs.device, generator)):
                if len(rows):
                    x[rows] = self._run_sampler(obs[rows], sampler, False, steps, generator, member=j)[0]
        return x.reshape(-1, n, self.act_dim)

    @torch.no_grad()
    def sample_and_log_prob(self, obs: Tensor, n: int, sampler: str | None = None, steps: int | None = None,
                            generator: torch.Generator | None = None, **log_prob_options: Any) -> tuple[Tensor, Tensor]:
        """Samples [B, n, A] (clipped to the box) and the log-probs [B, n] of the returned actions.

        ``sampler="ode"`` (dopri5) and ``"fast"`` get both from one solve, then re-score the
        samples outside [-1 + delta, 1 - delta] with the same solver family (``log_prob`` clamps
        those, so their path log-prob is not the returned action's); they take no log_prob
        options. ``"pc"`` and ensembles sample first and score with ``log_prob(**log_prob_options)``.
        """
        self._check(obs)
        self.check_options("log_prob", log_prob_options)
        sampler = sampler or self.config.default_sampler
        joint_solve = sampler != "pc" and len(self.networks) == 1
        if joint_solve and log_prob_options:
            raise ConfigError(f"sample_and_log_prob with sampler={sampler!r} gets the log-probs from the sampling solve "
                              f"itself, so log_prob options {sorted(log_prob_options)} would be ignored; call sample "
                              "then log_prob with them (a cache: likelihood='separate')")
        if not joint_solve:
            actions = self.sample(obs, n, sampler=sampler, steps=steps, generator=generator)
            log_probs = self.log_prob(obs.repeat_interleave(n, 0), actions.reshape(-1, self.act_dim),
                                      generator=generator, **log_prob_options)
            return actions, log_probs.reshape(-1, n)
        norm_obs = self.normalize(obs).repeat_interleave(n, 0)
        x, log_probs = self._run_sampler(norm_obs, sampler, True, steps, generator)
        actions = x.clamp(-1.0, 1.0)
        outside = (x.abs() > 1.0 - self.config.boundary_delta).any(-1)
        if bool(outside.any()):
            rows = torch.nonzero(outside).squeeze(1)
            log_probs[rows] = self._log_prob(norm_obs[rows], actions[rows], solver="fast" if sampler == "fast" else "dopri5",
                                             steps=steps, generator=generator)
        return actions.reshape(-1, n, self.act_dim), log_probs.reshape(-1, n)

    # ------------------------------------------------------------------ training
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"score": adam(self.networks.parameters(), lr=self.config.lr)}

    def dsm_loss(self, network: Callable[[Tensor, Tensor, Tensor], Tensor], obs: Tensor, act: Tensor) -> Tensor:
        """Denoising score matching in the noise parameterisation: E ||eps_theta(x_t, s, t) - z||^2."""
        t = self.config.train_t_min + (1.0 - self.config.train_t_min) * torch.rand(act.shape[0], device=act.device)
        z = torch.randn_like(act)
        x_t = self.sde.marginal(act, t[:, None], z)
        return (network(x_t, obs, t) - z).pow(2).sum(-1).mean()

    def training_step(self, obs: Tensor, act: Tensor, step: int,
                      optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Tensor]:
        # Each member gets its own share of the minibatch ("different random samples", App. A.2).
        # tensor_split, not chunk: chunk may return fewer pieces than members (512 rows in 30 chunks
        # of 18 make 29), and zip would then leave the last member at its initial weights.
        members = len(self.networks)
        shares = zip(self.networks.members, obs.tensor_split(members), act.tensor_split(members), strict=True)
        loss = sum(self.dsm_loss(network, o, a) for network, o, a in shares) / len(self.networks)
        optimizers["score"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["score"].step()
        return {"dsm": loss.detach()}


def _or_default(value, default):
    """``default`` where an option was not given (None); an explicit 0 is a value, not "the default"."""
    return default if value is None else value


def _checked_steps(steps: int | None, default: int) -> int:
    steps = _or_default(steps, default)
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    return steps
