"""Small real datasets with an evaluation environment, and sample caches built from arrays."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from behavior_models.cache import SampleCache
from behavior_models.data import Transitions, load_transitions, write_minari_dataset

ENV_ID = "MountainCarContinuous-v0"  # Box obs (2), Box action (1) in [-1, 1], no MuJoCo: cheap


def write_env_dataset(dataset_id: str = "test/mcar-v0", episodes: int = 6, steps: int = 40, seed: int = 0,
                      ref_scores: tuple[float, float] | None = (-5.0, 5.0)) -> Transitions:
    """Episodes of a noisy scripted policy in the real environment, with its env spec stored."""
    env = gym.make(ENV_ID, max_episode_steps=steps)
    rng = np.random.default_rng(seed)
    buffers = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        done = False
        while not done:
            action = np.clip(np.sign(obs[1] + 1e-3) + 0.3 * rng.normal(size=1), -1, 1).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs), actions.append(action), rewards.append(reward)
            terms.append(terminated), truncs.append(truncated)
            done = terminated or truncated
        buffers.append({"observations": np.asarray(observations, np.float32), "actions": np.asarray(actions),
                        "rewards": np.asarray(rewards, np.float32), "terminations": np.asarray(terms),
                        "truncations": np.asarray(truncs)})
    kwargs = {} if ref_scores is None else {"ref_min_score": ref_scores[0], "ref_max_score": ref_scores[1]}
    write_minari_dataset(dataset_id, buffers, env=env, **kwargs)
    return load_transitions(dataset_id)


def array_cache(transitions: Transitions, candidates: np.ndarray, log_probs: np.ndarray | None = None,
                in_support: np.ndarray | None = None) -> SampleCache:
    """A SampleCache built from arrays: rows 0..n-1 hold the candidates at s_t, rows n..2n-1 those
    at s_{t+1} (``bm sample-cache`` shares rows between s_{t+1} and s_{t+1}'s own transition)."""
    n = len(transitions)
    assert candidates.shape[0] == 2 * n
    log_probs = np.full(candidates.shape[:2], np.nan) if log_probs is None else log_probs
    in_support = np.ones(candidates.shape[:2], bool) if in_support is None else in_support
    return SampleCache(torch.as_tensor(candidates, dtype=torch.float32), torch.as_tensor(log_probs, dtype=torch.float32),
                      torch.as_tensor(in_support), torch.arange(n), torch.arange(n, 2 * n),
                      {"dataset_id": transitions.dataset_id, "dataset_fingerprint": transitions.fingerprint})


def random_cache(transitions: Transitions, n: int = 8, seed: int = 0, drop: float = 0.3) -> SampleCache:
    rng = np.random.default_rng(seed)
    rows = 2 * len(transitions)
    candidates = rng.uniform(-1, 1, size=(rows, n, transitions.act_dim)).astype(np.float32)
    log_probs = rng.normal(size=(rows, n)).astype(np.float32)
    return array_cache(transitions, candidates, log_probs, rng.uniform(size=(rows, n)) > drop)


def assert_resume_is_exact(build, out_dir, crash_at: int):
    """Train ``build()`` uninterrupted into out_dir/full; train another ``build()`` into
    out_dir/resumed, crash it (KeyboardInterrupt) before update ``crash_at``, resume it from its
    checkpoint with a third ``build()``; assert the two runs end bit for bit the same (every
    tensor of the algorithm, the whole metrics.csv). Returns the resumed run's directory."""
    import pytest
    import torch

    from rl.core.trainer import Trainer

    full = build()
    Trainer(full, out_dir / "full", progress=False, echo=lambda _: None).train()
    interrupted = build()
    original = interrupted.algorithm.update

    def crash(batch):
        if interrupted.algorithm.updates == crash_at:
            raise KeyboardInterrupt
        return original(batch)

    interrupted.algorithm.update = crash
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, out_dir / "resumed", progress=False, echo=lambda _: None).train()
    checkpoints = sorted(p.name for p in (out_dir / "resumed" / "checkpoints").iterdir())
    resumed = build()
    # A run restarted from step 0 would also end equal (training is deterministic): the resumed
    # one must start at its newest checkpoint and make only the remaining updates.
    calls, resumed_update = [], resumed.algorithm.update
    resumed.algorithm.update = lambda batch: calls.append(1) or resumed_update(batch)
    trainer = Trainer(resumed, out_dir / "resumed", resume=True, progress=False, echo=lambda _: None)
    start = int(checkpoints[-1].removeprefix("step_").removesuffix(".pt"))
    assert trainer.start_step == start > 0
    trainer.train()
    assert len(calls) == full.run_config.steps - start
    for key, value in full.algorithm.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.algorithm.state_dict()[key]), key
    assert (out_dir / "full" / "metrics.csv").read_text() == (out_dir / "resumed" / "metrics.csv").read_text()
    return checkpoints
