"""BEAR(++) and TD3+BC(++) (seed 001): losses go down, the gradient penalty's schedule, Table 7's
per-task defaults, and a golden test of TD3BC++'s actor loss with Eq. 10's weight against NumPy."""

import copy

import numpy as np
import pytest
import torch

import rl.core.regularizers
from rl.algos.base import BehaviorInputs
from rl.algos.bear import BEAR, BEARConfig, BEARPlusPlus, BEARPlusPlusConfig
from rl.algos.td3bc import TD3BC, TD3BCConfig, TD3BCPlusPlus, TD3BCPlusPlusConfig
from rl.core.regularizers import minmax_weight
from rl.core.trainer import Run, RunConfig
from tests.rl.algos.test_golden import A, B, S, bear, fixed_batch, np_ensemble_q, np_mlp
from tests.rl.algos.test_updates import early_late, run_updates

SMALL = {"hidden": (32, 32), "reward_transform": "minus_one"}


@pytest.mark.parametrize("dataset_id, alpha, lambda_gp", [
    ("D4RL/door/human-v2", 0.5, 1.0), ("D4RL/hammer/expert-v2", 0.2, 1.0), ("D4RL/pen/cloned-v2", 0.5, 1.0),
    ("D4RL/relocate/expert-v2", 0.02, 0.1), ("mujoco/hopper/medium-v0", 2.5, 1.0),
    ("mujoco/invertedpendulum/expert-v0", 2.5, 1.0), ("local/pointmaze-umaze-biased-v0", 2.5, 1.0)])
def test_alpha_and_lambda_gp_follow_table_7_of_seed_001(dataset_id, alpha, lambda_gp):
    plus = TD3BCPlusPlus.resolve_config(TD3BCPlusPlusConfig(), dataset_id, 100)
    assert (plus.alpha, plus.gradient_penalty) == (alpha, lambda_gp)
    plain = TD3BC.resolve_config(TD3BCConfig(), dataset_id, 100)
    assert (plain.alpha, plain.gradient_penalty) == (alpha, 0.0)  # the penalty stays off without ++
    assert BEARPlusPlus.resolve_config(BEARPlusPlusConfig(), dataset_id, 100).gradient_penalty == lambda_gp
    assert BEAR.resolve_config(BEARConfig(), dataset_id, 100).gradient_penalty == 0.0
    assert TD3BC.resolve_config(TD3BCConfig(alpha=1.0), dataset_id, 100).alpha == 1.0  # a set value is kept
    # Built without a dataset id (library use), the locomotion column.
    assert TD3BCPlusPlus(TD3BCPlusPlusConfig(hidden=(8,)), S, A).config.gradient_penalty == 1.0


@pytest.mark.parametrize("dataset_id, kernel", [("D4RL/door/human-v2", "gaussian"), ("D4RL/relocate/expert-v2", "gaussian"),
                                                ("mujoco/hopper/medium-v0", "laplacian"),
                                                ("local/pointmaze-umaze-biased-v0", "laplacian")])
def test_bears_mmd_kernel_is_gaussian_on_adroit_as_in_seed_001(dataset_id, kernel):
    """Seed 001, App. C: BEAR-QL at its recommended (Laplacian) settings, the Gaussian kernel on the four Adroit tasks."""
    assert BEAR.resolve_config(BEARConfig(), dataset_id, 100).mmd_kernel == kernel
    assert BEAR.resolve_config(BEARConfig(mmd_kernel="laplacian"), dataset_id, 100).mmd_kernel == "laplacian"


@pytest.mark.parametrize("config", [TD3BCConfig(**SMALL), TD3BCPlusPlusConfig(**SMALL)])
def test_td3bc_lowers_critic_and_actor_losses(env_transitions, config):
    run = Run.build("td3bc++" if config.constraint_relaxation else "td3bc", env_transitions, config, RunConfig(seed=0))
    initial_actor = copy.deepcopy(run.algorithm.actor)
    history = run_updates(run, steps=1000)
    early, late = early_late(history, "critic_loss")
    assert late < 0.5 * early
    # The critic moves under the actor, so the actor's objective is compared under the final
    # critic, with the detached Q scale alpha / mean|Q| held at one value for both actors (with
    # all-negative Q, as here with r - 1, the rescaled Q term is otherwise a constant -alpha).
    batch = run.buffer.get(torch.arange(run.buffer.size))
    algo = run.algorithm

    def objective(actor, scale):
        with torch.no_grad():
            pi = actor(batch.observations)
            bc = (pi - batch.actions).pow(2).mean(-1)
            if config.constraint_relaxation:
                bc = bc * minmax_weight(algo.critic(batch.observations, batch.actions).mean(0))
            q = algo.critic(batch.observations, pi)[0]
            return -scale * q.mean() + bc.mean(), q.abs().mean()

    _, q_abs = objective(algo.actor, 1.0)
    scale = algo.config.alpha / q_abs
    assert objective(algo.actor, scale)[0] < objective(initial_actor, scale)[0]


@pytest.mark.parametrize("config", [BEARConfig(**SMALL, mmd_sigma=1.0), BEARPlusPlusConfig(**SMALL, mmd_sigma=1.0)])
def test_bear_lowers_critic_loss_and_mmd(env_transitions, gaussian_dir, config):
    # A 1000-step budget: warm start of min(40000, 0.1 * 1000) = 100 MMD-only updates, then RL.
    name = "bear++" if config.constraint_relaxation else "bear"
    run = Run.build(name, env_transitions, config, RunConfig(seed=0, steps=1000), behavior=str(gaussian_dir))
    assert run.algo_config.warmup_steps == 100
    history = run_updates(run, steps=300)
    early, late = early_late(history, "critic_loss")
    assert late < 0.5 * early
    warm = [row["mmd"] for row in history[:100]]
    assert np.mean(warm[-20:]) < np.mean(warm[:20])  # the warm start optimises the MMD alone
    assert all(row["actor_q"] == 0.0 for row in history[:100]) and history[150]["actor_q"] != 0.0
    alphas = [row["alpha"] for row in history]
    assert min(alphas) >= np.exp(-5.0) - 1e-6 and max(alphas) <= np.exp(10.0)


def test_bear_dual_ascent_raises_alpha_when_the_constraint_is_violated(env_transitions, gaussian_dir):
    config = BEARConfig(**SMALL, epsilon=-1.0)  # MMD > eps always: alpha must grow
    run = Run.build("bear", env_transitions, config, RunConfig(seed=0, steps=1000), behavior=str(gaussian_dir))
    history = run_updates(run, steps=30)
    assert history[-1]["alpha"] > history[0]["alpha"]


def test_bear_acts_by_argmax_q_over_policy_samples(env_transitions, gaussian_dir):
    run = Run.build("bear", env_transitions, BEARConfig(**SMALL, eval_samples=50), RunConfig(seed=0),
                    behavior=str(gaussian_dir))
    algo = run.algorithm
    obs = run.buffer.column("observations")[:16]
    torch.manual_seed(1)
    chosen = algo.act(obs, obs, deterministic=True)
    torch.manual_seed(1)
    samples = algo.actor.sample(obs, 50)
    q = algo.critic(obs.unsqueeze(1).expand(-1, 50, -1), samples)[0]
    expected = samples[torch.arange(16), q.argmax(1)]
    assert torch.equal(chosen, expected)


@pytest.mark.parametrize("name, config", [("td3bc++", TD3BCPlusPlusConfig(**SMALL)),
                                          ("bear++", BEARPlusPlusConfig(**SMALL))])
def test_gradient_penalty_applies_every_fifth_update_only(env_transitions, gaussian_dir, monkeypatch, name, config):
    module = rl.core.regularizers  # where critic_loss looks gradient_penalty up
    calls = []
    original = module.gradient_penalty

    def counting(*args, **kwargs):
        calls.append(len(calls))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "gradient_penalty", counting)
    run = Run.build(name, env_transitions, config, RunConfig(seed=0), behavior=str(gaussian_dir) if "bear" in name else None)
    history = run_updates(run, steps=12)
    assert [i + 1 for i, row in enumerate(history) if "gradient_penalty" in row] == [5, 10]
    assert len(calls) == 2


def test_gradient_penalty_is_off_without_the_flag(env_transitions):
    run = Run.build("td3bc", env_transitions, TD3BCConfig(**SMALL), RunConfig(seed=0))
    assert not any("gradient_penalty" in row for row in run_updates(run, steps=10))


@pytest.mark.parametrize("relax", [False, True])
def test_td3bc_actor_loss_equals_numpy_eq4_and_eq12(relax):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch = fixed_batch(rng)
    config = TD3BCConfig(hidden=(8, 8), alpha=2.5, constraint_relaxation=relax)
    algo = TD3BC(config, S, A, behavior=BehaviorInputs())
    loss, metrics = algo.actor_loss(batch)

    obs, act = batch.observations.double().numpy(), batch.actions.double().numpy()
    pi = np.tanh(np_mlp(algo.actor.net, obs))
    q1 = np_ensemble_q(algo.critic, obs, pi)[0]
    lmbda = 2.5 / np.abs(q1).mean()
    bc = ((pi - act) ** 2).mean(-1)
    if relax:  # Eq. 10 on the two critics' mean at the dataset action
        q_data = np_ensemble_q(algo.critic, obs, act).mean(0)
        bc = bc * (q_data - q_data.min()) / (q_data.max() - q_data.min())
    expected = -lmbda * q1.mean() + bc.mean()
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_td3bc_plus_plus_weight_uses_the_critic_step_values_when_given():
    """update() hands the critic step's Q(s, a) to the actor (the listing's current_Q): W is
    Eq. 10 of exactly those values, not of a fresh critic call."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    batch = fixed_batch(rng)
    algo = TD3BC(TD3BCConfig(hidden=(8, 8), alpha=2.5, constraint_relaxation=True), S, A, behavior=BehaviorInputs())
    data_q = torch.as_tensor(rng.normal(size=(2, len(batch.actions))), dtype=torch.float32)
    loss, _ = algo.actor_loss(batch, data_q)

    obs, act = batch.observations.double().numpy(), batch.actions.double().numpy()
    pi = np.tanh(np_mlp(algo.actor.net, obs))
    q1 = np_ensemble_q(algo.critic, obs, pi)[0]
    mean_q = data_q.double().numpy().mean(0)
    weight = (mean_q - mean_q.min()) / (mean_q.max() - mean_q.min())
    expected = -2.5 / np.abs(q1).mean() * q1.mean() + (((pi - act) ** 2).mean(-1) * weight).mean()
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("epsilon, start, bound", [(-1.0, 10.0 - 1e-4, 10.0), (10.0, -5.0 + 1e-4, -5.0)])
def test_bear_log_alpha_stays_in_its_clamp(epsilon, start, bound):
    """ALGORITHMS.md "BEAR": log alpha is clamped to [-5, 10] after each dual step. One Adam step of lr
    1e-2 moves it about 1e-2, past a bound 1e-4 away (up when MMD > eps always, down when never)."""
    torch.manual_seed(0)
    behavior = np.random.default_rng(0).uniform(-1, 1, (B, 4, A))
    algo = bear(False, behavior, epsilon=epsilon, initial_log_alpha=start, alpha_lr=1e-2, warmup_steps=0)
    algo.update(fixed_batch(np.random.default_rng(1)))
    assert float(algo.log_alpha.detach()) == bound


def test_td3bc_plus_plus_update_weights_by_the_critic_before_its_step():
    """In update(), Eq. 10's W comes from the Q(s, a) of the critic step, before that step's gradient (the
    listing's current_Q, as td3bc.py documents), not from the critic after it. The logged actor loss of
    update 2 (an actor step) is checked against NumPy with W from the critic as it was before update 2."""
    torch.manual_seed(0)
    batch = fixed_batch(np.random.default_rng(2))
    algo = TD3BC(TD3BCConfig(hidden=(8, 8), alpha=2.5, constraint_relaxation=True, critic_lr=0.05), S, A,
                 behavior=BehaviorInputs())
    algo.update(batch)  # update 1: a critic step only (policy_freq = 2)
    critic_before, actor_before = copy.deepcopy(algo.critic), copy.deepcopy(algo.actor)
    metrics = algo.update(batch)  # update 2: critic step, then the actor's on the critic after it

    obs, act = batch.observations.double().numpy(), batch.actions.double().numpy()
    pi = np.tanh(np_mlp(actor_before.net, obs))
    q1 = np_ensemble_q(algo.critic, obs, pi)[0]
    bc = ((pi - act) ** 2).mean(-1)

    def loss(q_data):
        weight = (q_data - q_data.min()) / (q_data.max() - q_data.min() + 1e-6)
        return -2.5 / np.abs(q1).mean() * q1.mean() + (bc * weight).mean()

    expected = loss(np_ensemble_q(critic_before, obs, act).mean(0))
    assert abs(expected - loss(np_ensemble_q(algo.critic, obs, act).mean(0))) > 1e-3  # the two critics' W differ
    assert float(metrics["actor_loss"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
