"""A resumed BEAR++ / TD3BC++ / DASCO run equals the uninterrupted one, bit for bit."""

import pytest
import torch

from rl.algos.bear import BEARPlusPlusConfig
from rl.algos.dasco import DASCOConfig
from rl.algos.td3bc import TD3BCPlusPlusConfig
from rl.core.trainer import Run, RunConfig, Trainer

RUN = RunConfig(steps=30, seed=3, eval_every=0, eval_episodes=1, log_every=5, checkpoint_every=10)
CONFIGS = {"bear++": BEARPlusPlusConfig(batch_size=32, hidden=(16, 16)),
           "td3bc++": TD3BCPlusPlusConfig(batch_size=32, hidden=(16, 16)),
           "dasco": DASCOConfig(batch_size=32, critic_hidden=(16,), policy_hidden=(16,), gan_hidden=(16,))}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resumed_run_equals_uninterrupted_run(name, env_transitions, gaussian_dir, tmp_path):
    def build():
        return Run.build(name, env_transitions, CONFIGS[name], RUN, behavior=str(gaussian_dir) if "bear" in name else None)

    full = build()
    Trainer(full, tmp_path / "full", progress=False, echo=lambda _: None).train()
    interrupted = build()
    original = interrupted.algorithm.update

    def crash_at_15(batch):
        if interrupted.algorithm.updates == 15:
            raise KeyboardInterrupt
        return original(batch)

    interrupted.algorithm.update = crash_at_15
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, tmp_path / "resumed", progress=False, echo=lambda _: None).train()
    resumed = build()
    Trainer(resumed, tmp_path / "resumed", resume=True, progress=False, echo=lambda _: None).train()
    for key, value in full.algorithm.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.algorithm.state_dict()[key]), key
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "resumed" / "metrics.csv").read_text()
