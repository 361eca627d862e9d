"""A resumed BEAR++ / TD3BC++ / DASCO run equals the uninterrupted one, bit for bit."""

import pytest

from rl.algos.bear import BEARPlusPlusConfig
from rl.algos.dasco import DASCOConfig
from rl.algos.td3bc import TD3BCPlusPlusConfig
from rl.core.trainer import Run, RunConfig
from tests.rl.helpers import assert_resume_is_exact

# log_every 1: the row right after the resume point (step 11, a critic-only TD3 step) is compared too.
RUN = RunConfig(steps=30, seed=3, eval_every=0, eval_episodes=1, log_every=1, checkpoint_every=10)
CONFIGS = {"bear++": BEARPlusPlusConfig(batch_size=32, hidden=(16, 16)),
           "td3bc++": TD3BCPlusPlusConfig(batch_size=32, hidden=(16, 16)),
           "dasco": DASCOConfig(batch_size=32, critic_hidden=(16,), policy_hidden=(16,), gan_hidden=(16,))}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resumed_run_equals_uninterrupted_run(name, env_transitions, gaussian_dir, tmp_path):
    def build():
        return Run.build(name, env_transitions, CONFIGS[name], RUN, behavior=str(gaussian_dir) if "bear" in name else None)

    assert_resume_is_exact(build, tmp_path, crash_at=15)
