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


@pytest.mark.parametrize("name,field", [("bear++", "warmup_steps"), ("dasco", "instance_noise_steps")])
def test_continuing_a_finished_run_for_longer_says_which_budget_fields_to_keep(name, field, env_transitions,
                                                                                gaussian_dir, tmp_path):
    """The refusal used to say only "resume with the same options", which the user had done: the field
    that differs is derived from --steps. It now names the --set that continues the run, which works."""
    import dataclasses

    from behavior_models.errors import ArtefactMismatchError
    from cli.rl_train import parse_override
    from rl.core.trainer import train

    quiet = {"progress": False, "echo": lambda _: None,
             "behavior": str(gaussian_dir) if "bear" in name else None}
    short = dataclasses.replace(RUN, steps=40, eval_episodes=0, log_every=10)
    recorded = train(name, env_transitions, tmp_path / "run", CONFIGS[name], short, **quiet)
    old = 4 if field == "warmup_steps" else 40  # 10% of 40 steps; the whole 40-step budget
    longer = dataclasses.replace(short, steps=60)
    with pytest.raises(ArtefactMismatchError, match=rf"derives {field} from --steps.* --set {field}={old};") as error:
        train(name, env_transitions, tmp_path / "run", CONFIGS[name], longer, resume=True, **quiet)
    hint = str(error.value).split("--set ")[1].split(";")[0]
    # A field the user changed is not mistaken for a derived one.
    changed = dataclasses.replace(CONFIGS[name], gamma=0.9)
    with pytest.raises(ArtefactMismatchError, match=rf"algo.gamma: 0.99 -> 0.9.* derives {field} from --steps") as error:
        train(name, env_transitions, tmp_path / "run", changed, longer, resume=True, **quiet)
    assert "--set gamma" not in str(error.value)
    config = dataclasses.replace(CONFIGS[name], **dict([parse_override(type(CONFIGS[name]), hint)]))
    assert train(name, env_transitions, tmp_path / "run", config, longer, resume=True, **quiet)["steps"] == 60
    assert recorded["steps"] == 40
