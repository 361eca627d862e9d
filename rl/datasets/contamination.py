"""The expert-random-X contamination recipe (seed 001, Appendix A).

"Expert-random-10 [is] constructed by first loading an expert dataset and then replacing the
final 10 percent transitions with tuples from random trajectories, i.e., the first 10 percent
in the corresponding random dataset." With N the expert dataset's transition count:

* n_random = floor(X * N / 100) transitions come from the *start* of the random dataset;
* n_expert = N - n_random transitions are the expert dataset's first ones;
* the total stays N (the paper's Table 3: hopper 999,034 = 899,131 + 99,903 for X = 10).

The random dataset must hold at least n_random transitions. Where a cut falls inside an
episode, that episode ends at the cut as *truncated* (not terminated: the state after the cut
is not terminal), so its last step has no next action in the loaded ``Transitions``
(``next_action_valid`` False), like any episode end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from behavior_models.errors import DatasetError


@dataclass(frozen=True)
class ContaminationCounts:
    total: int
    expert: int
    random: int
    expert_cut_inside_episode: bool
    random_cut_inside_episode: bool


def _slice_observations(observations: Any, stop: int) -> Any:
    if isinstance(observations, dict):
        return {key: _slice_observations(value, stop) for key, value in observations.items()}
    return np.asarray(observations)[:stop]


def episode_steps(episode: dict[str, Any]) -> int:
    return int(len(episode["actions"]))


def head_transitions(episodes: list[dict[str, Any]], count: int) -> tuple[list[dict[str, Any]], bool]:
    """The first ``count`` transitions as episodes, and whether the cut fell inside an episode.

    Whole episodes are kept while they fit; the episode the cut falls in keeps its first steps
    and ends there as truncated (T kept steps keep T + 1 observations).
    """
    out: list[dict[str, Any]] = []
    remaining = count
    for episode in episodes:
        if remaining <= 0:
            break
        steps = episode_steps(episode)
        if steps <= remaining:
            out.append(episode)
            remaining -= steps
            continue
        cut = {
            "observations": _slice_observations(episode["observations"], remaining + 1),
            "actions": np.asarray(episode["actions"])[:remaining],
            "rewards": np.asarray(episode["rewards"])[:remaining],
            "terminations": np.zeros(remaining, bool),
            "truncations": np.zeros(remaining, bool),
        }
        cut["truncations"][-1] = True
        out.append(cut)
        return out, True
    if remaining > 0:
        raise ValueError(f"asked for {count} transitions, the episodes hold {count - remaining}")
    return out, False


def contaminate(expert: list[dict[str, Any]], random: list[dict[str, Any]],
                percent: int) -> tuple[list[dict[str, Any]], ContaminationCounts]:
    """Replace the final ``percent``% of ``expert``'s transitions by the first ones of ``random``."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be in [0, 100], got {percent}")
    total = sum(episode_steps(e) for e in expert)
    n_random = int(percent) * total // 100  # exact integer floor of X% of N
    n_expert = total - n_random
    available = sum(episode_steps(e) for e in random)
    if available < n_random:
        raise DatasetError(
            f"the random dataset holds {available} transitions, but expert-random-{percent} of a "
            f"{total}-transition expert dataset needs {n_random}: build a larger random dataset "
            "(more episodes) or a smaller expert one."
        )
    kept_expert, expert_cut = head_transitions(expert, n_expert)
    kept_random, random_cut = head_transitions(random, n_random)
    counts = ContaminationCounts(total, n_expert, n_random, expert_cut, random_cut)
    return kept_expert + kept_random, counts
