"""What Run.build hands an algorithm and what Run.policy acts with, against NumPy on the dataset:
the rewards after exactly one transform (rl.core.rewards), and an evaluation policy that z-scores raw
observations with the dataset's statistics and takes the policy's mean action when deterministic.

The algorithms' own tests feed them batches directly, so they cannot see a reward transformed twice
or an evaluation policy that skips the state normalisation or samples where it should not.
"""

import numpy as np
import pytest

from rl.algos.bc import BCConfig
from rl.algos.dasco import DASCOConfig
from rl.core.trainer import Run, RunConfig


def np_episode_returns(transitions):
    starts = np.flatnonzero(np.r_[True, np.diff(transitions.episode_ids) != 0])
    return np.add.reduceat(transitions.rewards.astype(np.float64), starts)


@pytest.mark.parametrize("transform", ["none", "minus_one", "return_range"])
def test_the_buffer_holds_the_dataset_rewards_transformed_once(env_transitions, transform):
    run = Run.build("bc", env_transitions, BCConfig(hidden=(8,), reward_transform=transform), RunConfig(seed=0))
    rewards = env_transitions.rewards.astype(np.float64)
    returns = np_episode_returns(env_transitions)
    expected = {"none": rewards, "minus_one": rewards - 1.0,
                "return_range": rewards * 1000.0 / (returns.max() - returns.min())}[transform]
    np.testing.assert_allclose(run.buffer.column("rewards").double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_the_evaluation_policy_normalises_raw_observations_and_acts_with_the_mean(env_transitions):
    """DASCO's tanh-Gaussian policy: deterministic acting is tanh(mu((s - mean) / (std + eps))), mean and std
    of the dataset's observations; sampled acting is not."""
    from tests.rl.algos.test_golden import np_mlp

    config = DASCOConfig(critic_hidden=(8,), policy_hidden=(8,), gan_hidden=(8,), state_eps=1e-3)
    run = Run.build("dasco", env_transitions, config, RunConfig(seed=0))
    raw = env_transitions.observations[::7].astype(np.float32)
    obs = env_transitions.observations.astype(np.float64)
    assert np.abs(obs.mean(0)).max() > 0.1  # normalising changes the input
    normalised = (raw - obs.mean(0)) / (obs.std(0) + 1e-3)
    expected = np.tanh(np_mlp(run.algorithm.policy.net, normalised)[:, :env_transitions.act_dim])
    for _ in range(2):
        np.testing.assert_allclose(run.policy(deterministic=True)(raw), expected, rtol=1e-4, atol=1e-5)
    assert np.abs(run.policy(deterministic=False)(raw) - expected).max() > 1e-2


@pytest.mark.parametrize("eval_deterministic", [True, False])
def test_evaluation_acts_as_run_config_eval_deterministic_says(env_transitions, monkeypatch, eval_deterministic):
    """Run.evaluate hands the rollout the policy RunConfig.eval_deterministic asks for (default: the mean)."""
    import rl.core.trainer

    policies = []
    monkeypatch.setattr(rl.core.trainer, "evaluate", lambda policy, *args, **kwargs: policies.append(policy))
    config = DASCOConfig(critic_hidden=(8,), policy_hidden=(8,), gan_hidden=(8,))
    run = Run.build("dasco", env_transitions, config, RunConfig(seed=0, eval_deterministic=eval_deterministic))
    run.evaluate(episodes=1)
    raw = env_transitions.observations[::7].astype(np.float32)
    mean_action = run.policy(deterministic=True)(raw)
    np.testing.assert_equal(np.array_equal(policies[0](raw), mean_action), eval_deterministic)
