"""write_minari_dataset is atomic: an interrupted write loses nothing and shows nothing half-built."""

import os
import socket
import subprocess
import sys

import minari
import numpy as np
import pytest

from behavior_models.data import is_local, list_local_datasets, load_transitions
from behavior_models.data.writing import STAGING_PREFIX, remove_stale_staging_dirs
from tests.helpers import write_flat_dataset


def _interrupt_after_writing(monkeypatch):
    """Make the next dataset build be interrupted right after Minari wrote its files."""
    create = minari.create_dataset_from_buffers

    def create_then_die(*args, **kwargs):
        create(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", create_then_die)


def test_an_interrupted_overwrite_keeps_the_old_dataset(minari_datasets_path, monkeypatch):
    old = write_flat_dataset("test/keep-v0", episode_lengths=(5, 7), seed=1)
    _interrupt_after_writing(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_flat_dataset("test/keep-v0", episode_lengths=(3,), seed=2, overwrite=True)
    data = load_transitions("test/keep-v0")
    assert len(data) == 12
    np.testing.assert_array_equal(data.actions[:5], old[0]["actions"])
    assert [p.name for p in minari_datasets_path.iterdir()] == ["test"]  # no staging dir left


def test_an_interrupted_first_write_leaves_no_dataset(minari_datasets_path, monkeypatch):
    _interrupt_after_writing(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_flat_dataset("test/new-v0")
    assert not is_local("test/new-v0") and list_local_datasets() == []


def test_overwrite_replaces_and_returns_the_dataset_at_its_final_path(minari_datasets_path):
    write_flat_dataset("test/replace-v0", episode_lengths=(5, 7))
    write_flat_dataset("test/replace-v0", episode_lengths=(3,), overwrite=True, ref_min_score=0.0, ref_max_score=1.0)
    assert len(load_transitions("test/replace-v0")) == 3
    dataset = minari.load_dataset("test/replace-v0")
    assert dataset.storage.metadata["ref_max_score"] == 1.0
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_flat_dataset("test/replace-v0")
    assert list_local_datasets() == ["test/replace-v0"]
    # The namespace metadata Minari writes for a direct write is carried over from the staging root.
    assert (minari_datasets_path / "test" / "namespace_metadata.json").is_file()


def test_a_relative_datasets_path_works(minari_datasets_path, monkeypatch):
    """MINARI_DATASETS_PATH relative to the working directory (Minari itself doubles such a path
    while it counts the dataset's size)."""
    monkeypatch.chdir(minari_datasets_path.parent)
    monkeypatch.setenv("MINARI_DATASETS_PATH", minari_datasets_path.name)
    write_flat_dataset("test/relative-v0", episode_lengths=(5, 7))
    assert len(load_transitions("test/relative-v0")) == 12
    assert (minari_datasets_path / "test" / "relative-v0" / "data").is_dir()


def test_a_dataset_that_appears_meanwhile_is_kept(minari_datasets_path, monkeypatch):
    theirs = minari_datasets_path / "test" / "race-v0" / "data"
    create = minari.create_dataset_from_buffers

    def create_while_another_process_builds_it(*args, **kwargs):
        result = create(*args, **kwargs)
        theirs.mkdir(parents=True)
        (theirs / "metadata.json").write_text("{}")
        return result

    monkeypatch.setattr(minari, "create_dataset_from_buffers", create_while_another_process_builds_it)
    with pytest.raises(FileExistsError, match="appeared"):
        write_flat_dataset("test/race-v0")
    assert (theirs / "metadata.json").read_text() == "{}"
    assert not any(p.name.startswith(STAGING_PREFIX) for p in minari_datasets_path.iterdir())


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _fake_staging(root, name):
    """A staging root holding a complete-looking dataset, as a killed build leaves it."""
    data = root / name / "local" / "thing-v0" / "data"
    data.mkdir(parents=True)
    (data / "metadata.json").write_text("{}")
    return root / name


def test_stale_staging_dirs_are_removed_but_live_and_foreign_ones_kept(minari_datasets_path):
    host = socket.gethostname()
    dead = _fake_staging(minari_datasets_path, f"{STAGING_PREFIX}{_dead_pid()}@{host}.abc123")
    live = _fake_staging(minari_datasets_path, f"{STAGING_PREFIX}{os.getpid()}@{host}.def456")
    foreign = _fake_staging(minari_datasets_path, f"{STAGING_PREFIX}{_dead_pid()}@not-{host}.ghi789")
    unnamed = _fake_staging(minari_datasets_path, f"{STAGING_PREFIX}jkl012")
    assert list_local_datasets() == []  # none of them is a dataset
    write_flat_dataset("test/after-v0")  # a build starts by removing the stale ones
    assert not dead.exists()
    assert live.exists() and foreign.exists() and unnamed.exists()
    assert list_local_datasets() == ["test/after-v0"]
    remove_stale_staging_dirs(minari_datasets_path / "missing")  # no root yet: nothing to do
