"""The generic fit loop, exercised through the Gaussian backend (the cheapest one)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import behavior_models
from behavior_models.data import load_transitions
from behavior_models.errors import ArtefactMismatchError, ConfigError, DatasetError, TrainingDivergedError
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from behavior_models.training import recorded_steps, restore_generator
from tests.helpers import write_conditional_gaussian_dataset

SMALL = GaussianConfig(steps=200, batch_size=64, hidden=(32, 32), log_every=50, checkpoint_every=100)


@pytest.fixture
def data():
    write_conditional_gaussian_dataset("test/gauss-v0", episodes=10, steps=50)
    return load_transitions("test/gauss-v0")


def test_fit_writes_every_artefact(data, tmp_path):
    model = GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    for name in ("weights.pt", "config.json", "model.json", "curve.csv", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["dataset_fingerprint"] == data.fingerprint and meta["backend"] == "gaussian"
    assert meta["support_threshold"] == pytest.approx(float(model.support_threshold))
    assert meta["threshold_source"] == "quantile=0.01"
    curve = (tmp_path / "run" / "curve.csv").read_text().splitlines()
    assert curve[0] == "step,nll" and len(curve) == 1 + 200 // 50


class Interrupted(Exception):
    pass


def fit_interrupted_at(cls, data, config, out_dir, step, monkeypatch):
    """Fit ``cls`` into ``out_dir`` and crash it just before training step ``step``."""
    original = cls.training_step

    def crash(self, obs, act, current, optimizers):
        if current == step:
            raise Interrupted
        return original(self, obs, act, current, optimizers)

    monkeypatch.setattr(cls, "training_step", crash)
    with pytest.raises(Interrupted):
        cls.fit(data, config, out_dir=out_dir, progress=False)
    monkeypatch.setattr(cls, "training_step", original)


def test_resume_after_a_crash_continues_exactly(data, tmp_path, monkeypatch):
    straight = GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "a", progress=False)
    original = GaussianBehaviorModel.training_step
    fit_interrupted_at(GaussianBehaviorModel, data, SMALL, tmp_path / "b", 150, monkeypatch)
    assert not (tmp_path / "b" / "model.json").exists()
    with pytest.raises(ArtefactMismatchError, match="--resume"):
        GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "b", progress=False)
    # The budget may grow on resume, not shrink below the checkpoint (step 100 here).
    with pytest.raises(ArtefactMismatchError, match="beyond --steps 50"):
        GaussianBehaviorModel.fit(data, dataclasses.replace(SMALL, steps=50), out_dir=tmp_path / "b", resume=True,
                                  progress=False)
    steps_taken = []
    monkeypatch.setattr(GaussianBehaviorModel, "training_step",
                        lambda self, *args: steps_taken.append(args[2]) or original(self, *args))
    resumed = GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "b", resume=True, progress=False)
    assert steps_taken == list(range(100, 200))  # from the step-100 checkpoint: a restart would also end equal
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()


def test_a_fit_whose_loss_becomes_nan_stops_and_keeps_its_last_good_checkpoint(data, tmp_path, monkeypatch):
    """Without the check, a diverged fit trained on to its end, saving nan weights over good ones."""
    original = GaussianBehaviorModel.training_step

    def diverging(self, obs, act, step, optimizers):
        metrics = original(self, obs, act, step, optimizers)
        if step >= 120:  # past the step-100 checkpoint
            with torch.no_grad():
                next(self.parameters()).fill_(float("nan"))
            metrics = {**metrics, "nll": torch.tensor(float("nan"))}
        return metrics

    monkeypatch.setattr(GaussianBehaviorModel, "training_step", diverging)
    with pytest.raises(TrainingDivergedError, match=r"at step 150, nll=nan; the checkpoint of step 100 is kept"):
        GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 100 and torch.isfinite(checkpoint["model"]["net.0.weight"]).all()
    assert not (tmp_path / "run" / "weights.pt").exists()


def tensorboard_steps(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return [event.step for event in events.Scalars("nll")]


def test_the_log_is_written_as_the_fit_goes_and_resumes_with_it(data, tmp_path, monkeypatch):
    """curve.csv holds every complete row during the fit, and TensorBoard (installed with nflows)
    the same steps; a resumed fit's event log shows each step once, as an uninterrupted one's."""
    seen = []
    original = GaussianBehaviorModel.training_step

    def watch(self, obs, act, step, optimizers):
        if step == 160:  # rows 50, 100 and 150 logged; the last one is written once a later one arrives
            seen.append((tmp_path / "b" / "curve.csv").read_text().splitlines())
        return original(self, obs, act, step, optimizers)

    monkeypatch.setattr(GaussianBehaviorModel, "training_step", watch)
    GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "b", progress=False)
    monkeypatch.setattr(GaussianBehaviorModel, "training_step", original)
    assert [line.split(",")[0] for line in seen[0]] == ["step", "50", "100"]
    assert tensorboard_steps(tmp_path / "b" / "tb") == [50, 100, 150, 200]

    fit_interrupted_at(GaussianBehaviorModel, data, SMALL, tmp_path / "c", 170, monkeypatch)  # logged 150, past the checkpoint
    GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "c", resume=True, progress=False)
    assert tensorboard_steps(tmp_path / "c" / "tb") == [50, 100, 150, 200]
    assert (tmp_path / "c" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()


def test_a_fit_interrupted_before_its_first_periodic_checkpoint_resumes_from_step_0(data, tmp_path, monkeypatch):
    """The fit checkpoints at step 0 too, so such a directory is an interrupted fit like any other:
    refused without --resume, resumed to its recorded budget with its settings checked."""
    fit_interrupted_at(GaussianBehaviorModel, data, SMALL, tmp_path / "run", 90, monkeypatch)
    assert recorded_steps(tmp_path / "run") == SMALL.steps  # what `bm fit --resume` without --steps continues to
    with pytest.raises(ArtefactMismatchError, match="holds an interrupted fit; pass --resume"):
        GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(ArtefactMismatchError, match="other settings"):
        GaussianBehaviorModel.fit(data, dataclasses.replace(SMALL, lr=1e-2), out_dir=tmp_path / "run", resume=True,
                                  progress=False)
    resumed = GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", resume=True, progress=False)
    straight = GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "straight", progress=False)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert (tmp_path / "run" / "curve.csv").read_text() == (tmp_path / "straight" / "curve.csv").read_text()
    assert tensorboard_steps(tmp_path / "run" / "tb") == [50, 100, 150, 200]


def test_a_fit_interrupted_before_its_step_0_checkpoint_leaves_nothing(data, tmp_path, monkeypatch):
    """Moving the data to the device (or a CUDA out-of-memory there) comes before the step-0
    checkpoint; nothing may be written before it, or the directory would be no run any option takes."""
    import behavior_models.training as training

    def interrupted(*args):
        raise KeyboardInterrupt

    original = training.prepare_tensors
    monkeypatch.setattr(training, "prepare_tensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    assert list((tmp_path / "run").iterdir()) == []
    monkeypatch.setattr(training, "prepare_tensors", original)
    GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)  # as if it had not started


def test_resume_restores_the_global_rng_and_the_weight_average(data, tmp_path, monkeypatch):
    """The Gaussian draws no global random numbers and runs without EMA; the CVAE's
    reparameterisation draws from torch's global RNG, and ema_decay > 0 averages the weights,
    so a resume that lost either would diverge from the uninterrupted fit."""
    from behavior_models.cvae import CVAEBehaviorModel, CVAEConfig

    config = CVAEConfig(steps=200, batch_size=64, hidden=(32, 32), log_every=50, checkpoint_every=100, ema_decay=0.9)
    straight = CVAEBehaviorModel.fit(data, config, out_dir=tmp_path / "a", progress=False)
    fit_interrupted_at(CVAEBehaviorModel, data, config, tmp_path / "b", 150, monkeypatch)
    resumed = CVAEBehaviorModel.fit(data, config, out_dir=tmp_path / "b", resume=True, progress=False)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_existing_runs_are_not_overwritten(data, tmp_path):
    GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(ArtefactMismatchError, match="--force"):
        GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    other = GaussianConfig(**{**SMALL.__dict__, "lr": 1e-2})
    with pytest.raises(ArtefactMismatchError, match="made with other settings \\(lr: 0.001 -> 0.01\\)"):
        GaussianBehaviorModel.fit(data, other, out_dir=tmp_path / "run", resume=True, progress=False)
    GaussianBehaviorModel.fit(data, other, out_dir=tmp_path / "run", force=True, progress=False)
    from behavior_models.flow import FlowBehaviorModel, FlowConfig

    with pytest.raises(ArtefactMismatchError, match="holds a fit of backend gaussian, not flow; resume it with --model gaussian"):
        FlowBehaviorModel.fit(data, FlowConfig(steps=2), out_dir=tmp_path / "run", resume=True, progress=False)


def test_resume_refuses_another_dataset(data, tmp_path):
    GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    write_conditional_gaussian_dataset("test/gauss-other-v0", episodes=10, steps=50, seed=5)
    other = load_transitions("test/gauss-other-v0")
    with pytest.raises(ArtefactMismatchError, match="fingerprint"):
        GaussianBehaviorModel.fit(other, SMALL, out_dir=tmp_path / "run", resume=True, progress=False)



def test_a_damaged_checkpoint_is_refused_naming_the_file_and_the_fix(data, tmp_path):
    run = tmp_path / "run"
    GaussianBehaviorModel.fit(data, SMALL, out_dir=run, progress=False)
    for name in ("model.json", "weights.pt"):  # leave an interrupted fit: its checkpoint only
        (run / name).unlink()
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(ArtefactMismatchError, match=r"checkpoint.pt is damaged or not a checkpoint of this library.*--force"):
        GaussianBehaviorModel.fit(data, SMALL, out_dir=run, resume=True, progress=False)

def test_load_round_trip_gives_identical_outputs(data, tmp_path):
    model = GaussianBehaviorModel.fit(data, SMALL, out_dir=tmp_path / "run", progress=False)
    loaded = behavior_models.load(tmp_path / "run")
    obs = torch.as_tensor(data.observations[:32])
    act = torch.as_tensor(data.actions[:32])
    torch.testing.assert_close(loaded.log_prob(obs, act), model.log_prob(obs, act), rtol=0, atol=0)
    torch.manual_seed(0)
    first = model.sample(obs, 4)
    torch.manual_seed(0)
    torch.testing.assert_close(loaded.sample(obs, 4), first, rtol=0, atol=0)
    assert float(loaded.support_threshold) == float(model.support_threshold)


def test_ema_weights_are_what_is_saved(data, tmp_path):
    config = GaussianConfig(**{**SMALL.__dict__, "ema_decay": 0.9})
    model = GaussianBehaviorModel.fit(data, config, out_dir=tmp_path / "run", progress=False)
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(raw["net.0.weight"], model.state_dict()["net.0.weight"])
    saved = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    assert torch.equal(saved["net.0.weight"], model.state_dict()["net.0.weight"])


def test_boundary_delta_clips_training_actions(data):
    from behavior_models.training import prepare_tensors

    model = GaussianBehaviorModel(data.obs_dim, data.act_dim, GaussianConfig(boundary_delta=0.05))
    copy = data.subset(np.arange(len(data)))
    # This data stays inside +-0.95 on its own, so put actions on the box edges: without them the
    # check passed with the clipping removed.
    copy.actions[:2] = [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.97]]
    _, act = prepare_tensors(model, copy, torch.device("cpu"))
    assert float(act.abs().max()) <= 0.95
    torch.testing.assert_close(act[:2], torch.tensor([[0.95, -0.95, 0.0], [-0.95, 0.95, 0.95]]))
    torch.testing.assert_close(act[2:], torch.as_tensor(copy.actions[2:]))  # inside the band: untouched


def test_update_ema_equals_averaged_models_own_update():
    """update_ema skips AveragedModel's per-step host-to-device counter copy; the weights it
    produces must be exactly those of AveragedModel.update_parameters."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from behavior_models.training import update_ema

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model.register_buffer("scale", torch.ones(2))
    ours, reference = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
                       for _ in range(2))
    for _ in range(5):
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.add_(torch.randn_like(tensor))
        update_ema(ours, model)
        reference.update_parameters(model)
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    assert ours.n_averaged.device.type == "cpu"


def test_restore_generator_refuses_the_state_of_another_device_type():
    state = torch.Generator().manual_seed(3).get_state()
    generator = torch.Generator()
    restore_generator(generator, state, "fit/checkpoint.pt")
    assert torch.equal(generator.get_state(), state)
    with pytest.raises(ArtefactMismatchError, match="fit/checkpoint.pt .* another device type than cpu"):
        restore_generator(generator, torch.zeros(16, dtype=torch.uint8), "fit/checkpoint.pt")  # a CUDA state's size


def test_force_replaces_a_fit_but_not_a_directory_of_other_files(data, tmp_path):
    quick = dataclasses.replace(SMALL, steps=2)
    GaussianBehaviorModel.fit(data, quick, out_dir=tmp_path / "run", progress=False)
    GaussianBehaviorModel.fit(data, quick, out_dir=tmp_path / "run", force=True, progress=False)  # a fit: replaced
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "notes.txt").write_text("precious")
    with pytest.raises(ArtefactMismatchError, match="is not a behavior-model run"):
        GaussianBehaviorModel.fit(data, quick, out_dir=tmp_path / "thesis", force=True, progress=False)
    assert (tmp_path / "thesis" / "notes.txt").read_text() == "precious"


def test_force_keeps_the_run_when_the_backend_refuses_the_new_config(data, tmp_path):
    # The CVAE checks its estimator when the model is built; that used to be after --force had
    # deleted the previous run, so a typo cost the fitted model.
    from behavior_models.cvae import CVAEBehaviorModel, CVAEConfig

    CVAEBehaviorModel.fit(data, CVAEConfig(steps=20, hidden=(8,)), out_dir=tmp_path / "run", progress=False)
    before = sorted(path.name for path in (tmp_path / "run").iterdir())
    with pytest.raises(ConfigError, match="estimator must be 'iw' or 'elbo', got 'IW'"):
        CVAEBehaviorModel.fit(data, CVAEConfig(steps=20, hidden=(8,), estimator="IW"), out_dir=tmp_path / "run",
                              force=True, progress=False)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == before


def test_a_fit_killed_while_writing_its_first_checkpoint_can_be_rerun_or_forced(data, tmp_path):
    """All such a fit leaves is the atomic write's temporary file, which is not a finished artefact."""
    quick = dataclasses.replace(SMALL, steps=2)
    for flags in ({}, {"force": True}, {"resume": True}):
        out = tmp_path / f"run{len(flags)}{''.join(flags)}"
        out.mkdir()
        (out / ".checkpoint.pt.0123456789ab.tmp").write_bytes(b"half a checkpoint")
        GaussianBehaviorModel.fit(data, quick, out_dir=out, progress=False, **flags)
        assert (out / "model.json").is_file()
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "draft.0123456789ab.tmp").write_text("precious")  # not a name atomic writes use
    with pytest.raises(ArtefactMismatchError, match="is not a behavior-model run"):
        GaussianBehaviorModel.fit(data, quick, out_dir=tmp_path / "thesis", force=True, progress=False)


def test_support_threshold_is_the_configured_quantile_of_held_out_log_probs(data, tmp_path):
    # Fewer calibration points than held-out transitions (50 here), so the point selection matters.
    config = dataclasses.replace(SMALL, calibration_points=32)
    model = GaussianBehaviorModel.fit(data, config, out_dir=tmp_path / "run", progress=False)
    # The fit's split and calibrate()'s point selection, rebuilt from the config.
    train, held_out = data.split_episodes(config.holdout_fraction, seed=config.seed)
    assert 0 < len(held_out) < len(data) and len(held_out) > config.calibration_points
    index = np.random.default_rng(config.seed).choice(len(held_out), config.calibration_points, replace=False)
    with torch.no_grad():
        log_p = model.log_prob(torch.as_tensor(held_out.observations[index]),
                               torch.as_tensor(held_out.actions[index])).double()
    expected = float(torch.quantile(log_p, config.support_quantile))
    assert config.support_quantile == 0.01 and model.threshold_source == "quantile=0.01"
    assert float(model.support_threshold) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert behavior_models.load(tmp_path / "run").support_threshold.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_a_dataset_whose_action_box_is_not_unit_is_refused_before_fitting(data, tmp_path):
    """Samples are clipped to [-1, 1] and density inputs clamped inside it: actions of a [-3, 3] box
    would be fitted as a spike at the clamp, silently (InvertedPendulum, Pusher)."""
    act_dim = data.act_dim
    wide = dataclasses.replace(data, info=dataclasses.replace(data.info, action_low=(-3.0,) * act_dim,
                                                              action_high=(3.0,) * act_dim))
    with pytest.raises(DatasetError, match=r"action box is low \[-3.0.*not \[-1, 1\].*RescaleAction"):
        GaussianBehaviorModel.fit(wide, GaussianConfig(steps=2), out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_fit_returns_the_exponential_moving_average_of_the_weights(data, monkeypatch):
    """With ema_decay d the returned weights are e_K of e_1 = w_1, e_k = d e_(k-1) + (1 - d) w_k over the
    raw weights w_k after each step, recomputed here by hand: a decay applied the wrong way round
    (weight d on the new weights) returns nearly the last raw weights and passed every other test."""
    config = dataclasses.replace(SMALL, steps=20, ema_decay=0.8, holdout_fraction=0.0)
    original = GaussianBehaviorModel.training_step
    raw = []

    def record(self, *args):
        metrics = original(self, *args)
        raw.append({key: value.detach().clone() for key, value in self.named_parameters()})
        return metrics

    monkeypatch.setattr(GaussianBehaviorModel, "training_step", record)
    model = GaussianBehaviorModel.fit(data, config, progress=False)
    assert len(raw) == 20
    for key, value in model.named_parameters():
        average = raw[0][key].double()
        for weights in raw[1:]:
            average = 0.8 * average + 0.2 * weights[key].double()
        torch.testing.assert_close(value.double(), average, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(value, raw[-1][key])  # the average is not the last iterate
