"""DASCO (seed 000): each of the four updates lowers its own loss, the probability-ratio weight
against a stub discriminator, and golden NumPy transcriptions of Listings 2-5."""

import numpy as np
import pytest
import torch
from torch import nn

from behavior_models.errors import ConfigError
from behavior_models.gan import ConditionalGenerator, Discriminator
from rl.algos.base import BehaviorInputs
from rl.algos.dasco import DASCO, DASCOConfig
from rl.core.networks import TanhGaussianActor
from rl.core.trainer import Run, RunConfig
from tests.rl.algos.test_golden import A, B, S, fixed_batch, np_ensemble_q, np_mlp
from tests.rl.algos.test_updates import early_late, run_updates

SMALL = dict(critic_hidden=(32, 32), policy_hidden=(32, 32), gan_hidden=(32,), reward_transform="minus_one")


def test_dasco_trains_finite_and_lowers_its_critic_loss(env_transitions):
    run = Run.build("dasco", env_transitions, DASCOConfig(**SMALL), RunConfig(seed=0, steps=300))
    assert run.algo_config.w == 1.0 and run.algo_config.instance_noise_steps == 300  # not a maze id
    history = run_updates(run)  # also checks every tensor and metric is finite
    early, late = early_late(history, "critic_loss")
    assert late < 0.5 * early
    assert history[0]["instance_noise_std"] == pytest.approx(0.3) and history[-1]["instance_noise_std"] < 0.01


@pytest.mark.parametrize("part", ["critic", "policy", "aux_generator", "discriminator"])
def test_each_dasco_update_lowers_its_own_loss(env_transitions, part):
    run = Run.build("dasco", env_transitions, DASCOConfig(**SMALL), RunConfig(seed=0, steps=300))
    run_updates(run, steps=50)
    algo = run.algorithm
    batch = run.buffer.sample(64, torch.Generator().manual_seed(1))
    loss_of = {"critic": lambda: algo.critic_loss(batch)[0],
               "policy": lambda: algo.policy_loss(batch.observations, batch.actions)[0],
               "aux_generator": lambda: algo.aux_generator_loss(batch.observations),
               "discriminator": lambda: algo.discriminator_loss(batch.observations, batch.actions, 0.1)}[part]

    def seeded_loss():
        torch.manual_seed(7)  # the same policy / generator / instance-noise draws every time
        return loss_of()

    before = float(seeded_loss().detach())
    for _ in range(5):
        optimizer = algo.optimizers[part]
        optimizer.zero_grad(set_to_none=True)
        seeded_loss().backward()
        optimizer.step()
    assert float(seeded_loss().detach()) < before


class StubDiscriminator(nn.Module):
    """D(s, a) = sigmoid(3 a_0 - 0.5): known outputs."""

    def forward(self, obs, act, return_logit=False):
        logit = 3.0 * act[:, 0] - 0.5
        return logit if return_logit else torch.sigmoid(logit)


class StubPolicy(nn.Module):
    """Always the given actions (as a learnable tensor, to inspect the gradient)."""

    def __init__(self, actions):
        super().__init__()
        self.actions = nn.Parameter(actions.clone())

    def forward(self, obs, deterministic=False):
        return self.actions


class StubCritic(nn.Module):
    """Q_1(s, a) = 2 sum(a) + 1, Q_2 = Q_1 - 1."""

    def forward(self, obs, act):
        q = 2.0 * act.sum(-1) + 1.0
        return torch.stack([q, q - 1.0])


@pytest.mark.parametrize("use_ratio", [True, False])
def test_ratio_weight_and_policy_loss_with_a_stub_discriminator(use_ratio):
    w = 0.025
    algo = DASCO(DASCOConfig(**SMALL, w=w, ratio_weight=use_ratio), S, A, behavior=BehaviorInputs())
    obs = torch.zeros(3, S)
    policy_actions = torch.tensor([[0.5, 0.0], [-0.2, 0.3], [0.9, -1.0]])
    data_actions = torch.tensor([[0.1, 0.0], [0.4, 0.0], [0.9, 0.5]])
    algo.policy, algo.discriminator, algo.critic = StubPolicy(policy_actions), StubDiscriminator(), StubCritic()
    loss, metrics = algo.policy_loss(obs, data_actions)

    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    d_pi = sig(3.0 * policy_actions[:, 0].numpy() - 0.5)
    d_data = sig(3.0 * data_actions[:, 0].numpy() - 0.5)
    ratio = np.minimum(d_pi, d_data) / d_data if use_ratio else np.ones(3)
    q1 = 2.0 * policy_actions.sum(-1).numpy() + 1.0
    expected = -(ratio * q1 / w + np.log(d_pi)).mean()
    assert float(metrics["ratio_mean"]) == pytest.approx(ratio.mean(), rel=1e-6)
    if use_ratio:  # a precondition of the fixture: some policy action is less "real" than its data action
        assert ratio.max() <= 1.0 and ratio.min() < 1.0
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    # No gradient through the weight: d loss / d a_0 = -(ratio * 2 / w + 3 (1 - D)) / B exactly.
    loss.backward()
    expected_grad = -(ratio * 2.0 / w + 3.0 * (1.0 - d_pi)) / 3.0
    assert np.allclose(algo.policy.actions.grad[:, 0].numpy(), expected_grad, rtol=1e-5)


def test_the_ratio_weight_stays_finite_where_the_discriminator_underflows():
    """D(s, a_D) = sigmoid(-200) is 0 in float32: the ratio of probabilities was 0/0 = nan."""
    from rl.algos.dasco import ratio_weight

    policy_logit = torch.tensor([-150.0, -250.0, 2.0, -1.0])
    data_logit = torch.tensor([-200.0, -200.0, 1.0, 3.0])
    assert torch.sigmoid(data_logit[0]) == 0  # the premise
    ratio = ratio_weight(policy_logit, data_logit)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    expected = torch.tensor([1.0, np.exp(-50.0), 1.0, sig(-1.0) / sig(3.0)], dtype=torch.float32)
    torch.testing.assert_close(ratio, expected, rtol=1e-5, atol=0)


def test_w_resolves_from_the_dataset_id():
    assert DASCO.resolve_config(DASCOConfig(), "local/pointmaze-umaze-biased-v0", 100).w == 0.025
    assert DASCO.resolve_config(DASCOConfig(), "mujoco/hopper/medium-v0", 100).w == 1.0
    assert DASCO.resolve_config(DASCOConfig(w=0.5), "local/pointmaze-umaze-biased-v0", 100).w == 0.5


def test_noise_size_and_w_that_cannot_train_are_refused_not_replaced():
    """aux_noise_dim=0 used to build a generator with the action size's noise (config.json said 0);
    w=0 divides Q by zero and turned the policy nan after one update, crashing mid-run."""
    for name, value in (("aux_noise_dim", 0), ("w", 0.0), ("w", -1.0), ("w_maze", 0.0), ("w_locomotion", -0.5)):
        with pytest.raises(ConfigError, match=f"DASCOConfig.{name} must be"):
            DASCOConfig(**{name: value})
    assert DASCO(DASCOConfig(**SMALL, aux_noise_dim=3), 2, 1).aux_generator.noise_dim == 3
    assert DASCO(DASCOConfig(**SMALL), 2, 1).aux_generator.noise_dim == 1  # None: the action size


def test_one_update_steps_each_part_once_in_algorithm_1s_order(env_transitions, monkeypatch):
    """Seed 000, Algorithm 1 (Listings 2-5): critic, then policy, then auxiliary generator, then the
    discriminator, each stepped once per update (so the discriminator sees the stepped generators)."""
    import rl.algos.dasco as dasco

    run = Run.build("dasco", env_transitions, DASCOConfig(**SMALL), RunConfig(seed=0, steps=20))
    algo = run.algorithm
    names = {id(optimizer): name for name, optimizer in algo.optimizers.items()}
    order = []
    original = dasco.step

    def recording_step(optimizer, loss):
        order.append(names[id(optimizer)])
        original(optimizer, loss)

    monkeypatch.setattr(dasco, "step", recording_step)
    algo.update(run.buffer.sample(16, torch.Generator().manual_seed(0)))
    assert order == ["critic", "policy", "aux_generator", "discriminator"]


def test_ablations_and_acting_with_the_auxiliary_generator(env_transitions):
    run = Run.build("dasco", env_transitions, DASCOConfig(**SMALL, aux_generator=False, ratio_weight=False),
                    RunConfig(seed=0, steps=20))
    assert run.algorithm.aux_generator is None and "aux_generator" not in run.algorithm.optimizers
    history = run_updates(run, steps=20)
    assert all(row["ratio_mean"] == 1.0 and "aux_generator_loss" not in row for row in history)
    run = Run.build("dasco", env_transitions, DASCOConfig(**SMALL, eval_actor="aux_generator"), RunConfig(seed=0))
    obs = torch.randn(4, env_transitions.obs_dim)
    zeros = torch.zeros(4, run.algorithm.aux_generator.noise_dim)
    assert torch.equal(run.algorithm.act(obs, obs, deterministic=True), run.algorithm.aux_generator(obs, zeros))
    run.algorithm.set_acting(eval_actor="policy")  # after training, either generator can act
    assert torch.equal(run.algorithm.act(obs, obs, deterministic=True), run.algorithm.policy(obs, deterministic=True))


def test_acting_with_a_generator_the_run_did_not_train_is_refused(env_transitions):
    run = Run.build("dasco", env_transitions, DASCOConfig(**SMALL, aux_generator=False), RunConfig(seed=0))
    with pytest.raises(ConfigError, match="needs the auxiliary generator"):
        run.algorithm.set_acting(eval_actor="aux_generator")
    with pytest.raises(ConfigError, match="w changes what is trained"):
        run.algorithm.set_acting(w=1.0)
    assert run.algorithm.config.eval_actor == "policy"


# ----------------------------------------------------------------------------- golden tests
def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_policy_sample(policy, obs, eps):
    """tanh(mean + std * eps), std = exp(clamp(log_std, -5, 2)): the tanh-Gaussian policy in NumPy."""
    out = np_mlp(policy.net, obs)
    mean, log_std = out[:, :A], np.clip(out[:, A:], -5.0, 2.0)
    return np.tanh(mean + np.exp(log_std) * eps)


def np_discriminator_logit(disc, obs, act):
    return np_mlp(disc.net, np.concatenate([obs, act], -1))[:, 0]


def np_generator(gen, obs, z):
    return np.tanh(np_mlp(gen.net, np.concatenate([obs, z], -1)))


def draws(seed, *shapes):
    """The standard-normal draws torch makes after manual_seed(seed), in order, as float64 arrays."""
    torch.manual_seed(seed)
    return [torch.randn(*shape).double().numpy() for shape in shapes]


@pytest.fixture
def golden():
    torch.manual_seed(0)
    algo = DASCO(DASCOConfig(**SMALL, w=0.025), S, A, behavior=BehaviorInputs())
    batch = fixed_batch(np.random.default_rng(0))
    arrays = {name: getattr(batch, name).double().numpy() for name in
              ("observations", "actions", "rewards", "next_observations", "dones")}
    return algo, batch, arrays


def test_listing2_critic_loss_equals_numpy(golden):
    algo, batch, x = golden
    with torch.no_grad():  # make the target critics differ from the critics
        for p in algo.critic_target.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(11)
    loss, _ = algo.critic_loss(batch)
    (eps,) = draws(11, (B, A))
    next_actions = np_policy_sample(algo.policy, x["next_observations"], eps)
    target_q = np_ensemble_q(algo.critic_target, x["next_observations"], next_actions).min(0)
    target = x["rewards"] + (1 - x["dones"]) * 0.99 * target_q
    q1, q2 = np_ensemble_q(algo.critic, x["observations"], x["actions"])
    expected = np.mean((q1 - target) ** 2) + np.mean((q2 - target) ** 2)  # qf1_loss + qf2_loss
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_listing3_policy_loss_equals_numpy(golden):
    algo, batch, x = golden
    with torch.no_grad():  # a sharper discriminator, so that both branches of the min occur
        algo.discriminator.net[-1].weight.mul_(20.0)
    torch.manual_seed(14)
    loss, _ = algo.policy_loss(batch.observations, batch.actions)
    (eps,) = draws(14, (B, A))
    actor_actions = np_policy_sample(algo.policy, x["observations"], eps)
    q_pi = np_ensemble_q(algo.critic, x["observations"], actor_actions)[0]  # qf1 only
    logit = np_discriminator_logit(algo.discriminator, x["observations"], actor_actions)
    probs = np_sigmoid(logit)
    real_probs = np_sigmoid(np_discriminator_logit(algo.discriminator, x["observations"], x["actions"]))
    assert (probs > real_probs).any() and (probs < real_probs).any()  # both branches of the min occur
    probs = np.minimum(real_probs, probs) / real_probs
    expected = -np.mean(probs * q_pi / 0.025 + np.log(np_sigmoid(logit)))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_listing4_aux_generator_loss_equals_numpy(golden):
    algo, batch, x = golden
    torch.manual_seed(13)
    loss = algo.aux_generator_loss(batch.observations)
    (z,) = draws(13, (B, algo.aux_generator.noise_dim))
    logits = np_discriminator_logit(algo.discriminator, x["observations"],
                                    np_generator(algo.aux_generator, x["observations"], z))
    expected = np.mean(np.log1p(np.exp(-logits)))  # BCE with logits towards the real label 1
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_listing5_discriminator_loss_equals_numpy(golden):
    algo, batch, x = golden
    std = 0.2
    torch.manual_seed(14)
    loss = algo.discriminator_loss(batch.observations, batch.actions, std)
    # Draw order: aux fake z, policy fake eps, then instance noise for real, aux fake, policy fake.
    z, eps, n_real, n_aux, n_pi = draws(14, (B, algo.aux_generator.noise_dim), (B, A), (B, A), (B, A), (B, A))
    noise = lambda n: np.clip(n * std, -0.3, 0.3)  # noqa: E731  (the instance noise, clamped to 0.3)
    obs = x["observations"]
    fake_aux = np_generator(algo.aux_generator, obs, z)
    fake_policy = np_policy_sample(algo.policy, obs, eps)
    d = lambda act: np_sigmoid(np_discriminator_logit(algo.discriminator, obs, act))  # noqa: E731
    err_real = np.mean((d(x["actions"] + noise(n_real)) - 1.0) ** 2) / 2.0
    err_fake = np.mean(d(fake_aux + noise(n_aux)) ** 2) / 2.0 + np.mean(d(fake_policy + noise(n_pi)) ** 2) / 2.0
    assert float(loss.detach()) == pytest.approx(err_real + err_fake, rel=1e-5)


def test_the_zoo_gan_blocks_are_reused_not_forked():
    algo = DASCO(DASCOConfig(**SMALL), S, A, behavior=BehaviorInputs())
    assert type(algo.discriminator) is Discriminator and type(algo.aux_generator) is ConditionalGenerator
    assert isinstance(algo.policy, TanhGaussianActor)
