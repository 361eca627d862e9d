"""Small real Minari datasets for tests, written through ``create_dataset_from_buffers``."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from behavior_models.data import load_transitions, write_minari_dataset
from rl.datasets.pointmaze import GOAL_RADIUS


def copied(observation):
    """An env's observation (an array or nested dicts of them) copied as float64: FrankaKitchen
    returns the same dict from every reset and step, updated in place."""
    if isinstance(observation, dict):
        return {key: copied(value) for key, value in observation.items()}
    return np.array(observation, np.float64)


def stacked(frames):
    """Per-step observations (arrays or nested dicts) stacked along a new first axis."""
    if isinstance(frames[0], dict):
        return {key: stacked([frame[key] for frame in frames]) for key in frames[0]}
    return np.stack(frames)


def flat_episode(rng: np.random.Generator, steps: int, obs_dim: int, act_dim: int,
                 terminated: bool = False) -> dict:
    terminations = np.zeros(steps, bool)
    truncations = np.zeros(steps, bool)
    if steps:
        (terminations if terminated else truncations)[-1] = True
    return {
        "observations": rng.normal(size=(steps + 1, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(steps, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=steps).astype(np.float32),
        "terminations": terminations,
        "truncations": truncations,
    }


def write_flat_dataset(dataset_id: str, episode_lengths=(5, 7, 4), obs_dim: int = 3, act_dim: int = 2,
                       seed: int = 0, terminated=None, mutate=None, **kwargs):
    """Flat Box observations; episode i terminates if ``terminated[i]`` else is truncated."""
    rng = np.random.default_rng(seed)
    terminated = terminated or [False] * len(episode_lengths)
    episodes = [flat_episode(rng, n, obs_dim, act_dim, t) for n, t in zip(episode_lengths, terminated)]
    if mutate is not None:
        mutate(episodes)
    write_minari_dataset(
        dataset_id, episodes,
        observation_space=spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        **kwargs,
    )
    return episodes


# A conditional Gaussian with a closed-form density: a | s ~ N(W s + b, diag(sigma(s)^2)),
# sigma(s) = sigma0 * exp(0.3 * tanh(s_0)). Means stay within [-0.6, 0.6] and sigma <= 0.14,
# so the action box [-1, 1] cuts off less than 1e-6 of the mass.
GAUSSIAN_W = np.array([[0.3, -0.2], [0.1, 0.25], [-0.15, 0.1]], np.float64)  # [S=2, A=3]^T layout: A x S
GAUSSIAN_B = np.array([0.1, -0.1, 0.05])
GAUSSIAN_SIGMA0 = 0.1


def gaussian_mean_std(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = obs @ GAUSSIAN_W.T + GAUSSIAN_B
    std = GAUSSIAN_SIGMA0 * np.exp(0.3 * np.tanh(obs[:, :1])) * np.ones((1, GAUSSIAN_W.shape[0]))
    return mean, std


def gaussian_log_density(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    mean, std = gaussian_mean_std(obs.astype(np.float64))
    z = (act - mean) / std
    return (-0.5 * z**2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(1)


def write_conditional_gaussian_dataset(dataset_id: str, episodes: int = 40, steps: int = 100, seed: int = 0):
    """States s ~ U[-1, 1]^2 drawn i.i.d. per step; actions from the closed-form Gaussian."""
    rng = np.random.default_rng(seed)
    buffers = []
    for _ in range(episodes):
        obs = rng.uniform(-1, 1, size=(steps + 1, 2))
        mean, std = gaussian_mean_std(obs[:-1])
        act = np.clip(mean + std * rng.normal(size=mean.shape), -1, 1)
        buffers.append({"observations": obs.astype(np.float32), "actions": act.astype(np.float32),
                        "rewards": np.zeros(steps, np.float32), "terminations": np.zeros(steps, bool),
                        "truncations": np.eye(steps, dtype=bool)[-1]})
    write_minari_dataset(dataset_id, buffers, observation_space=spaces.Box(-1, 1, (2,), np.float32),
                         action_space=spaces.Box(-1, 1, (3,), np.float32))


def assert_same_cache(a, b, action_atol: float = 1e-5, log_prob_atol: float = 1e-4, mask_margin: float = 1e-3):
    """Two sample caches are equal in the sense of issue 6: actions within 1e-5, log-probs within
    1e-4, masks identical except where a log-prob lies within 1e-3 of the threshold."""
    import torch

    assert a.candidates.shape == b.candidates.shape and a.candidates.dtype == b.candidates.dtype
    torch.testing.assert_close(a.obs_row, b.obs_row, rtol=0, atol=0)
    torch.testing.assert_close(a.next_obs_row, b.next_obs_row, rtol=0, atol=0)
    torch.testing.assert_close(a.candidates.float(), b.candidates.float(), rtol=0, atol=action_atol)
    torch.testing.assert_close(a.log_probs, b.log_probs, rtol=0, atol=log_prob_atol, equal_nan=True)
    near = (a.log_probs - a.threshold).abs() <= mask_margin
    assert torch.equal(a.in_support[~near], b.in_support[~near])
    assert a.threshold == b.threshold
    for key in ("dataset_fingerprint", "model_fingerprint", "num_samples", "seed", "batch_states", "dtype"):
        assert a.metadata[key] == b.metadata[key], key


def sparse_goal_reward(achieved, desired, info):
    """gymnasium-robotics' sparse maze reward, batched: 1 within GOAL_RADIUS of the goal."""
    return (np.linalg.norm(achieved - desired, axis=-1) <= GOAL_RADIUS).astype(np.float64)


def write_goal_switch_dataset(dataset_id="test/goals-v0"):
    """One 6-step episode whose goal is re-sampled on arrival, recorded as gymnasium-robotics records
    it: the arrival step is paid against the old goal, and the next observation carries the new one."""
    g1, g2 = np.array([1.0, 1.0]), np.array([-2.0, 0.5])
    position = np.array([[0.0, 0.0], [0.6, 0.6], [0.9, 1.0], [1.1, 1.0], [0.5, 0.8], [0.0, 0.6], [-1.0, 0.5]])
    desired = np.array([g1, g1, g1, g2, g2, g2, g2])  # arrival at step 1 -> 2; the goal jumps at 2 -> 3
    velocity = np.diff(position, axis=0, prepend=position[:1])
    observations = {"observation": np.concatenate([position, velocity], axis=1), "achieved_goal": position,
                    "desired_goal": desired}
    rewards = sparse_goal_reward(position[1:], desired[:-1], None)  # the data env's reward: against s_t's goal...
    rewards[2] = sparse_goal_reward(position[3], g2, None)  # ...but the goal was re-sampled before step 2 was paid
    box = spaces.Box(-5, 5, (2,), np.float64)
    space = spaces.Dict({"observation": spaces.Box(-5, 5, (4,), np.float64), "achieved_goal": box, "desired_goal": box})
    episode = {"observations": observations, "actions": np.full((6, 2), 0.1, np.float32), "rewards": rewards,
               "terminations": np.zeros(6, bool), "truncations": np.eye(6, dtype=bool)[-1]}
    write_minari_dataset(dataset_id, [episode], observation_space=space,
                         action_space=spaces.Box(-1, 1, (2,), np.float32))
    return load_transitions(dataset_id), g1, g2
