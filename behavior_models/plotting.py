"""Pictures of a fitted behavior model against its data (``bm plot``); matplotlib, Agg backend.

* 1-D actions: a heat map of beta(a|s) over (one state coordinate, the action), with the
  dataset's (state coordinate, action) pairs on top, as in seed 002, Fig. A.1. The model is
  evaluated at held-out dataset states ordered by that coordinate, so other coordinates take
  the values they have in the data. An unnormalised backend (the GAN) shows sigmoid(score),
  its discriminator output D(s, a), instead of a density.
* More dimensions: for a few held-out states, 2-D marginals (pairs of action dimensions) of
  model samples against the dataset actions of the nearest dataset states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from behavior_models.base import BehaviorModel
from behavior_models.data.transitions import Transitions
from behavior_models.errors import ConfigError
from behavior_models.io import atomic_path
from behavior_models.zoo import evaluation_split, seeded


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def plot_model(model: BehaviorModel, transitions: Transitions, out: str | Path, *, state_dim: int = 0,
               num_states: int = 4, dims: Sequence[int] | None = None, num_samples: int = 500,
               resolution: int = 160, seed: int = 0) -> Path:
    """Draw the picture for ``model`` on ``transitions`` into ``out`` (PNG); return the path."""
    plt = _pyplot()
    split, split_name = evaluation_split(model, transitions)
    rng = np.random.default_rng(seed)
    with seeded(seed, model.device):
        if model.act_dim == 1:
            figure = _heat_map(plt, model, transitions, split, state_dim, resolution, rng)
        else:
            figure = _marginals(plt, model, transitions, split, num_states, dims, num_samples, rng)
    figure.suptitle(f"{model.name} on {transitions.dataset_id} ({split_name}); log_prob: {model.log_prob_kind}",
                    fontsize=9)
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return out


def _heat_map(plt, model, transitions, split, state_dim, resolution, rng):
    if not 0 <= state_dim < model.obs_dim:
        from behavior_models.errors import ConfigError

        raise ConfigError(f"state_dim must be in [0, {model.obs_dim}), got {state_dim}")
    order = np.argsort(split.observations[:, state_dim])
    states = split.observations[order[np.linspace(0, len(order) - 1, resolution).astype(int)]]
    grid = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
    obs = np.repeat(states, resolution, axis=0)
    act = np.tile(grid, resolution)[:, None]
    scores = model.batched_log_prob(obs, act, batch_size=4096).numpy().reshape(resolution, resolution)
    if model.log_prob_kind == "unnormalized":
        values, label = 1.0 / (1.0 + np.exp(-scores)), "D(s, a) = sigmoid(score) (unnormalised)"
    else:
        values, label = np.exp(scores), "beta(a | s)"
    figure, axis = plt.subplots(figsize=(7, 5))
    vmax = np.quantile(values, 0.995) if model.log_prob_kind != "unnormalized" else 1.0
    mesh = axis.pcolormesh(states[:, state_dim], grid, values.T, shading="nearest", cmap="viridis",
                           vmin=0.0, vmax=vmax)
    figure.colorbar(mesh, ax=axis, label=label)
    shown = rng.choice(len(transitions), min(len(transitions), 1500), replace=False)
    axis.scatter(transitions.observations[shown, state_dim], transitions.actions[shown, 0], s=4, c="red",
                 marker="x", linewidths=0.5, label="dataset")
    axis.set_xlabel(f"state[{state_dim}]")
    axis.set_ylabel("action")
    axis.set_ylim(-1.02, 1.02)
    axis.legend(loc="upper right", fontsize=8)
    return figure


def _marginals(plt, model, transitions, split, num_states, dims, num_samples, rng):
    dims = list(dims) if dims else list(range(min(model.act_dim, 4)))
    if len(dims) < 2:
        raise ConfigError(f"the marginal panels pair consecutive action dimensions: give at least two, got {dims}")
    pairs = [(dims[i], dims[i + 1]) for i in range(0, len(dims) - 1)]
    picks = rng.choice(len(split), min(num_states, len(split)), replace=False)
    stats_std = transitions.observations.std(0) + 1e-6
    figure, axes = plt.subplots(len(picks), len(pairs), figsize=(3.2 * len(pairs), 3.0 * len(picks)),
                                squeeze=False)
    for row, pick in enumerate(picks):
        state = split.observations[pick]
        obs = torch.as_tensor(state[None], dtype=model.obs_mean.dtype, device=model.device)
        samples = model.sample(obs, num_samples)[0].cpu().numpy()
        # Dataset actions of the 200 dataset states nearest to this one (normalised distance).
        distance = np.linalg.norm((transitions.observations - state) / stats_std, axis=1)
        near = transitions.actions[np.argsort(distance)[:200]]
        for col, (i, j) in enumerate(pairs):
            axis = axes[row, col]
            axis.scatter(samples[:, i], samples[:, j], s=3, alpha=0.4, label="model samples")
            axis.scatter(near[:, i], near[:, j], s=5, c="red", marker="x", linewidths=0.6,
                         label="data, nearest states")
            axis.set_xlim(-1.05, 1.05)
            axis.set_ylim(-1.05, 1.05)
            axis.set_xlabel(f"a[{i}]")
            axis.set_ylabel(f"a[{j}]")
            if col == 0:
                axis.set_title(f"held-out state #{pick}", fontsize=8, loc="left")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return figure
