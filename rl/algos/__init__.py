"""Offline RL algorithms, one module each, all on the shared core (:mod:`rl.core`).

``ALGORITHMS`` maps a name to ``"module:Class"``; add one line per algorithm.
"""

from __future__ import annotations

from behavior_models.registry import lazy_lookup

ALGORITHMS: dict[str, str] = {
    "bc": "rl.algos.bc:BC",
    "arq": "rl.algos.arq:ARQ",
    "spot": "rl.algos.spot:SPOT",
    "bear": "rl.algos.bear:BEAR",
    "bear++": "rl.algos.bear:BEARPlusPlus",
    "td3bc": "rl.algos.td3bc:TD3BC",
    "td3bc++": "rl.algos.td3bc:TD3BCPlusPlus",
    "dasco": "rl.algos.dasco:DASCO",
}


def algorithm_class(name: str):
    return lazy_lookup(ALGORITHMS, name, "algorithm")
