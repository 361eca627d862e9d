"""``rl``: offline RL training and evaluation on top of behavior models."""

from __future__ import annotations

from cli.common import root_group

main = root_group("rl", "Offline RL: train and evaluate ARQ, SPOT, BEAR(++), TD3+BC(++), DASCO and BC.")


if __name__ == "__main__":
    main()
