"""BehaviorModelConfig refuses counts and ranges that mean nothing; saved weights must fit their config."""

import json
import shutil

import numpy as np
import pytest
import torch

import behavior_models
from behavior_models.base import BehaviorModelConfig
from behavior_models.data import load_transitions
from behavior_models.errors import ArtefactMismatchError, ConfigError
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from behavior_models.io import config_from_dict
from behavior_models.score.model import ScoreConfig
from tests.helpers import write_flat_dataset

COUNTS = ("steps", "batch_size", "log_every", "checkpoint_every", "calibration_points")


@pytest.mark.parametrize("cls", [BehaviorModelConfig, GaussianConfig, ScoreConfig])
@pytest.mark.parametrize("field", COUNTS)
def test_counts_below_one_are_refused(cls, field):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field} must be at least 1, got 0"):
        cls(**{field: 0})
    assert getattr(cls(**{field: 1}), field) == 1


@pytest.mark.parametrize("cls", [BehaviorModelConfig, GaussianConfig, ScoreConfig])
def test_a_learning_rate_that_is_not_positive_is_refused(cls):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.lr must be > 0, got -1"):
        cls(lr=-1)


@pytest.mark.parametrize("delta", [0.0, 1e-8, 0.5, -0.1])
def test_a_boundary_delta_that_would_reach_the_box_edge_is_refused(delta):
    # 1 - 1e-8 is 1.0 in float32: a flow would take atanh(1) at the edge (a nan log-prob).
    with pytest.raises(ConfigError, match=rf"boundary_delta must be in \[1e-6, 0.5\), got {delta}"):
        GaussianConfig(boundary_delta=delta)
    assert GaussianConfig(boundary_delta=1e-6).boundary_delta == 1e-6


@pytest.mark.parametrize("field", ["pc_t_end", "grad_t", "train_t_min", "likelihood_eps"])
def test_score_diffusion_times_outside_zero_one_are_refused(field):
    for value in (0.0, 1.0):  # at t = 0 the score divides by sigma(0) = 0
        with pytest.raises(ConfigError, match=rf"{field}={value}: these diffusion times must be in \(0, 1\)"):
            ScoreConfig(**{field: value})


def test_a_config_file_with_a_zero_batch_is_refused():
    with pytest.raises(ConfigError, match="batch_size must be at least 1, got 0"):
        config_from_dict(GaussianConfig, {"batch_size": 0})


def test_weights_of_another_shape_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    write_flat_dataset("test/base-v0", episode_lengths=(20, 20), obs_dim=3, act_dim=2, seed=0)
    data = load_transitions("test/base-v0")
    for width in (8, 16):
        config = GaussianConfig(steps=2, batch_size=8, hidden=(width,), holdout_fraction=0.0)
        GaussianBehaviorModel.fit(data, config, out_dir=tmp_path / f"w{width}", progress=False)
    shutil.copy(tmp_path / "w8" / "weights.pt", tmp_path / "w16" / "weights.pt")
    # model.json records the SHA-256 of the weights it was saved with: caught before any loading.
    with pytest.raises(ArtefactMismatchError, match=r"w16/weights.pt is not the weights its model.json was written with"):
        behavior_models.load(tmp_path / "w16")
    # A model.json without the digest (saved before it existed): the shapes are still checked.
    meta_path = tmp_path / "w16" / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["weights_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtefactMismatchError, match=r"w16/weights.pt does not fit the gaussian model .*`bm fit --model gaussian"):
        behavior_models.load(tmp_path / "w16")


def test_an_interrupted_save_and_damaged_files_are_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    write_flat_dataset("test/base-v0", episode_lengths=(20, 20), obs_dim=3, act_dim=2, seed=0)
    data = load_transitions("test/base-v0")
    config = GaussianConfig(steps=2, batch_size=8, hidden=(8,), holdout_fraction=0.0)
    model = GaussianBehaviorModel.fit(data, config, out_dir=tmp_path / "m", progress=False)
    old_meta = (tmp_path / "m" / "model.json").read_text()
    # The weights of a longer fit renamed into place, then the process killed before model.json.
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text(old_meta)
    with pytest.raises(ArtefactMismatchError, match=r"a save interrupted between the two files.*--resume"):
        behavior_models.load(tmp_path / "m")
    model.save(tmp_path / "m")
    assert torch.equal(next(behavior_models.load(tmp_path / "m").parameters()), next(model.parameters()))

    weights = tmp_path / "m" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["weights_sha256"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtefactMismatchError, match=r"m/weights.pt is damaged or not a checkpoint of this library"):
        behavior_models.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(ArtefactMismatchError, match=r"m/config.json is missing; refit"):
        behavior_models.load(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text('{"backend": "gauss')
    with pytest.raises(ArtefactMismatchError, match=r"m/model.json is damaged \(not readable JSON"):
        behavior_models.load(tmp_path / "m")


@pytest.mark.parametrize("cls", [BehaviorModelConfig, GaussianConfig, ScoreConfig])
@pytest.mark.parametrize(("field", "value", "interval"), [
    ("seed", -1, r"\[0, 2\^32 - 1\]"), ("seed", 2**32, r"\[0, 2\^32 - 1\]"),  # numpy's seed range
    ("support_quantile", 0.0, r"\(0, 1\)"), ("support_quantile", 1.0, r"\(0, 1\)"),  # used to fail after the fit
    ("holdout_fraction", -0.1, r"\[0, 1\)"), ("holdout_fraction", 1.0, r"\[0, 1\)"),
    ("ema_decay", 1.0, r"\[0, 1\)"), ("ema_decay", -0.5, r"\[0, 1\)"),  # 1: the average never moved
    ("lr_final_fraction", -1.0, r"\[0, inf\)"), ("lr_final_fraction", float("nan"), r"\[0, inf\)"),  # ascent
])
def test_values_outside_their_interval_are_refused_before_the_fit(cls, field, value, interval):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field} must be in {interval}, got {value}"):
        cls(**{field: value})


def test_batched_log_prob_feeds_a_float64_model_float64():
    model = GaussianBehaviorModel(3, 2, GaussianConfig(hidden=(8,))).double()
    observations, actions = np.zeros((5, 3), np.float32), np.zeros((5, 2), np.float32)
    assert model.batched_log_prob(observations, actions, batch_size=2).dtype == torch.float64
