import csv
import dataclasses
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from behavior_models.errors import ArtefactMismatchError, ConfigError, DatasetError, TrainingDivergedError
from cli.rl import main as rl_main
from rl.algos.arq import ARQConfig
from rl.algos.base import BehaviorInputs
from rl.algos.bc import BCConfig
from rl.algos.spot import SPOTConfig
from rl.algos.td3bc import TD3BCConfig
from rl.core.behavior import check_cache
from rl.core.trainer import Run, RunConfig, Trainer, load_algorithm_state, load_run, read_checkpoint, train
from tests.rl.helpers import assert_resume_is_exact, random_cache, write_env_dataset

RUN = RunConfig(steps=60, seed=3, eval_every=20, eval_episodes=2, log_every=10, checkpoint_every=20)


def build(name, transitions, gaussian_dir, run=RUN):
    if name == "bc":
        return Run.build("bc", transitions, BCConfig(batch_size=32, hidden=(16, 16)), run)
    if name == "arq":
        return Run.build("arq", transitions, ARQConfig(batch_size=32, hidden=(16, 16), actor_hidden=(16,), k=3), run,
                         behavior_inputs=BehaviorInputs(cache=random_cache(transitions)))
    return Run.build("spot", transitions, SPOTConfig(batch_size=32, hidden=(16, 16)), run, behavior=str(gaussian_dir))


@pytest.mark.parametrize("name", ["bc", "arq", "spot"])
def test_resumed_run_equals_uninterrupted_run(name, env_transitions, gaussian_dir, tmp_path):
    # An odd checkpoint step: SPOT's actor steps on every second update, so a resume that lost the
    # update count would step it on the wrong ones.
    run = dataclasses.replace(RUN, checkpoint_every=15)
    checkpoints = assert_resume_is_exact(lambda: build(name, env_transitions, gaussian_dir, run), tmp_path, crash_at=50)
    assert checkpoints[-1] == "step_00000045.pt"  # the crash came after the step-45 checkpoint
    full_summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed_summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert full_summary["normalized_score_mean"] == resumed_summary["normalized_score_mean"]


def test_a_run_interrupted_while_evaluating_resumes_from_that_step(env_transitions, gaussian_dir, tmp_path):
    """The evaluation of a step ran before its checkpoint was saved: a run interrupted while evaluating
    at step 40 resumed from step 20 and trained 20 updates again. It now resumes from 40, evaluates
    there first, and ends equal to the uninterrupted run (weights, metrics.csv, summary)."""
    Trainer(build("bc", env_transitions, gaussian_dir), tmp_path / "full", progress=False, echo=lambda _: None).train()
    interrupted = build("bc", env_transitions, gaussian_dir)
    evaluate = interrupted.evaluate

    def evaluate_until_interrupted(episodes, step=0, **kwargs):
        if step == 40:
            raise KeyboardInterrupt
        return evaluate(episodes, step, **kwargs)

    interrupted.evaluate = evaluate_until_interrupted
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, tmp_path / "resumed", progress=False, echo=lambda _: None).train()
    resumed = build("bc", env_transitions, gaussian_dir)
    trainer = Trainer(resumed, tmp_path / "resumed", resume=True, progress=False, echo=lambda _: None)
    assert trainer.start_step == 40
    trainer.train()
    full = build("bc", env_transitions, gaussian_dir)
    load_algorithm_state(full.algorithm, read_checkpoint(tmp_path / "full" / "checkpoints" / "step_00000060.pt"), "full")
    assert full.algorithm.updates == resumed.algorithm.updates == 60
    for key, value in full.algorithm.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.algorithm.state_dict()[key]), key
    for name in ("metrics.csv", "summary.json"):
        full_text, resumed_text = ((tmp_path / run / name).read_text() for run in ("full", "resumed"))
        if name == "summary.json":  # timings differ
            full_text, resumed_text = (json.loads(text)["normalized_score_mean"] for text in (full_text, resumed_text))
        assert full_text == resumed_text, name


def test_a_resumed_run_keeps_the_tensorboard_rows_of_its_checkpoint_step(env_transitions, gaussian_dir, tmp_path):
    """The rows of the step a run resumes from were logged before its checkpoint and are not logged
    again; purging TensorBoard's events from that step on (purge_step=start_step) used to drop them.
    The interrupted run's step-50 row, past the checkpoint, must still be purged (not shown twice)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert_resume_is_exact(lambda: build("bc", env_transitions, gaussian_dir), tmp_path, crash_at=55)
    logged = {}
    for name in ("full", "resumed"):
        events = EventAccumulator(str(tmp_path / name / "tb"))
        events.Reload()
        logged[name] = {tag: [event.step for event in events.Scalars(tag)]
                        for tag in ("actor_loss", "eval/normalized_score_mean")}
    assert logged["full"] == {"actor_loss": [10, 20, 30, 40, 50, 60], "eval/normalized_score_mean": [20, 40, 60]}
    assert logged["resumed"] == logged["full"]


def test_a_run_restarted_before_its_first_checkpoint_shows_each_tensorboard_row_once(env_transitions, tmp_path):
    """`rl train --resume` with no checkpoint yet starts over in the same directory; the events the
    interrupted attempt wrote used to stay beside the new ones (actor_loss at 10, 20, 10, 20, ...)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = dataclasses.replace(RUN, checkpoint_every=50)
    interrupted = Run.build("bc", env_transitions, BCConfig(batch_size=32, hidden=(16,)), config)
    original = interrupted.algorithm.update

    def crash(batch):
        if interrupted.algorithm.updates == 35:  # after the rows of steps 10-30, before any checkpoint
            raise KeyboardInterrupt
        return original(batch)

    interrupted.algorithm.update = crash
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, tmp_path / "run", progress=False, echo=lambda _: None).train()
    assert not (tmp_path / "run" / "checkpoints").exists()
    restarted = Run.build("bc", env_transitions, BCConfig(batch_size=32, hidden=(16,)), config)
    Trainer(restarted, tmp_path / "run", resume=True, progress=False, echo=lambda _: None).train()
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert [event.step for event in events.Scalars("actor_loss")] == [10, 20, 30, 40, 50, 60]
    assert [event.step for event in events.Scalars("eval/normalized_score_mean")] == [20, 40, 60]


def test_a_dataset_that_cannot_be_evaluated_is_refused_before_training(tmp_path, monkeypatch):
    """Without an environment spec (or with an environment of other observations) the first evaluation
    failed eval_every steps into training, before that step's checkpoint: all of it was lost."""
    import gymnasium as gym

    from rl.algos.bc import BC
    from tests.helpers import write_flat_dataset

    updates = []
    update = BC.update
    monkeypatch.setattr(BC, "update", lambda self, batch: updates.append(1) or update(self, batch))
    config = RunConfig(steps=40, eval_every=20, checkpoint_every=20, log_every=10)
    write_flat_dataset("test/no-env-v0", episode_lengths=(20, 20))
    with pytest.raises(DatasetError, match="stores no environment spec.*--eval-episodes 0"):
        train("bc", "test/no-env-v0", tmp_path / "no-env", BCConfig(hidden=(8,)), config, progress=False)
    write_flat_dataset("test/other-env-v0", episode_lengths=(20, 20), obs_dim=3, act_dim=1,
                       eval_env=gym.make("MountainCarContinuous-v0"))
    with pytest.raises(DatasetError, match="observes 2 numbers per step, its dataset 3.*--eval-episodes 0"):
        train("bc", "test/other-env-v0", tmp_path / "other-env", BCConfig(hidden=(8,)), config, progress=False)
    assert not updates and not (tmp_path / "no-env").exists() and not (tmp_path / "other-env").exists()
    summary = train("bc", "test/no-env-v0", tmp_path / "no-env", BCConfig(hidden=(8,)),
                    dataclasses.replace(config, eval_episodes=0), progress=False, echo=lambda _: None)
    assert summary["steps"] == 40 and summary["normalized_score_mean"] is None


def test_run_directory_contents_and_summary(env_transitions, tmp_path):
    summary = train("bc", env_transitions, tmp_path / "run", BCConfig(batch_size=32, hidden=(16,)), RUN,
                    progress=False, echo=lambda _: None)
    for key in ("normalized_score_mean", "normalized_score_std", "episodes", "steps", "steps_per_second"):
        assert summary[key] is not None
    assert summary["steps"] == 60 and summary["episodes"] == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["algorithm"] == "bc" and config["dataset_fingerprint"] == env_transitions.fingerprint
    assert config["algo"]["reward_transform"] == "none"
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    assert rows[1]["eval/normalized_score_mean"] != "" and rows[0]["eval/normalized_score_mean"] == ""
    assert (tmp_path / "run" / "tb").is_dir()


def test_a_finished_run_resumed_for_more_steps_withdraws_its_summary(env_transitions, tmp_path):
    """Until the longer budget finishes, the run is not finished: an interrupted extension must not
    look like the shorter run while its newest checkpoint is a later one."""
    quiet = {"progress": False, "echo": lambda _: None}
    short = RunConfig(steps=20, eval_episodes=0, checkpoint_every=10, log_every=10)
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, **quiet)
    longer = dataclasses.replace(short, steps=40)
    run = Run.build("bc", env_transitions, BCConfig(hidden=(16,)), longer)
    trainer = Trainer(run, tmp_path / "run", resume=True, **quiet)
    assert not (tmp_path / "run" / "summary.json").exists()
    assert trainer.train()["steps"] == 40
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 40
    Trainer(Run.build("bc", env_transitions, BCConfig(hidden=(16,)), longer), tmp_path / "run", resume=True, **quiet)
    assert (tmp_path / "run" / "summary.json").is_file()  # resumed at its own budget: still finished


def test_resuming_a_finished_run_keeps_its_record_and_a_smaller_budget_is_refused(env_transitions, tmp_path):
    quiet = {"progress": False, "echo": lambda _: None}
    finished = RunConfig(steps=20, eval_episodes=1, checkpoint_every=10, log_every=10)
    summary = train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), finished, **quiet)
    files = {name: (tmp_path / "run" / name).read_text() for name in ("config.json", "summary.json", "metrics.csv")}
    again = train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)),
                  dataclasses.replace(finished, eval_episodes=0, eval_every=7), resume=True, **quiet)
    assert again == summary  # not re-evaluated with 0 episodes, and config.json not relabelled
    assert {name: (tmp_path / "run" / name).read_text() for name in files} == files
    with pytest.raises(ArtefactMismatchError, match="has trained 20 steps, more than --steps 10"):
        train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), dataclasses.replace(finished, steps=10),
              resume=True, **quiet)
    assert {name: (tmp_path / "run" / name).read_text() for name in files} == files


def test_force_and_resume_never_touch_a_directory_that_is_not_an_rl_run(env_transitions, gaussian_dir, tmp_path):
    """--force used to delete any directory holding a config.json (a project, a `bm fit` model), and
    --resume on a model directory trained over it, overwriting the model's config.json."""
    from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig

    quiet = {"progress": False, "echo": lambda _: None}
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    model_files = sorted(p.name for p in gaussian_dir.iterdir())
    for flags in ({"force": True}, {"resume": True}, {}):
        with pytest.raises(ArtefactMismatchError, match="is not an `rl train` run"):
            train("bc", env_transitions, gaussian_dir, BCConfig(hidden=(16,)), short, **flags, **quiet)
    assert sorted(p.name for p in gaussian_dir.iterdir()) == model_files
    with pytest.raises(ArtefactMismatchError, match="not an `rl train` run directory .* `bm fit` model directory"):
        load_run(gaussian_dir)
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text("{}")
    (project / "notes.txt").write_text("precious")
    with pytest.raises(ArtefactMismatchError, match="not an `rl train` run"):
        train("bc", env_transitions, project, BCConfig(hidden=(16,)), short, force=True, **quiet)
    assert (project / "notes.txt").read_text() == "precious"
    # ... and the other way round: bm fit --force keeps an rl run.
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, **quiet)
    with pytest.raises(ArtefactMismatchError, match="is not a behavior-model run"):
        GaussianBehaviorModel.fit(env_transitions, GaussianConfig(steps=2), out_dir=tmp_path / "run", force=True,
                                  progress=False)
    assert (tmp_path / "run" / "summary.json").is_file()


def test_existing_run_is_not_overwritten_and_other_settings_are_refused(env_transitions, tmp_path):
    short = RunConfig(steps=20, eval_episodes=0, checkpoint_every=10, log_every=10)
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, progress=False, echo=lambda _: None)
    with pytest.raises(ArtefactMismatchError, match="--resume"):
        train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, progress=False, echo=lambda _: None)
    with pytest.raises(ArtefactMismatchError, match="already holds a run"):  # before the dataset is loaded
        train("bc", "test/no-such-dataset-v0", tmp_path / "run", BCConfig(hidden=(16,)), short, progress=False)
    with pytest.raises(ArtefactMismatchError, match=r"these differ: algo\.hidden: \[16\] -> \[32\]\)"):
        train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(32,)), short, resume=True, progress=False,
              echo=lambda _: None)
    # Another algorithm differs in every config field: the error names the algorithm alone.
    with pytest.raises(ArtefactMismatchError, match=r"these differ: algorithm: 'bc' -> 'td3bc'\)"):
        train("td3bc", env_transitions, tmp_path / "run", TD3BCConfig(hidden=(16,)), short, resume=True,
              progress=False, echo=lambda _: None)


def test_resume_and_load_refuse_changed_behavior_artefacts(env_transitions, gaussian_dir, tmp_path):
    from behavior_models.cache import build_sample_cache

    caches = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for seed, path in enumerate(caches):
        build_sample_cache(gaussian_dir, env_transitions, path, num_samples=6, seed=seed, progress=False)
    config = ARQConfig(batch_size=16, hidden=(16,), actor_hidden=(16,), k=3)
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    quiet = {"progress": False, "echo": lambda _: None}
    train("arq", env_transitions, tmp_path / "run", config, short, behavior=str(caches[0]), **quiet)
    longer = dataclasses.replace(short, steps=20)
    with pytest.raises(ArtefactMismatchError, match=r"behavior cache: .*a\.npz .* -> .*b\.npz"):
        train("arq", env_transitions, tmp_path / "run", config, longer, behavior=str(caches[1]), resume=True, **quiet)
    moved = tmp_path / "moved.npz"
    shutil.copy(caches[0], moved)  # the same cache elsewhere is the same cache
    train("arq", env_transitions, tmp_path / "run", config, longer, behavior=str(moved), resume=True, **quiet)
    load_run(tmp_path / "run")
    shutil.copy(caches[1], moved)  # rebuilt in place after training
    with pytest.raises(ArtefactMismatchError, match="changed since it was trained"):
        load_run(tmp_path / "run")


def test_a_trained_arq_run_acts_with_its_implicit_policy_or_the_model_alone(env_transitions, gaussian_dir, tmp_path):
    """Algorithm 1 returns Q, pi_phi and s_psi: a run trained with the AWR policy is scored with
    Eq. 6 from the same critic, the model found through the cache's metadata."""
    from behavior_models.cache import build_sample_cache

    cache = build_sample_cache(gaussian_dir, env_transitions, tmp_path / "c.npz", num_samples=4, progress=False)
    quiet = {"progress": False, "echo": lambda _: None}
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    train("arq", env_transitions, tmp_path / "run", ARQConfig(batch_size=16, hidden=(16,), actor_hidden=(16,), k=3),
          short, behavior=str(cache), **quiet)
    explicit = load_run(tmp_path / "run")
    assert explicit.behavior.model is None  # the AWR policy needs no model
    implicit = load_run(tmp_path / "run", acting={"policy": "implicit", "implicit_samples": 5})
    assert implicit.algorithm.config.policy == "implicit" and implicit.algo_config.implicit_samples == 5
    for name, tensor in explicit.algorithm.critic.state_dict().items():
        assert torch.equal(tensor, implicit.algorithm.critic.state_dict()[name])
    obs = torch.as_tensor(env_transitions.observations[:6])
    torch.manual_seed(1)
    candidates = implicit.behavior.model.sample(obs, 5)
    torch.manual_seed(1)
    chosen = implicit.algorithm.act(obs, obs, deterministic=True)
    q = implicit.algorithm.critic(obs.unsqueeze(1).expand(-1, 5, -1), candidates).min(0).values
    torch.testing.assert_close(chosen, candidates[torch.arange(6), q.argmax(1)])
    assert load_run(tmp_path / "run", acting={"policy": "behavior"}).algorithm.act(obs, obs).shape == (6, 1)
    with pytest.raises(ConfigError, match="k changes what is trained"):
        load_run(tmp_path / "run", acting={"k": 5})

    result = CliRunner().invoke(rl_main, ["eval", "--run", str(tmp_path / "run"), "--episodes", "1",
                                          "--set", "policy=implicit", "--set", "implicit_samples=3"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "eval[policy=implicit,implicit_samples=3].json").read_text())["acting"] == {
        "policy": "implicit", "implicit_samples": 3}
    assert CliRunner().invoke(rl_main, ["eval", "--run", str(tmp_path / "run"), "--episodes", "1"]).exit_code == 0
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["acting"] == {}  # each way of acting keeps its file
    assert (tmp_path / "run" / "eval[policy=implicit,implicit_samples=3].json").is_file()
    result = CliRunner().invoke(rl_main, ["eval", "--run", str(tmp_path / "run"), "--set", "batch_size=4"])
    assert result.exit_code == 1 and "batch_size changes what is trained" in result.output

    train("arq", env_transitions, tmp_path / "implicit", ARQConfig(batch_size=16, hidden=(16,), k=3, policy="implicit"),
          short, behavior=str(cache), **quiet)
    with pytest.raises(ConfigError, match="trained no explicit policy"):
        load_run(tmp_path / "implicit", acting={"policy": "explicit"})


def test_arq_samples_its_model_at_act_time_as_the_cache_was_sampled(env_transitions, gaussian_dir):
    from behavior_models.score.model import ScoreBehaviorModel, ScoreConfig
    from rl.core.behavior import load_model

    score = ScoreBehaviorModel(env_transitions.obs_dim, env_transitions.act_dim, ScoreConfig(width=16, blocks=1))
    cache = random_cache(env_transitions)
    cache.metadata["sampler_options"] = {"sampler": "fast", "steps": 7}
    run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), policy="implicit"), RunConfig(),
                    behavior_inputs=BehaviorInputs(cache=cache, model=score))
    assert run.algorithm.sampler_options() == {"sampler": "fast", "steps": 7}
    run.algorithm.set_acting(implicit_sampler="ode")
    assert run.algorithm.sampler_options() == {"sampler": "ode"}

    # A model without those options is refused when the run is built or told to act so, not at its first action.
    gaussian = load_model(gaussian_dir, env_transitions, "cpu")
    with pytest.raises(ConfigError, match="gaussian backend refused an option: its sample takes no 'sampler', 'steps'"):
        Run.build("arq", env_transitions, ARQConfig(hidden=(16,), policy="implicit"), RunConfig(),
                  behavior_inputs=BehaviorInputs(cache=cache, model=gaussian))
    run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), policy="implicit"), RunConfig(),
                    behavior_inputs=BehaviorInputs(cache=random_cache(env_transitions), model=gaussian))
    with pytest.raises(ConfigError, match="its sample takes no 'sampler' \\(its options: none\\)"):
        run.algorithm.set_acting(implicit_sampler="ode")
    assert run.algorithm.config.implicit_sampler is None and run.algorithm.sampler_options() == {}


def test_a_cache_whose_threshold_rejects_nearly_everything_is_warned_about(env_transitions, tmp_path):
    """A 50-step score model's cache had 0% of candidates in support; ARQ fell back on every row, silently."""
    lines = []
    useless = random_cache(env_transitions, drop=1.0)  # no candidate in support anywhere
    run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), k=3), RunConfig(steps=1, eval_episodes=0),
                    behavior_inputs=BehaviorInputs(cache=useless))
    Trainer(run, tmp_path / "run", progress=False, echo=lines.append).train()
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and "(100%) keep no in-support candidate" in warning[0] and "--threshold calibrated" in warning[0]
    fine = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), k=3), RunConfig(),
                     behavior_inputs=BehaviorInputs(cache=random_cache(env_transitions, drop=0.3)))
    assert fine.algorithm.warnings() == []  # 0.3^8 of the rows keep nothing


def test_behavior_model_is_refused_where_it_would_be_ignored_or_is_another_model(env_transitions, gaussian_dir,
                                                                                 tmp_path):
    from behavior_models.cache import build_sample_cache
    from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig

    cache = build_sample_cache(gaussian_dir, env_transitions, tmp_path / "c.npz", num_samples=4, progress=False)
    other = tmp_path / "other"
    GaussianBehaviorModel.fit(env_transitions, GaussianConfig(steps=20, hidden=(8,)), out_dir=other, progress=False)
    implicit = ARQConfig(hidden=(16,), k=3, policy="implicit")
    with pytest.raises(ConfigError, match="never samples a behavior model .* drop --behavior-model"):
        Run.build("arq", env_transitions, ARQConfig(hidden=(16,), k=3), RUN, behavior=str(cache),
                  behavior_model=str(gaussian_dir))
    with pytest.raises(ArtefactMismatchError, match="is not the model the cache .* was drawn from"):
        Run.build("arq", env_transitions, implicit, RUN, behavior=str(cache), behavior_model=str(other))
    copy = tmp_path / "copy"
    shutil.copytree(gaussian_dir, copy)  # the same model elsewhere is the same model
    assert Run.build("arq", env_transitions, implicit, RUN, behavior=str(cache), behavior_model=str(copy)).behavior.model
    with pytest.raises(ConfigError, match="takes its behavior model as --behavior; drop --behavior-model"):
        Run.build("spot", env_transitions, SPOTConfig(hidden=(16,)), RUN, behavior=str(gaussian_dir),
                  behavior_model=str(other))


def test_evaluating_a_run_whose_behavior_model_was_deleted_says_so(env_transitions, gaussian_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(gaussian_dir, model)
    short = RunConfig(steps=4, eval_episodes=0, checkpoint_every=4, log_every=4)
    train("spot", env_transitions, tmp_path / "run", SPOTConfig(hidden=(16,), batch_size=16), short,
          behavior=str(model), progress=False, echo=lambda _: None)
    shutil.rmtree(model)
    with pytest.raises(ArtefactMismatchError, match=r"trained with the behaviour artefact\(s\) .*model.*no longer exist"):
        load_run(tmp_path / "run")


def test_a_run_recorded_before_a_config_field_existed_loads_as_it_trained(env_transitions, gaussian_dir, tmp_path):
    """SPOT's actor_dropout (0.1 off the mazes since it was added) and head initialisations: a
    config.json written before them describes a dropout-free actor, and is read so (FIELDS_ADDED_SINCE)."""
    short = RunConfig(steps=4, eval_episodes=0, checkpoint_every=4, log_every=4)
    old_fields = {"actor_dropout": 0.0, "actor_head_init": 0.0, "critic_head_init": 0.0}
    train("spot", env_transitions, tmp_path / "run", SPOTConfig(hidden=(16,), batch_size=16, **old_fields), short,
          behavior=str(gaussian_dir), progress=False, echo=lambda _: None)
    path = tmp_path / "run" / "config.json"
    record = json.loads(path.read_text())
    for name in old_fields:
        del record["algo"][name]
    path.write_text(json.dumps(record))
    run = load_run(tmp_path / "run")
    assert {name: getattr(run.algo_config, name) for name in old_fields} == old_fields
    assert not any(isinstance(m, torch.nn.Dropout) for m in run.algorithm.actor.modules())
    assert SPOTConfig.__dataclass_fields__["actor_dropout"].default is None  # what a run today resolves (0.1 here)


def test_a_run_recorded_before_eval_maze_existed_resumes(env_transitions, tmp_path):
    """Runs recorded before --eval-maze were evaluated in the evaluation maze (RUN_FIELDS_ADDED_SINCE):
    resuming one with today's default is not a change of settings; with the other env it is."""
    short = RunConfig(steps=4, eval_episodes=0, checkpoint_every=4, log_every=4)
    quiet = {"progress": False, "echo": lambda _: None}
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, **quiet)
    path = tmp_path / "run" / "config.json"
    record = json.loads(path.read_text())
    assert record["run"].pop("eval_maze") == "evaluation"
    path.write_text(json.dumps(record))
    with pytest.raises(ArtefactMismatchError, match=r"run.eval_maze: 'evaluation' -> 'data'"):
        train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)),
              dataclasses.replace(short, steps=8, eval_maze="data"), resume=True, **quiet)
    summary = train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)),
                    dataclasses.replace(short, steps=8), resume=True, **quiet)
    assert summary["steps"] == 8
    with pytest.raises(ConfigError, match=r"eval_maze must be one of \('evaluation', 'data'\), got 'eval'"):
        RunConfig(eval_maze="eval")


def test_a_run_whose_loss_becomes_nan_stops_and_keeps_its_last_good_checkpoint(env_transitions, tmp_path):
    run = Run.build("bc", env_transitions, BCConfig(batch_size=32, hidden=(16,)),
                    RunConfig(steps=60, eval_episodes=0, log_every=10, checkpoint_every=20))
    original = run.algorithm.update

    def diverging(batch):
        metrics = original(batch)
        if run.algorithm.updates > 25:  # past the step-20 checkpoint
            metrics = {**metrics, "actor_loss": torch.tensor(float("nan"))}
        return metrics

    run.algorithm.update = diverging
    with pytest.raises(TrainingDivergedError, match=r"at step 30, actor_loss=nan; the checkpoint of step 20 is kept"):
        Trainer(run, tmp_path / "run", progress=False, echo=lambda _: None).train()
    assert [path.name for path in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000020.pt"]
    assert not (tmp_path / "run" / "summary.json").exists()


def test_run_config_out_of_range_is_refused():
    for field in ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_parallel"):
        with pytest.raises(ConfigError, match=f"RunConfig.{field} must be at least 1, got 0"):
            RunConfig(**{field: 0})
    with pytest.raises(ConfigError, match="eval_episodes must be at least 0, got -1"):
        RunConfig(eval_episodes=-1)
    RunConfig(eval_every=0, eval_episodes=0)  # documented: only the final evaluation, no evaluation


def test_a_checkpoint_from_another_device_type_is_refused_clearly(env_transitions, tmp_path):
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    quiet = {"progress": False, "echo": lambda _: None}
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, **quiet)
    path = next((tmp_path / "run" / "checkpoints").glob("*.pt"))
    checkpoint = read_checkpoint(path)
    checkpoint["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    torch.save(checkpoint, path)
    with pytest.raises(ArtefactMismatchError, match="another device type .* --device it was made on"):
        train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), dataclasses.replace(short, steps=20),
              resume=True, **quiet)


def test_force_restarts_a_run_but_never_deletes_other_files(env_transitions, tmp_path):
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    quiet = {"progress": False, "echo": lambda _: None}
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, **quiet)
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(32,)), short, force=True, **quiet)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["algo"]["hidden"] == [32]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "episodes.h5").write_bytes(b"precious")
    with pytest.raises(ArtefactMismatchError, match="is not an `rl train` run"):
        train("bc", env_transitions, tmp_path / "data", BCConfig(hidden=(16,)), short, force=True, **quiet)
    assert (tmp_path / "data" / "episodes.h5").read_bytes() == b"precious"


def test_checkpoint_of_another_shape_is_refused(env_transitions, tmp_path):
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, progress=False, echo=lambda _: None)
    checkpoint = read_checkpoint(next((tmp_path / "run" / "checkpoints").glob("*.pt")))
    other = Run.build("bc", env_transitions, BCConfig(hidden=(32,)), short).algorithm
    with pytest.raises(ArtefactMismatchError, match="another shape"):
        load_algorithm_state(other, checkpoint, "ckpt.pt")



def test_a_damaged_checkpoint_or_run_record_is_refused_naming_the_file(env_transitions, tmp_path):
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    run = tmp_path / "run"
    train("bc", env_transitions, run, BCConfig(hidden=(16,)), short, progress=False, echo=lambda _: None)
    checkpoint = next((run / "checkpoints").glob("*.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(ArtefactMismatchError, match=rf"{checkpoint.name} is damaged.*delete it to fall back"):
        load_run(run)
    (run / "config.json").write_text('{"algorithm": "bc", ')
    for call in (lambda: load_run(run),
                 lambda: train("bc", env_transitions, run, BCConfig(hidden=(16,)), short, resume=True, progress=False)):
        with pytest.raises(ArtefactMismatchError, match=r"run/config.json is damaged \(not readable JSON"):
            call()

def test_cache_of_another_dataset_or_size_is_refused(env_transitions):
    cache = random_cache(env_transitions)
    check_cache(cache, env_transitions)  # the right one passes
    cache.metadata["dataset_fingerprint"] = "0123456789abcdef"
    with pytest.raises(ArtefactMismatchError,
                       match="built on dataset .* but the dataset given is .*bm sample-cache --dataset"):
        check_cache(cache, env_transitions)
    cache = random_cache(env_transitions)
    cache.obs_row = cache.obs_row[:-1]
    with pytest.raises(ArtefactMismatchError, match="240 transitions"):
        check_cache(cache, env_transitions)
    cache = random_cache(env_transitions)
    cache.candidates = torch.zeros(cache.candidates.shape[0], 4, 3)
    with pytest.raises(ArtefactMismatchError, match="action dims"):
        check_cache(cache, env_transitions)
    cache = random_cache(env_transitions)  # a cache of the recorded transitions, for the relabelled view
    relabelled = dataclasses.replace(env_transitions, fingerprint=env_transitions.fingerprint,
                                     info=dataclasses.replace(env_transitions.info, goal_switch="relabel"))
    with pytest.raises(ArtefactMismatchError, match="'keep' view .* --goal-switch relabel"):
        check_cache(cache, relabelled)


def test_wrong_kind_of_behavior_is_refused(env_transitions, gaussian_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs --behavior to be a sample cache"):
        Run.build("arq", env_transitions, behavior=str(gaussian_dir))
    cache_file = tmp_path / "cache.npz"
    cache_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="needs --behavior to be a behavior-model directory"):
        Run.build("spot", env_transitions, behavior=str(cache_file))
    with pytest.raises(ConfigError, match="uses no behavior model"):
        Run.build("bc", env_transitions, behavior=str(gaussian_dir))
    with pytest.raises(ConfigError, match="needs --behavior"):
        Run.build("spot", env_transitions)


def test_cli_train_and_eval_print_the_score_last(env_transitions, gaussian_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "spot"
    result = runner.invoke(rl_main, ["train", "spot", "--dataset", "test/mcar-v0", "--behavior", str(gaussian_dir),
                                     "--steps", "20", "--eval-episodes", "2", "--out", str(out), "--no-progress",
                                     "--set", "hidden=16,16", "--set", "lambda_=0.5"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("normalized_score: ")
    config = json.loads((out / "config.json").read_text())
    assert config["algo"]["hidden"] == [16, 16] and config["algo"]["lambda_"] == 0.5
    result = runner.invoke(rl_main, ["eval", "--run", str(out), "--episodes", "2"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("normalized_score: ")
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["episodes"] == 2 and evaluation["checkpoint"] == "step_00000020.pt"
    result = runner.invoke(rl_main, ["train", "arq", "--dataset", "test/mcar-v0", "--behavior", str(gaussian_dir),
                                     "--out", str(tmp_path / "arq")])
    assert result.exit_code == 1 and "needs --behavior to be a sample cache" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(rl_main, ["train", "bc", "--dataset", "test/mcar-v0", "--set", "nope=1"])
    assert result.exit_code == 1 and "unknown field(s) ['nope']" in result.output


def test_rl_eval_names_the_checkpoint_it_scored_while_the_run_trains_on(env_transitions, tmp_path, monkeypatch):
    """`rl eval` on a run still training: a newer checkpoint written during the evaluation used to
    be the one eval.json named, though the weights scored were the older one's."""
    train("bc", env_transitions, tmp_path / "bc", BCConfig(hidden=(16,)), RUN, progress=False, echo=lambda _: None)
    evaluate = Run.evaluate

    def evaluate_while_training(self, *args, **kwargs):
        checkpoints = tmp_path / "bc" / "checkpoints"  # the training job saves its next checkpoint meanwhile
        shutil.copy(checkpoints / "step_00000060.pt", checkpoints / "step_00000080.pt")
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Run, "evaluate", evaluate_while_training)
    result = CliRunner().invoke(rl_main, ["eval", "--run", str(tmp_path / "bc"), "--episodes", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "bc" / "eval.json").read_text())["checkpoint"] == "step_00000060.pt"


def test_cli_arq_on_a_real_sample_cache(env_transitions, gaussian_dir, tmp_path):
    from cli.bm import main as bm_main

    runner = CliRunner()
    cache = tmp_path / "cache.npz"
    result = runner.invoke(bm_main, ["sample-cache", "--model", str(gaussian_dir), "--dataset", "test/mcar-v0",
                                     "--out", str(cache), "--num-samples", "6", "--no-progress"])
    assert result.exit_code == 0, result.output
    for variant in ("arq", "q-beta"):
        result = runner.invoke(rl_main, ["train", "arq", "--dataset", "test/mcar-v0", "--behavior", str(cache),
                                         "--variant", variant, "--steps", "10", "--eval-episodes", "1", "--no-progress",
                                         "--batch-size", "16", "--out", str(tmp_path / variant)])
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines()[-1].startswith("normalized_score: ")
    # The implicit policy found the model through the cache's metadata.
    config = json.loads((tmp_path / "q-beta" / "config.json").read_text())
    assert config["behavior"]["model_dir"]["backend"] == "gaussian"
    # A cache of another dataset is refused.
    from tests.rl.helpers import write_env_dataset

    write_env_dataset("test/mcar-other-v0", seed=5)
    result = runner.invoke(rl_main, ["train", "arq", "--dataset", "test/mcar-other-v0", "--behavior", str(cache),
                                     "--steps", "10", "--out", str(tmp_path / "other")])
    assert result.exit_code == 1 and "built on dataset test/mcar-v0" in result.output, result.output


def test_rl_plot_draws_learning_curves(env_transitions, tmp_path):
    train("bc", env_transitions, tmp_path / "bc", BCConfig(hidden=(16,)), RUN, progress=False, echo=lambda _: None)
    result = CliRunner().invoke(rl_main, ["plot", "--run", str(tmp_path / "bc"), "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from rl.core.plotting import read_curve

    steps, means, _ = read_curve(tmp_path / "bc")
    assert steps == [20, 40, 60] and len(means) == 3


def test_config_records_derived_settings(env_transitions, gaussian_dir, tmp_path):
    train("spot", env_transitions, tmp_path / "spot", SPOTConfig(hidden=(16,), lambda_=0.2),
          RunConfig(steps=4, eval_episodes=0, checkpoint_every=4, log_every=2), behavior=str(gaussian_dir),
          progress=False, echo=lambda _: None)
    info = json.loads((tmp_path / "spot" / "config.json").read_text())["algorithm_info"]
    assert info["density"] == "log_prob" and info["behavior_backend"] == "gaussian"
    assert info["lambda_nats"] == pytest.approx(0.2 * 0.5 / 2)  # act_dim 1, SPOT units
    run = build("arq", env_transitions, gaussian_dir)
    info = run.algorithm.describe()
    assert info["candidates_per_state"] == 8 and 0 < info["in_support_fraction"] <= info["kept_fraction"] <= 1


def test_building_a_run_flushes_denormals_to_zero(env_transitions):
    """Adam's second moments decay into the denormal range, which x86 runs in microcode (~6x
    slower updates measured); building a run turns flush-to-zero on."""
    torch.set_flush_denormal(False)
    tiny = torch.tensor([1e-39])
    assert tiny.item() != 0.0
    Run.build("bc", env_transitions, BCConfig(batch_size=32, hidden=(16,)), RUN)
    assert (torch.tensor([1e-39]) * 1.0).item() == 0.0  # tests/conftest.py restores the setting afterwards


def test_a_dataset_whose_action_box_is_not_unit_is_refused(env_transitions):
    """The actors act in [-1, 1]^A; InvertedPendulum's [-3, 3] would be learned wrongly, silently."""
    assert env_transitions.info.action_low == (-1.0,)  # MountainCarContinuous: the unit box passes
    Run.build("bc", env_transitions, BCConfig(batch_size=32, hidden=(16,)), RUN)
    info = dataclasses.replace(env_transitions.info, action_low=(-3.0,), action_high=(3.0,))
    wide = dataclasses.replace(env_transitions, info=info)
    with pytest.raises(DatasetError, match=r"action box .* not \[-1, 1\].*RescaleAction"):
        Run.build("bc", wide, BCConfig(batch_size=32, hidden=(16,)), RUN)


def test_a_constant_observation_dimension_with_state_eps_0_is_refused_not_trained_into_nan(env_transitions):
    """state_eps=0 z-scored a constant dimension (a fixed goal coordinate) by a std of 0: nan
    observations and nan losses from the first update, with only numpy's RuntimeWarning."""
    import numpy as np

    ones = np.ones((len(env_transitions), 1), np.float32)
    constant = dataclasses.replace(env_transitions, fingerprint="",
                                   observations=np.concatenate([env_transitions.observations, ones], 1),
                                   next_observations=np.concatenate([env_transitions.next_observations, ones], 1))
    with pytest.raises(ConfigError, match=r"dimension\(s\) \[2\] .* are constant.*set state_eps > 0"):
        Run.build("bc", constant, BCConfig(batch_size=32, hidden=(16,), state_eps=0.0), RUN)
    for config in (BCConfig(batch_size=32, hidden=(16,)), BCConfig(batch_size=32, hidden=(16,), state_eps=0.0,
                                                                   normalize_states=False)):
        run = Run.build("bc", constant, config, RUN)
        assert torch.isfinite(run.buffer.data).all()
    Run.build("bc", env_transitions, BCConfig(batch_size=32, hidden=(16,), state_eps=0.0), RUN)  # no constant dim


def rebuild_env_dataset(dataset_id: str = "test/mcar-v0", seed: int = 5):
    """The same id written again with other content (another seed's episodes)."""
    from behavior_models.data.minari_io import dataset_path
    from tests.rl.helpers import write_env_dataset

    shutil.rmtree(dataset_path(dataset_id))
    return write_env_dataset(dataset_id, seed=seed)


@pytest.mark.parametrize("name", ["spot", "bear"])
def test_a_behavior_model_fitted_on_another_dataset_is_refused(name, env_transitions, gaussian_dir):
    from rl.algos.bear import BEARConfig
    from tests.rl.helpers import write_env_dataset

    other = write_env_dataset("test/mcar-other-v0", seed=5)
    assert other.fingerprint != env_transitions.fingerprint
    config = SPOTConfig(hidden=(16,)) if name == "spot" else BEARConfig(hidden=(16,))
    Run.build(name, env_transitions, config, RUN, behavior=str(gaussian_dir))  # its own dataset passes
    with pytest.raises(ArtefactMismatchError, match="was fitted on dataset test/mcar-v0 .* not on test/mcar-other-v0"):
        Run.build(name, other, config, RUN, behavior=str(gaussian_dir))


def test_load_run_refuses_a_dataset_rebuilt_since_training(env_transitions, tmp_path):
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, progress=False, echo=lambda _: None)
    load_run(tmp_path / "run")  # unchanged: loads
    rebuilt = rebuild_env_dataset()
    assert rebuilt.fingerprint != env_transitions.fingerprint and len(rebuilt) == len(env_transitions)
    with pytest.raises(ArtefactMismatchError, match="dataset test/mcar-v0 changed since .* was trained"):
        load_run(tmp_path / "run")


def test_resume_refuses_a_dataset_rebuilt_since_training(env_transitions, tmp_path):
    quiet = {"progress": False, "echo": lambda _: None}
    short = RunConfig(steps=10, eval_episodes=0, checkpoint_every=10, log_every=10)
    train("bc", env_transitions, tmp_path / "run", BCConfig(hidden=(16,)), short, **quiet)
    rebuilt = rebuild_env_dataset()
    assert rebuilt.fingerprint != env_transitions.fingerprint and len(rebuilt) == len(env_transitions)
    longer = dataclasses.replace(short, steps=20)
    with pytest.raises(ArtefactMismatchError, match="other settings .*dataset_fingerprint: "
                                                    f"'{env_transitions.fingerprint}' -> '{rebuilt.fingerprint}'"):
        train("bc", "test/mcar-v0", tmp_path / "run", BCConfig(hidden=(16,)), longer, resume=True, **quiet)
    assert not (tmp_path / "run" / "checkpoints" / "step_00000020.pt").exists()


def test_without_reference_scores_the_progress_lines_say_return_not_normalized_score(tmp_path):
    transitions = write_env_dataset("test/mcar-noref-v0", ref_scores=None)
    lines = []
    summary = train("bc", transitions, tmp_path / "run", BCConfig(batch_size=32, hidden=(16,)), RUN,
                    progress=False, echo=lines.append)
    assert summary["score_kind"] == "raw_return"
    periodic = [line for line in lines if line.startswith("step ")]
    assert periodic and all(line.startswith(("step 20: return (no reference scores) ",
                                             "step 40: return (no reference scores) ")) for line in periodic)
