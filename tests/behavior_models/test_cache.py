import dataclasses
import json
import re

import numpy as np
import pytest
import torch

import behavior_models
from behavior_models import cache as cache_module
from behavior_models.base import ARQ_LOG_THRESHOLD
from behavior_models.cache import SampleCache, build_sample_cache, cache_states
from behavior_models.data import load_transitions
from behavior_models.errors import ArtefactMismatchError, ConfigError, DatasetError
from behavior_models.gan import GANBehaviorModel, GANConfig
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from behavior_models.io import load_npz
from tests.helpers import assert_same_cache, write_flat_dataset

LENGTHS = (13, 20, 7, 11)  # 51 transitions, 55 states


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small dataset and a (briefly) fitted Gaussian saved to a model directory."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root / "datasets"))
        write_flat_dataset("test/cache-v0", episode_lengths=LENGTHS, obs_dim=3, act_dim=2, seed=1)
        write_flat_dataset("test/cache-other-v0", episode_lengths=LENGTHS, obs_dim=3, act_dim=2, seed=2)
        data, other = load_transitions("test/cache-v0"), load_transitions("test/cache-other-v0")
    config = GaussianConfig(steps=40, batch_size=16, hidden=(16, 16), holdout_fraction=0.25, checkpoint_every=10_000)
    GaussianBehaviorModel.fit(data, config, out_dir=root / "model", progress=False)
    return root, data, other


def build(setup, out, **options):
    root, data, _ = setup
    options = {"num_samples": 6, "batch_states": 4, "chunk_states": 8, "seed": 3, "progress": False, **options}
    return SampleCache.load(build_sample_cache(root / "model", data, out, **options))


def test_each_state_once_and_rows_recover_the_transitions(setup):
    _, data, _ = setup
    states, obs_row, next_obs_row = cache_states(data)
    assert len(states) == sum(LENGTHS) + len(LENGTHS)
    np.testing.assert_array_equal(states[obs_row], data.observations)
    np.testing.assert_array_equal(states[next_obs_row], data.next_observations)
    # Within an episode s_{t+1} is the next transition's s_t: no state is stored twice.
    inner = ~data.episode_ends
    np.testing.assert_array_equal(next_obs_row[:-1][inner[:-1]], obs_row[1:][inner[:-1]])
    assert len(np.unique(np.concatenate([obs_row, next_obs_row]))) == len(states)


def test_format_round_trips(setup, tmp_path):
    root, data, _ = setup
    cache = build(setup, tmp_path / "c.npz")
    raw = load_npz(tmp_path / "c.npz")  # allow_pickle=False
    assert set(raw) == {"candidates", "log_probs", "in_support", "obs_row", "next_obs_row", "metadata_json"}
    assert raw["candidates"].dtype == np.float32 and raw["log_probs"].dtype == np.float32
    assert raw["in_support"].dtype == bool and raw["obs_row"].dtype == np.int64
    assert raw["metadata_json"].shape == () and raw["metadata_json"].dtype.kind == "U"
    m = len(LENGTHS) + sum(LENGTHS)
    assert cache.candidates.shape == (m, 6, 2) and cache.log_probs.shape == (m, 6)
    assert cache.candidates.abs().max() <= 1.0
    meta = cache.metadata
    assert meta["dataset_id"] == "test/cache-v0" and meta["dataset_fingerprint"] == data.fingerprint
    assert meta["model_fingerprint"] == behavior_models.io.fingerprint_directory(root / "model")
    assert meta["backend"] == "gaussian" and meta["num_samples"] == 6 and meta["library_version"]
    assert meta["threshold"] == {"value": ARQ_LOG_THRESHOLD, "kind": "absolute", "source": "ARQ default log(e^-5)"}
    assert meta["log_probs_scored_after_clipping"] is True and "created_utc" in meta
    assert not (tmp_path / "c.npz.work").exists()
    assert json.loads((tmp_path / "c.npz.json").read_text()) == meta  # the settings beside it, without NumPy
    # The stored log-probs belong to the stored actions, and the mask applies the recorded threshold.
    model = behavior_models.load(root / "model")
    states = cache.states(data)
    rescored = model.log_prob(states.repeat_interleave(6, 0), cache.candidates.reshape(-1, 2)).reshape(m, 6)
    torch.testing.assert_close(cache.log_probs, rescored, rtol=0, atol=1e-5)
    assert torch.equal(cache.in_support, cache.log_probs >= ARQ_LOG_THRESHOLD)
    assert behavior_models.SampleCache is SampleCache


def test_candidates_follow_the_model_distribution(setup, tmp_path):
    """Standardised by the model's Gaussian, each state's candidates are N(0, 1) draws.

    The model is narrowed first (std 0.05, means within +-0.5) so clipping never bites.
    """
    root, data, _ = setup
    model = behavior_models.load(root / "model")
    with torch.no_grad():
        head = model.net[-1]
        head.weight.mul_(0.02)
        head.bias[:2] = 0.1
        head.bias[2:] = np.log(0.05)
    model.save(tmp_path / "narrow")
    cache = SampleCache.load(build_sample_cache(tmp_path / "narrow", data, tmp_path / "c.npz", num_samples=500,
                                                batch_states=8, seed=5, progress=False))
    with torch.no_grad():
        dist = model.distribution(model.normalize(cache.states(data)))
        z = (cache.candidates - dist.mean[:, None]) / dist.stddev[:, None]
    assert cache.candidates.abs().max() < 0.9
    assert float(z.mean().abs()) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert float(z.mean(1).abs().max()) < 4 / np.sqrt(500)  # per state: samples sit at that state's mean


def test_draws_depend_on_state_not_on_chunking(setup, tmp_path):
    a = build(setup, tmp_path / "a.npz", chunk_states=8)
    b = build(setup, tmp_path / "b.npz", chunk_states=20)
    assert torch.equal(a.candidates, b.candidates) and torch.equal(a.log_probs, b.log_probs)
    c = build(setup, tmp_path / "c.npz", seed=4)
    assert not torch.allclose(a.candidates, c.candidates)


def test_building_leaves_the_callers_rng_state_untouched(setup, tmp_path):
    """The module docstring's promise: a caller that seeded torch draws the same numbers after a
    build as without one (loading the model used to advance the global RNG: a backend's
    constructor draws initial weights that the saved ones then replace)."""
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    build(setup, tmp_path / "c.npz")
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_resume_after_interruption_skips_finished_chunks(setup, tmp_path, monkeypatch):
    reference = build(setup, tmp_path / "ref.npz")
    written = []
    real_write = cache_module._write_chunk

    def crash_after_three(path, **arrays):
        if len(written) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C would, mid-run
        written.append(path.name)
        real_write(path, **arrays)

    monkeypatch.setattr(cache_module, "_write_chunk", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        build(setup, tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()
    assert sorted(p.name for p in (tmp_path / "c.npz.work").glob("chunk-*")) == sorted(written)

    calls = []
    real_draw = cache_module._draw
    monkeypatch.setattr(cache_module, "_write_chunk", real_write)
    monkeypatch.setattr(cache_module, "_draw", lambda model, obs, *a: calls.append(len(obs)) or real_draw(model, obs, *a))
    resumed = build(setup, tmp_path / "c.npz")
    total = len(LENGTHS) + sum(LENGTHS)
    assert sum(calls) == total - 3 * 8  # the three finished chunks of 8 states are not redone
    assert_same_cache(resumed, reference)


@pytest.mark.parametrize("change, message", [({"seed": 1}, "seed: then 0, now 1"),
                                             ({"batch_states": 2}, "batch_states: then 4, now 2"),
                                             ({"dtype": "float16"}, "dtype: then 'float32', now 'float16'"),
                                             ({"threshold": -3.0}, "threshold"),
                                             ({"likelihood": "none"}, "likelihood: then 'joint', now 'none'")])
def test_resume_refuses_each_changed_setting(setup, tmp_path, monkeypatch, change, message):
    """Finished chunks were drawn with the started settings: resuming with any other is refused."""
    root, data, _ = setup
    monkeypatch.setattr(cache_module, "_merge", lambda *a, **k: None)  # stop before the merge: a run in progress
    build_sample_cache(root / "model", data, tmp_path / "c.npz", num_samples=6, batch_states=4, progress=False)
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_sample_cache(root / "model", data, tmp_path / "c.npz", **{"num_samples": 6, "batch_states": 4, **change},
                           progress=False)


def test_resume_refuses_a_changed_model_or_settings(setup, tmp_path, monkeypatch):
    root, data, _ = setup
    monkeypatch.setattr(cache_module, "_merge", lambda *a, **k: None)  # stop before the merge: a run in progress
    build_sample_cache(root / "model", data, tmp_path / "c.npz", num_samples=6, batch_states=4, progress=False)
    with pytest.raises(ConfigError, match="num_samples: then 6, now 7"):
        build_sample_cache(root / "model", data, tmp_path / "c.npz", num_samples=7, batch_states=4, progress=False)
    model_dir = tmp_path / "model"
    model = behavior_models.load(root / "model")
    model.save(model_dir)
    (tmp_path / "c.npz.work" / "manifest.json").write_text(
        (tmp_path / "c.npz.work" / "manifest.json").read_text().replace(str((root / "model").resolve()), str(model_dir)))
    model.support_threshold.fill_(-1.0)  # a recalibrated model is a changed model directory
    model.save(model_dir)
    with pytest.raises(ArtefactMismatchError, match="changed since this cache was started") as error:
        build_sample_cache(model_dir, data, tmp_path / "c.npz", num_samples=6, batch_states=4, progress=False)
    manifest = json.loads((tmp_path / "c.npz.work" / "manifest.json").read_text())
    assert manifest["model_fingerprint"] in str(error.value)


def test_a_dataset_whose_action_box_is_not_unit_is_refused(setup, tmp_path):
    root, data, _ = setup
    wide = dataclasses.replace(data, info=dataclasses.replace(data.info, action_high=(2.0,) * data.act_dim))
    with pytest.raises(DatasetError, match=r"not \[-1, 1\]"):
        build_sample_cache(root / "model", wide, tmp_path / "c.npz", progress=False)
    assert not (tmp_path / "c.npz.work").exists()


def test_an_option_the_backend_lacks_is_refused_before_anything_is_written(setup, tmp_path):
    with pytest.raises(ConfigError, match="gaussian backend refused an option: its sample takes no 'no_such_option'"):
        build(setup, tmp_path / "c.npz", sampler_options={"no_such_option": 1})
    with pytest.raises(ConfigError, match="its log_prob takes no 'solver'"):
        build(setup, tmp_path / "c.npz", likelihood="separate", log_prob_options={"solver": "dopri5"})
    assert not (tmp_path / "c.npz.work").exists()


def test_a_run_refused_at_its_first_draw_does_not_hold_back_the_corrected_command(setup, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):  # as a backend refuses an option's value (an unknown sampler name)
        raise ConfigError("unknown sampler 'typo'")

    real_draw = cache_module._draw
    monkeypatch.setattr(cache_module, "_draw", refuse)
    with pytest.raises(ConfigError, match="unknown sampler"):
        build(setup, tmp_path / "c.npz", seed=5)
    assert (tmp_path / "c.npz.work" / "manifest.json").is_file()  # started, but nothing drawn
    monkeypatch.setattr(cache_module, "_draw", real_draw)
    assert_same_cache(build(setup, tmp_path / "c.npz"), build(setup, tmp_path / "ref.npz"))


def test_force_discards_an_unfinished_cache_of_other_settings(setup, tmp_path, monkeypatch):
    root, data, _ = setup
    real_merge = cache_module._merge
    monkeypatch.setattr(cache_module, "_merge", lambda *a, **k: None)  # finished chunks, no merge: a run in progress
    build_sample_cache(root / "model", data, tmp_path / "c.npz", num_samples=5, batch_states=4, chunk_states=8,
                       seed=3, progress=False)
    monkeypatch.setattr(cache_module, "_merge", real_merge)
    with pytest.raises(ConfigError, match="pass --force"):
        build(setup, tmp_path / "c.npz")
    assert_same_cache(build(setup, tmp_path / "c.npz", overwrite=True), build(setup, tmp_path / "ref.npz"))


def test_a_resume_on_another_device_type_is_refused(setup, tmp_path, monkeypatch):
    """CPU and CUDA generators draw different streams from one seed: the chunks would mix them."""
    root, data, _ = setup
    monkeypatch.setattr(cache_module, "_merge", lambda *a, **k: None)  # finished chunks, no merge: a run in progress
    build_sample_cache(root / "model", data, tmp_path / "c.npz", num_samples=5, batch_states=4, chunk_states=8,
                       seed=3, progress=False)
    manifest_path = tmp_path / "c.npz.work" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["device_type"] == "cpu"
    manifest_path.write_text(json.dumps({**manifest, "device_type": "cuda"}))  # as if started on a GPU
    with pytest.raises(ConfigError, match="device_type: then 'cuda', now 'cpu'"):
        build_sample_cache(root / "model", data, tmp_path / "c.npz", num_samples=5, batch_states=4, chunk_states=8,
                           seed=3, progress=False)


def test_consumers_refuse_another_dataset(setup, tmp_path):
    root, data, other = setup
    with pytest.raises(ArtefactMismatchError, match=f"fitted on dataset test/cache-v0 .*{data.fingerprint}"):
        build_sample_cache(root / "model", other, tmp_path / "o.npz", progress=False)  # a model of another dataset
    cache = build(setup, tmp_path / "c.npz")
    assert cache.matches(data) and not cache.matches(other)
    cache.check(data)
    with pytest.raises(ArtefactMismatchError) as error:
        cache.check(other)
    assert data.fingerprint in str(error.value) and other.fingerprint in str(error.value)
    with pytest.raises(ArtefactMismatchError):
        cache.states(other)


def test_threshold_options_and_float16(setup, tmp_path):
    root, data, _ = setup
    calibrated = behavior_models.load(root / "model").resolve_threshold()
    cache = build(setup, tmp_path / "cal.npz", threshold="calibrated")
    assert cache.metadata["threshold"]["kind"] == "calibrated"
    assert cache.threshold == pytest.approx(calibrated)
    assert torch.equal(cache.in_support, cache.log_probs >= calibrated)
    assert 0 < float(cache.in_support.float().mean()) < 1

    half = build(setup, tmp_path / "half.npz", dtype="float16", threshold=-1.5)
    full = build(setup, tmp_path / "full.npz", threshold=-1.5)
    assert half.candidates.dtype == torch.float16 and half.metadata["threshold"]["value"] == -1.5
    torch.testing.assert_close(half.candidates.float(), full.candidates, rtol=0, atol=1e-3)
    assert torch.equal(half.log_probs, full.log_probs)

    separate = build(setup, tmp_path / "sep.npz", likelihood="separate")
    joint = build(setup, tmp_path / "joint.npz")
    assert_same_cache(separate, joint)
    none = build(setup, tmp_path / "none.npz", likelihood="none")
    assert torch.isnan(none.log_probs).all() and none.in_support.all()
    assert torch.equal(none.candidates, joint.candidates)
    # Nothing was scored, so no threshold was applied, and the metadata says so.
    assert none.threshold is None and none.metadata["threshold"]["kind"] == "none"
    with pytest.raises(ConfigError, match="likelihood='none'"):
        build(setup, tmp_path / "none-cut.npz", likelihood="none", threshold=-1.5)



def test_an_unnormalised_model_defaults_to_its_calibrated_threshold_not_arqs_density(setup, tmp_path):
    # The GAN's log_prob is a discriminator logit: ARQ's log(e^-5) would read as D >= 0.0067.
    root, data, _ = setup
    config = GANConfig(steps=20, batch_size=16, hidden=(16,), holdout_fraction=0.25, checkpoint_every=10_000)
    GANBehaviorModel.fit(data, config, out_dir=tmp_path / "gan", progress=False)
    calibrated = behavior_models.load(tmp_path / "gan").resolve_threshold()
    assert calibrated != ARQ_LOG_THRESHOLD
    cache = SampleCache.load(build_sample_cache(tmp_path / "gan", data, tmp_path / "gan.npz", num_samples=6,
                                                batch_states=4, seed=3, progress=False))
    assert cache.metadata["log_prob_kind"] == "unnormalized"
    assert cache.metadata["threshold"]["kind"] == "calibrated" and "unnormalised" in cache.metadata["threshold"]["source"]
    assert cache.threshold == pytest.approx(calibrated)
    assert torch.equal(cache.in_support, cache.log_probs >= calibrated)
    explicit = SampleCache.load(build_sample_cache(tmp_path / "gan", data, tmp_path / "gan-0.npz", num_samples=6,
                                                   batch_states=4, seed=3, threshold=0.0, progress=False))
    assert explicit.metadata["threshold"] == {"value": 0.0, "kind": "absolute", "source": "user"}
    GANBehaviorModel.fit(data, dataclasses.replace(config, holdout_fraction=0.0), out_dir=tmp_path / "gan-all",
                         progress=False)
    with pytest.raises(ConfigError, match="no calibrated one .*threshold=0 keeps D >= 0.5"):
        build_sample_cache(tmp_path / "gan-all", data, tmp_path / "gan-all.npz", num_samples=2, progress=False)
    assert not (tmp_path / "gan-all.npz.work").exists()  # refused before anything was written


def test_damaged_cache_metadata_is_refused_naming_the_fix(setup, tmp_path):
    path = build_sample_cache(setup[0] / "model", setup[1], tmp_path / "cache.npz", num_samples=2, batch_states=4,
                              progress=False)
    arrays = load_npz(path)
    metadata = json.loads(str(arrays["metadata_json"]))
    del metadata["dataset_fingerprint"]
    for text, message in ((json.dumps(metadata), "its metadata lacks dataset_fingerprint"),
                          ('{"format_version": 1,', "its metadata_json is not JSON")):
        np.savez(tmp_path / "damaged.npz", **{**arrays, "metadata_json": np.array(text)})
        with pytest.raises(ArtefactMismatchError, match=rf"damaged.npz is damaged: {message}.*`bm sample-cache`"):
            SampleCache.load(tmp_path / "damaged.npz")

def test_bad_inputs_are_refused_with_clear_errors(setup, tmp_path):
    root, data, _ = setup
    build(setup, tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="already exists"):
        build(setup, tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="multiple of batch_states"):
        build(setup, tmp_path / "d.npz", chunk_states=6)
    with pytest.raises(ConfigError, match="refused an option"):
        build(setup, tmp_path / "e.npz", sampler_options={"sampler": "pc"})
    with pytest.raises(ConfigError, match="only to likelihood='separate'"):
        build(setup, tmp_path / "g.npz", log_prob_options={"solver": "dopri5"})
    with pytest.raises(ConfigError, match="'calibrated'"):
        build(setup, tmp_path / "f.npz", threshold="high")
    with pytest.raises(ArtefactMismatchError, match="no sample cache"):
        SampleCache.load(tmp_path / "missing.npz")


def test_a_truncated_cache_file_is_refused_with_a_clear_error(setup, tmp_path):
    """A cache cut short by an interrupted copy (scp, a full disk) is an npz whose zip directory is
    missing: it must be refused as an unreadable cache, not end in zipfile's bare BadZipFile."""
    build(setup, tmp_path / "c.npz")
    whole = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArtefactMismatchError, match="cut.npz is not a readable sample cache"):
        SampleCache.load(tmp_path / "cut.npz")


def test_default_chunks_bound_lost_work_and_memory():
    assert cache_module.default_chunk_states(256, 30, 2) == 16 * 256  # a kill loses at most 16 batches
    big = cache_module.default_chunk_states(256, 1000, 64)  # 1000 x 64-d candidates per state
    assert big % 256 == 0 and big * 1000 * (4 * 64 + 5) <= cache_module.CHUNK_TARGET_BYTES
