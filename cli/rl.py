"""``rl``: offline RL training and evaluation on top of behavior models."""

from __future__ import annotations

from cli.common import root_group
from cli.rl_train import eval_command, plot_command, train_group

main = root_group("rl", "Offline RL: train and evaluate ARQ, SPOT, BEAR(++), TD3+BC(++), DASCO and BC.")
main.add_command(train_group)
main.add_command(eval_command)
main.add_command(plot_command)


if __name__ == "__main__":
    main()
