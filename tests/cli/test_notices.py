"""gymnasium_robotics' import-time notice (farama_notifications: AdroitHand*Dense-v1 rewards) is
kept out of the commands' output, and nothing else printed at that import is lost."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _notice():
    import importlib.metadata

    from farama_notifications import notifications

    return notifications.get("gymnasium_robotics", {}).get(importlib.metadata.version("gymnasium_robotics"))


def _stderr(code, **env):
    import os

    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_a_plain_import_prints_the_notice_so_the_tests_below_mean_something():
    notice = _notice()
    assert notice, "this gymnasium_robotics prints no farama notice: import_gymnasium_robotics is no longer needed"
    assert notice in _stderr("import gymnasium_robotics")


def test_pointmaze_environments_are_made_without_the_notice():
    code = ("import sys\n"
            "from rl.datasets.pointmaze import import_gymnasium_robotics, make_env, eval_env_spec\n"
            "make_env(eval_env_spec('umaze'))\n"
            "import gymnasium as gym\n"
            "gym.make('PointMaze_UMaze-v3')  # as recover_environment does, after the quiet import\n"
            "print('done', file=sys.stderr)\n")
    stderr = _stderr(code)
    assert "AdroitHand" not in stderr and "reward functions were updated" not in stderr
    assert stderr.strip().endswith("done")


def test_evaluating_on_a_pointmaze_dataset_prints_no_notice(tmp_path):
    """The evaluation env factory (rl train, rl eval and the benchmarks all go through it)."""
    build = ("from rl.datasets import make_dataset\n"
             "make_dataset('pointmaze-umaze-noisy', episodes=2, episode_steps=20, reference_episodes=1, progress=False)\n")
    _stderr(build, MINARI_DATASETS_PATH=str(tmp_path))
    evaluate = ("import sys\n"  # a fresh process: nothing has imported gymnasium_robotics yet
                "from rl.core.evaluation import make_eval_env_factory\n"
                "make_eval_env_factory('local/pointmaze-umaze-noisy-v0')().reset(seed=0)\n"
                "assert 'gymnasium_robotics' in sys.modules\n"
                "print('done', file=sys.stderr)\n")
    stderr = _stderr(evaluate, MINARI_DATASETS_PATH=str(tmp_path))
    assert "reward functions were updated" not in stderr and stderr.strip().endswith("done")


def test_only_the_notice_is_dropped(tmp_path):
    """A stand-in gymnasium_robotics that prints its version's notice and a line of its own."""
    package = tmp_path / "gymnasium_robotics"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import sys\n"
        "__version__ = '1.4.2'\n"
        "print('a warning of its own', file=sys.stderr)\n"
        "from farama_notifications import notifications\n"
        "print(notifications['gymnasium_robotics'][__version__], file=sys.stderr)\n")
    code = ("from rl.datasets.pointmaze import import_gymnasium_robotics\n"
            "assert import_gymnasium_robotics().__version__ == '1.4.2'\n")
    stderr = _stderr(code, PYTHONPATH=f"{tmp_path}:{ROOT}")
    assert stderr == "a warning of its own\n"
