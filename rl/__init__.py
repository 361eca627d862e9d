"""Offline RL algorithms that consume behavior models (ARQ, SPOT, BEAR, TD3+BC, DASCO)."""
