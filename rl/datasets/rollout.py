"""Rolling a policy out in a Gymnasium environment: episodes for a dataset, or returns for a score.

A policy here is a function ``policy(obs) -> action`` of the raw (dict) observation. Actions
are cast to the action space's dtype *before* the step, so the stored action is exactly the
one the environment executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Policy = Callable[[Any], np.ndarray]


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: _stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def collect_episodes(env, policy: Policy, episodes: int, *, env_seed: int, progress: Any = None) -> list[dict]:
    """``episodes`` episodes as ``create_dataset_from_buffers`` dicts (T+1 observations, T steps).

    The environment is seeded once, at the first reset; later resets continue its random
    stream, so the whole list is determined by ``env_seed`` and the policy's own randomness.
    ``progress`` (a tqdm bar or None) is advanced by one per step.
    """
    dtype = env.action_space.dtype
    out = []
    for index in range(episodes):
        obs, _ = env.reset(seed=env_seed if index == 0 else None)
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        while True:
            action = np.asarray(policy(obs), dtype=dtype)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terminations.append(bool(terminated))
            truncations.append(bool(truncated))
            if progress is not None:
                progress.update(1)
            if terminated or truncated:
                break
        out.append({
            "observations": _stack(observations),
            "actions": np.stack(actions),
            "rewards": np.asarray(rewards, np.float64),
            "terminations": np.asarray(terminations, bool),
            "truncations": np.asarray(truncations, bool),
        })
    return out


@dataclass(frozen=True)
class Evaluation:
    """Undiscounted returns and goal success (``info['success']`` at any step) per episode."""

    returns: np.ndarray
    successes: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes))


def evaluate(env, policy: Policy, episodes: int, *, env_seed: int, progress: Any = None) -> Evaluation:
    """Run ``episodes`` evaluation episodes (seeded once, like :func:`collect_episodes`)."""
    dtype = env.action_space.dtype
    returns, successes = np.zeros(episodes), np.zeros(episodes, bool)
    for index in range(episodes):
        obs, _ = env.reset(seed=env_seed if index == 0 else None)
        success = False
        while True:
            obs, reward, terminated, truncated, info = env.step(np.asarray(policy(obs), dtype=dtype))
            returns[index] += float(reward)
            success |= bool(info.get("success", False))
            if progress is not None:
                progress.update(1)
            if terminated or truncated:
                break
        successes[index] = success
    return Evaluation(returns, successes)
