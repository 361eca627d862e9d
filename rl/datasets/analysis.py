"""Checking a noisy / biased dataset against Listing 1, bucket by bucket.

The planner is a deterministic function of the observation, so the expert action behind
every stored action can be recomputed from the stored observation. The residual
r = a_stored - a_expert then shows the perturbation: per x-bucket k, before clipping,
r ~ N(-bias_k, noise_k^2) on each entry. Clipping to [-1, 1] shifts and shrinks it; the
expected mean and std *with* clipping follow in closed form from the moments of a clipped
normal (:func:`clipped_normal_moments`), given each sample's expert action.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm

from rl.datasets.perturbation import XBucketPerturbation
from rl.datasets.pointmaze import PlannerConfig, WaypointPlanner, make_env, maze_of, eval_env_spec


def clipped_normal_moments(mean: np.ndarray, std: float) -> tuple[np.ndarray, np.ndarray]:
    """E[Y] and Var[Y] for Y = clip(mean + std * Z, -1, 1), Z ~ N(0, 1), elementwise."""
    mean = np.asarray(mean, np.float64)
    if std == 0.0:
        return np.clip(mean, -1.0, 1.0), np.zeros_like(mean)
    alpha, beta = (-1.0 - mean) / std, (1.0 - mean) / std
    p_low, p_high = norm.cdf(alpha), norm.sf(beta)
    p_mid = norm.cdf(beta) - norm.cdf(alpha)
    pdf_a, pdf_b = norm.pdf(alpha), norm.pdf(beta)
    # Truncated part: E[(m + sZ) 1{alpha < Z < beta}] and E[(m + sZ)^2 1{...}].
    first = mean * p_mid + std * (pdf_a - pdf_b)
    second = (mean**2 * p_mid + 2 * mean * std * (pdf_a - pdf_b)
              + std**2 * (p_mid + alpha * pdf_a - beta * pdf_b))
    expected = -p_low + p_high + first
    variance = p_low + p_high + second - expected**2
    return expected, np.maximum(variance, 0.0)


def x_bucket_statistics(episodes: list[dict[str, Any]], maze: str, policy: str,
                        planner: PlannerConfig = PlannerConfig()) -> list[dict[str, float]]:
    """Per x-bucket: count, the listing's noise/bias, measured and expected residual mean/std.

    ``episodes`` are raw episodes with dict observations (``rl.datasets.storage.read_episodes``);
    ``policy`` is ``noisy`` or ``biased``. Means and stds are over both action entries.
    """
    env = make_env(eval_env_spec(maze))
    expert = WaypointPlanner(maze_of(env), planner)
    perturb = XBucketPerturbation.for_maze(maze_of(env).maze_map, with_bias=policy == "biased")
    env.close()
    states = np.concatenate([e["observations"]["observation"][:-1] for e in episodes])
    goals = np.concatenate([e["observations"]["desired_goal"][:-1] for e in episodes])
    actions = np.concatenate([np.asarray(e["actions"], np.float64) for e in episodes])
    expert_actions = np.stack([expert.act({"observation": s, "desired_goal": g}) for s, g in zip(states, goals)])
    buckets = perturb.bucket(states[:, 0])
    rows = []
    for k, (noise, bias) in enumerate(zip(perturb.noises, perturb.biases)):
        mask = buckets == k
        lower = perturb.edges[k]
        upper = perturb.edges[k + 1] if k + 1 < len(perturb.edges) else np.inf
        row = {"bucket": k, "x_from": lower, "x_to": upper, "noise": noise, "bias": bias, "count": int(mask.sum())}
        if mask.any():
            residual = actions[mask] - expert_actions[mask]
            cond_mean, cond_var = clipped_normal_moments(expert_actions[mask] - bias, noise)
            cond_residual = cond_mean - expert_actions[mask]
            row.update(
                residual_mean=float(residual.mean()), expected_mean=float(cond_residual.mean()),
                residual_std=float(residual.std()),
                expected_std=float(np.sqrt(cond_var.mean() + cond_residual.var())),
                mean_standard_error=float(np.sqrt(cond_var.mean() / residual.size)),
                boundary_fraction=float(np.mean(np.abs(actions[mask]) >= 1.0)),
            )
        rows.append(row)
    return rows
