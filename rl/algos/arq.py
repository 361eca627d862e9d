"""ARQ: Action-Restricted Q-learning (seed 002, "Know your boundaries", Algorithm 1).

Q-learning whose max is restricted to in-support actions: candidates a'_1..a'_N drawn once
from the behavior model beta_psi at every dataset state and kept only where
beta_psi(a'|s) > epsilon (the sample cache, ``bm sample-cache``). Then:

* **Policy evaluation, Eq. 5.** L(theta) = E_D[(Q_theta(s,a) - y)^2] for each of the two Q's, with
  y = r + gamma (1 - done) * Kth_{a' in supp(s')} min_j Q_target_j(s', a'): the K-th largest
  (K clipped to the number of kept candidates; K = 1 is the max) of the clipped double-Q
  target over the kept candidates at s'. Polyak 0.995 target networks (App. A.2).
* **Implicit policy, Eq. 6.** pi(a|s) = softmax_i(alpha * A(s, a_i)) over N fresh candidates
  a_i ~ beta_psi(.|s) drawn at act time, with A(s,a) = Q(s,a) - mean_i Q(s,a_i). Needs the
  behavior model at act time (found through the cache metadata, or ``--behavior-model``).
  Sampled evaluation (``rl train --eval-sampled``, ``rl eval --sampled``) draws from this softmax; deterministic
  evaluation (the default) takes its mode, the candidate of largest advantage, where alpha no
  longer matters. The model is sampled as the cache was (its metadata's sampler options) unless
  ``implicit_sampler`` names another sampler. A run trained with the explicit policy can also act
  with this one, or with beta_psi alone (``rl eval --set policy=implicit``): Algorithm 1 returns
  Q_theta, pi_phi and s_psi, and the critic's updates do not use the policy (a run trained with
  ``policy="behavior"`` trained no critic, so it acts with beta_psi alone). Deviation: App.
  A.2 also drops fresh candidates below the threshold epsilon; here they are not filtered, since
  each would need a likelihood (an ODE solve for the score model) at every action.
* **Explicit policy (Algorithm 1, second loop).** AWR: max_phi E_D[exp(alpha A(s,a)) log pi_phi(a|s)],
  with the weight clipped at ``awr_max_weight`` and A(s,a) = Q(s,a) - mean of Q over the kept
  cached candidates at s. Deviation: Algorithm 1 trains pi_phi after Q has converged; here
  both are updated in the same step (the AWR weight uses the current Q, without gradient).
* **Ablations (seed 002, Table 2).** ``policy="behavior"``: beta_psi alone (s_psi), no value
  function; it always samples one action from beta_psi, deterministic evaluation included.
  ``q_target="sarsa"``: Q^beta, y = r + gamma (1 - done) Q_target(s', a'_dataset), one Q,
  lr 1e-4 (App. A.2), acted on by the implicit policy (preset ``q-beta``).

Per-domain defaults: the Q learning rate, K, alpha and the explicit policy class follow the
column of seed 002's Tables A.2/A.3 that the dataset belongs to (``task_family``): maze
navigation, whose reward is "-1 except goal", takes the AntMaze column (lr 3e-4, K = 3,
alpha = 10, deterministic policy); kitchen (lr 1e-4, K = 9, alpha = 1) and adroit (lr 1e-4,
K = 9, alpha = 10) their own; other datasets the locomotion column (lr 3e-4, K = 9, alpha = 1,
state-independent-std Gaussian). The resolved values are what config.json records.

Options around Eq. 5:

* ``include_dataset_next_action`` (default off, **a deviation from Eq. 5**): the dataset's a'
  joins the candidates at s' and is always kept (where it exists).
* **Fallback** when no candidate at a state survives the threshold: ``highest_log_prob``
  keeps the single candidate of highest cached log-density (the first one if the cache has no
  log-probs, i.e. NaN); ``all`` keeps every candidate of that state. Which rows fell back is
  counted at start (``fallback_rows``; ``in_support_fraction`` is the share of candidates the
  threshold kept, ``kept_fraction`` the share the target may use after the fallback). With
  ``include_dataset_next_action``, a state whose a' exists is never empty, so it does not fall
  back: its target is a' alone rather than an out-of-support candidate beside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from behavior_models.errors import ConfigError, require_at_least
from rl.algos.base import AlgoConfig, Algorithm, BehaviorInputs, adam, step
from rl.core.buffer import Batch
from rl.core.networks import DeterministicActor, GaussianActor, QEnsemble, soft_update
from rl.core.tasks import fill_unset_fields, task_family

POLICIES = ("explicit", "implicit", "behavior")
Q_TARGETS = ("kth_max", "sarsa")
FALLBACKS = ("highest_log_prob", "all")


@dataclass(frozen=True)
class ARQConfig(AlgoConfig):
    batch_size: int = 512  # App. A.2
    hidden: tuple[int, ...] = (256, 256)  # each Q: 2 layers of 256, ReLU (App. A.2)
    num_q: int = 2  # two Q functions, min for the target (App. A.2); Q^beta uses one
    # q_lr, k, alpha and actor_type: None resolves from the dataset id through TASK_FAMILY_DEFAULTS
    # (seed 002, Tables A.2 and A.3), the way reward_transform=auto does; set them to override.
    q_lr: float | None = None  # Table A.2: 3e-4 locomotion and AntMaze, 1e-4 kitchen and adroit (Q^beta: 1e-4)
    tau: float = 0.005  # polyak coefficient 0.995 (App. A.2)
    k: int | None = None  # the K-th max of Eq. 5 (Table A.2: 9; 3 for AntMaze)
    q_target: str = "kth_max"  # kth_max (Eq. 5) | sarsa (the Q^beta ablation, Table 2)
    use_support_mask: bool = True  # drop cached candidates flagged out of support (beta <= eps)
    include_dataset_next_action: bool = False  # DEVIATION from Eq. 5: a' always kept as a candidate
    empty_fallback: str = "highest_log_prob"  # highest_log_prob | all (see the module docstring)
    policy: str = "explicit"  # explicit (AWR pi_phi) | implicit (Eq. 6) | behavior (beta alone)
    alpha: float | None = None  # temperature of Eq. 6 and of the AWR weight (Table A.3: 1 locomotion, 10 AntMaze)
    awr_max_weight: float = 100.0  # clip of exp(alpha * A)
    actor_type: str | None = None  # gaussian: state-independent std (App. A.2, locomotion) | deterministic (AntMaze)
    actor_hidden: tuple[int, ...] = (256, 256)  # 2-layer MLP of 256 (App. A.2)
    actor_lr: float = 3e-4  # App. A.2
    implicit_samples: int = 30  # fresh candidates per state at act time (App. A.2: N = 30)
    # How the implicit policy (and policy="behavior") samples beta_psi at act time: None draws as the
    # cache was drawn (its metadata's sampler_options), so Eq. 6 ranks candidates from the same
    # approximation of beta that Q was trained on; or a sampler name of the model ("pc", "ode", "fast").
    implicit_sampler: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, {"num_q": 1})  # 0 critics fail the first target's min over Q's
        # awr_max_weight <= 0 zeroes (or flips) every AWR weight: the explicit policy would never learn, silently;
        # alpha < 0 would favour the actions of lowest advantage in Eq. 6 and in the AWR weight.
        if not self.awr_max_weight > 0:
            raise ConfigError(f"ARQConfig.awr_max_weight must be > 0, got {self.awr_max_weight}")
        if self.alpha is not None and not self.alpha >= 0:
            raise ConfigError(f"ARQConfig.alpha must be >= 0 (0: a flat softmax, AWR as plain BC), got {self.alpha}")


# Seed 002's per-domain columns (Table A.2: learning rate and K; Table A.3: alpha for ARQ + pi_phi
# and the policy class). Maze navigation with the "-1 except goal" reward is the AntMaze column; kitchen and
# adroit have their own; everything else takes the locomotion column.
TASK_FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    "antmaze": {"q_lr": 3e-4, "k": 3, "alpha": 10.0, "actor_type": "deterministic"},
    "kitchen": {"q_lr": 1e-4, "k": 9, "alpha": 1.0, "actor_type": "gaussian"},
    "adroit": {"q_lr": 1e-4, "k": 9, "alpha": 10.0, "actor_type": "gaussian"},
    "locomotion": {"q_lr": 3e-4, "k": 9, "alpha": 1.0, "actor_type": "gaussian"},
}


def resolve_task_defaults(config: "ARQConfig", dataset_id: str) -> "ARQConfig":
    """``config`` with every None among q_lr, k, alpha, actor_type filled from the dataset's family."""
    return fill_unset_fields(config, TASK_FAMILY_DEFAULTS[task_family(dataset_id)])


# Named variants for the CLI's --variant: the paper's method and its Table 2 ablations.
PRESETS: dict[str, dict[str, object]] = {
    "arq": {},
    "arq-implicit": {"policy": "implicit"},
    "q-beta": {"q_target": "sarsa", "num_q": 1, "q_lr": 1e-4, "policy": "implicit"},
    "behavior": {"policy": "behavior"},
}


def kth_max_target(q: Tensor, keep: Tensor, k: int) -> Tensor:
    """The K-th largest of ``q`` [B, N] over the kept entries ``keep`` [B, N] of each row, with K
    clipped to the number kept (Eq. 5). Every row must keep at least one entry."""
    masked = q.masked_fill(~keep, float("-inf"))
    top = masked.topk(min(k, q.shape[1]), dim=1).values  # [B, K'] in descending order
    index = keep.sum(1).clamp(max=k) - 1
    return top.gather(1, index.unsqueeze(1)).squeeze(1)


def effective_sample_fraction(weight: Tensor) -> Tensor:
    """Kish's effective sample size of a weighted batch over its size, (sum w)^2 / (B sum w^2), in
    (0, 1]: 1 when every weight is equal, 1/B when one sample carries them all. Logged for AWR,
    whose weights exp(alpha A) on a critic still far from converged can leave a handful of samples
    doing the regression."""
    return weight.sum().square() / (weight.numel() * weight.square().sum())


def effective_keep(in_support: Tensor, log_probs: Tensor, use_support_mask: bool, fallback: str) -> Tensor:
    """The candidates the target may use, with the documented fallback for rows that keep none."""
    keep = in_support.bool() if use_support_mask else torch.ones_like(in_support, dtype=torch.bool)
    empty = ~keep.any(1)
    if fallback == "highest_log_prob":
        best = torch.nan_to_num(log_probs.float(), nan=float("-inf")).argmax(1)
        pick = torch.nn.functional.one_hot(best, keep.shape[1]).bool()
    elif fallback == "all":
        pick = torch.ones_like(keep)
    else:
        raise ConfigError(f"unknown empty_fallback {fallback!r}; choose one of {FALLBACKS}")
    return torch.where(empty.unsqueeze(1), pick, keep)


class ARQ(Algorithm):
    name = "arq"
    config_class = ARQConfig
    behavior_kind = "cache"
    locomotion_reward = "return_range"  # seed 002, App. A.2 (after IQL): r * 1000 / return range
    # Algorithm 1 returns Q_theta, pi_phi and s_psi: a run trained with the explicit policy can also
    # be evaluated with the implicit one (Eq. 6) or with s_psi alone, from the same critic.
    acting_fields = ("policy", "implicit_samples", "implicit_sampler")

    @classmethod
    def needs_behavior_model(cls, config: ARQConfig) -> bool:
        return config.policy in ("implicit", "behavior")

    @classmethod
    def resolve_config(cls, config: ARQConfig, dataset_id: str, steps: int) -> ARQConfig:
        return resolve_task_defaults(config, dataset_id)

    def __init__(self, config: ARQConfig, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        # Built without a dataset id (unit tests, library use): the locomotion column.
        config = resolve_task_defaults(config, "")
        super().__init__(config, obs_dim, act_dim, device, behavior)
        for field, value, allowed in (("q_target", config.q_target, Q_TARGETS),
                                      ("empty_fallback", config.empty_fallback, FALLBACKS),
                                      ("actor_type", config.actor_type, ("gaussian", "deterministic"))):
            if value not in allowed:
                raise ConfigError(f"ARQ {field}={value!r}; choose one of {allowed}")
        if config.k < 1:
            raise ConfigError(f"ARQ k must be >= 1, got {config.k}")
        cache = self.behavior.cache
        if cache is None:
            raise ConfigError("ARQ needs a sample cache (--behavior cache.npz, from `bm sample-cache`)")
        # Frozen cache tensors live outside the module tree: never checkpointed, never trained.
        self.candidates = cache.candidates.to(self.device, torch.float32)
        in_support = cache.in_support.to(self.device).bool()
        self.keep = effective_keep(in_support, cache.log_probs.to(self.device),
                                   config.use_support_mask, config.empty_fallback)
        # Rows whose kept candidates are the fallback's, not the threshold's (none without the mask).
        self.fell_back = ~in_support.any(1) if config.use_support_mask else torch.zeros_like(in_support[:, 0])
        self.fallback_rows = int(self.fell_back.sum())
        self.in_support_fraction = float(in_support.float().mean()) if config.use_support_mask else 1.0
        self.obs_row = cache.obs_row.to(self.device, torch.long)
        self.next_obs_row = cache.next_obs_row.to(self.device, torch.long)

        self.critic = QEnsemble(obs_dim, act_dim, config.hidden, config.num_q).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {"critic": adam(self.critic.parameters(), lr=config.q_lr)}
        self.actor = None
        if config.policy == "explicit":
            actor_cls = GaussianActor if config.actor_type == "gaussian" else DeterministicActor
            self.actor = actor_cls(obs_dim, act_dim, config.actor_hidden).to(self.device)
            self.optimizers["actor"] = adam(self.actor.parameters(), lr=config.actor_lr)
        self.check_acting(config)

    def check_acting(self, config: ARQConfig) -> None:
        if config.policy not in POLICIES:
            raise ConfigError(f"ARQ policy={config.policy!r}; choose one of {POLICIES}")
        if config.implicit_samples < 1:
            raise ConfigError(f"ARQ implicit_samples must be >= 1, got {config.implicit_samples}")
        if config.policy == "explicit" and self.actor is None:
            raise ConfigError(f"this ARQ run trained no explicit policy (it was trained with policy="
                              f"{self.config.policy}); act with policy=implicit or policy=behavior")
        if config.policy == "implicit" and self.config.policy == "behavior":
            raise ConfigError("this ARQ run trained no critic (it was trained with policy=behavior), so Eq. 6 "
                              "would rank candidates by an untrained Q; act with policy=behavior, or train "
                              "with policy=implicit or explicit")
        if self.needs_behavior_model(config):
            if self.behavior.model is None:
                raise ConfigError(f"ARQ with policy={config.policy} samples the behavior model at act time; "
                                  "pass --behavior-model DIR (or use a cache whose metadata names its model)")
            self.behavior.model.check_options("sample", self.sampler_options(config))  # now, not at the first action

    def sampler_options(self, config: ARQConfig | None = None) -> dict[str, object]:
        """How beta_psi is sampled at act time (``implicit_sampler``; by default as the cache was)."""
        config = config or self.config
        if config.implicit_sampler is not None:
            return {"sampler": config.implicit_sampler}
        return dict(getattr(self.behavior.cache, "metadata", {}).get("sampler_options", {}))

    def describe(self) -> dict[str, object]:
        rows, samples, _ = self.candidates.shape
        return {"cache_rows": rows, "candidates_per_state": samples,
                "in_support_fraction": round(self.in_support_fraction, 4),
                "kept_fraction": round(float(self.keep.float().mean()), 4), "fallback_rows": self.fallback_rows}

    def warnings(self) -> list[str]:
        rows = self.candidates.shape[0]
        if self.fallback_rows <= 0.1 * rows:
            return []
        return [f"{self.fallback_rows} of {rows} cache rows ({self.fallback_rows / rows:.0%}) keep no in-support "
                f"candidate, so Eq. 5 falls back to empty_fallback={self.config.empty_fallback} there: the cache's "
                "threshold rejects most of the model's samples. Rebuild the cache with --threshold calibrated or "
                "--likelihood none, or fit the behavior model longer"]

    # ------------------------------------------------------------------ targets
    def candidates_at(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Cached candidates [B, N, A] and their kept mask [B, N] at cache ``rows``."""
        return self.candidates[rows], self.keep[rows]

    def critic_target_value(self, batch: Batch) -> Tensor:
        """y of Eq. 5 (or of the SARSA ablation) for every transition in ``batch``, [B]."""
        config = self.config
        if config.q_target == "sarsa":
            q_next = self.critic_target(batch.next_observations, batch.next_actions).min(0).values
        else:
            rows = self.next_obs_row[batch.indices]
            candidates, keep = self.candidates_at(rows)
            if config.include_dataset_next_action:
                next_valid = batch.next_action_valid.bool()
                # A kept a' makes the state non-empty: the fallback's out-of-support picks are dropped there.
                keep = keep & ~(self.fell_back[rows] & next_valid).unsqueeze(1)
                candidates = torch.cat([candidates, batch.next_actions.unsqueeze(1)], dim=1)
                keep = torch.cat([keep, next_valid.unsqueeze(1)], dim=1)
            next_obs = batch.next_observations.unsqueeze(1).expand(-1, candidates.shape[1], -1)
            q = self.critic_target(next_obs, candidates).min(0).values  # [B, N]
            q_next = kth_max_target(q, keep, config.k)
        return batch.rewards + config.gamma * (1.0 - batch.dones) * q_next

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, Tensor]:
        if self.config.policy == "behavior":  # the s_psi ablation learns nothing
            self.updates += 1
            return {}
        with torch.no_grad():
            target = self.critic_target_value(batch)
        q = self.critic(batch.observations, batch.actions)  # [E, B]
        error = (q - target.unsqueeze(0)).pow(2)
        if self.config.q_target == "sarsa":
            # A truncated episode's last step has no a' to bootstrap from: it is left out.
            usable = torch.maximum(batch.next_action_valid, batch.dones)
            count = usable.sum().clamp(min=1.0)
            critic_loss = (error * usable).sum(1).div(count).sum()
            target_mean = (target * usable).sum() / count
        else:
            critic_loss = error.mean(1).sum()
            target_mean = target.mean()
        step(self.optimizers["critic"], critic_loss)
        soft_update(self.critic_target, self.critic, self.config.tau)
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "target_mean": target_mean}
        if self.actor is not None:
            metrics.update(self.update_actor(batch))
        self.updates += 1
        return metrics

    @torch.no_grad()
    def advantage(self, obs: Tensor, actions: Tensor, rows: Tensor) -> Tensor:
        """A(s,a) = Q(s,a) - mean of Q over the kept cached candidates at s (Eq. 6), [B].

        Both terms come from one call of the current critic (the dataset action appended as an
        extra candidate column), so they are the same Q_theta, as Eq. 6 writes it. Eq. 6 has one
        Q_theta; with the two Q's of Eq. 5 this takes their minimum, the value the target uses.
        The implicit policy ranks its candidates by the same minimum."""
        candidates, keep = self.candidates_at(rows)
        candidates = torch.cat([candidates, actions.unsqueeze(1)], dim=1)
        q = self.critic(obs.unsqueeze(1).expand(-1, candidates.shape[1], -1), candidates).min(0).values
        q_data, q_candidates, keep = q[:, -1], q[:, :-1], keep.float()
        return q_data - (q_candidates * keep).sum(1) / keep.sum(1)

    def update_actor(self, batch: Batch) -> dict[str, Tensor]:
        """AWR (Algorithm 1, second loop): weights exp(alpha * A), clipped."""
        advantage = self.advantage(batch.observations, batch.actions, self.obs_row[batch.indices])
        weight = (self.config.alpha * advantage).exp().clamp(max=self.config.awr_max_weight)
        if isinstance(self.actor, GaussianActor):
            actor_loss = -(weight * self.actor.log_prob(batch.observations, batch.actions)).mean()
        else:
            actor_loss = (weight * (self.actor(batch.observations) - batch.actions).pow(2).sum(1)).mean()
        step(self.optimizers["actor"], actor_loss)
        return {"actor_loss": actor_loss.detach(), "advantage_mean": advantage.mean(), "awr_weight_mean": weight.mean(),
                "awr_effective_fraction": effective_sample_fraction(weight)}

    # ------------------------------------------------------------------ acting
    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        if self.config.policy == "explicit":
            return self.actor(obs, deterministic) if isinstance(self.actor, GaussianActor) else self.actor(obs)
        model = self.behavior.model
        if self.config.policy == "behavior":
            return model.sample(raw_obs, 1, **self.sampler_options())[:, 0]
        candidates = model.sample(raw_obs, self.config.implicit_samples, **self.sampler_options())  # fresh (Eq. 6)
        q = self.critic(obs.unsqueeze(1).expand(-1, candidates.shape[1], -1), candidates).min(0).values
        if deterministic:  # the mode: the largest advantage, whatever alpha (alpha = 0 makes the softmax flat)
            index = q.argmax(1)
        else:
            logits = self.config.alpha * (q - q.mean(1, keepdim=True))
            index = torch.distributions.Categorical(logits=logits, validate_args=False).sample()
        return candidates[torch.arange(len(candidates), device=candidates.device), index]
