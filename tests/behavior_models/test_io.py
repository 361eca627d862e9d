"""behavior_models.io: typed configs (coerce_field), atomic writes, and what --force may delete."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from behavior_models.errors import ArtefactMismatchError, ConfigError
from behavior_models.io import (
    atomic_path, coerce_field, config_from_dict, config_to_dict, fingerprint_arrays, remove_for_restart,
    write_text_atomic,
)
from behavior_models.registry import BACKENDS, backend_class


@dataclass(frozen=True)
class Example:
    steps: int = 10
    lr: float = 1e-3
    flag: bool = True
    name: str = "a"
    hidden: tuple[int, ...] = (4, 4)
    alpha: float | None = None
    k: int | None = None
    mode: Literal["fast", "slow"] = "fast"


@pytest.mark.parametrize("name, value, expected", [
    ("steps", "100", 100),  # a hand-written JSON file quoting a number
    ("lr", 1, 1.0),  # a JSON int for a float field
    ("lr", "1e-4", 1e-4),
    ("flag", "False", False),  # not the truthy string 'False'
    ("flag", "TRUE", True),
    ("flag", "0", False),
    ("hidden", [8, 8], (8, 8)),
    ("hidden", "8, 8", (8, 8)),
    ("hidden", "[8,8]", (8, 8)),
    ("alpha", None, None),
    ("alpha", "null", None),
    ("k", "None", None),
    ("k", "3", 3),
    ("mode", "slow", "slow"),
])
def test_values_are_coerced_to_the_declared_type(name, value, expected):
    coerced = coerce_field(Example, name, value)
    assert coerced == expected and type(coerced) is type(expected)
    assert getattr(config_from_dict(Example, {name: value}), name) == expected


@pytest.mark.parametrize("name, value, expected_type", [
    ("steps", 3.5, "an integer"),
    ("steps", "3.5", "an integer"),
    ("steps", True, "an integer"),
    ("steps", "many", "an integer"),
    ("lr", "1e-3x", "a number"),
    ("flag", "yes", "a boolean"),
    ("flag", 2, "a boolean"),
    ("name", 3, "a string"),
    ("hidden", "8,x", "a tuple of integers"),
    ("hidden", "[8", "a tuple of integers"),
    ("hidden", 8, "a tuple of integers"),
    ("k", "3.5", "an integer or null"),
    ("mode", "medium", "one of 'fast', 'slow'"),
])
def test_a_value_of_the_wrong_type_names_field_value_and_type(name, value, expected_type):
    with pytest.raises(ConfigError) as error:
        config_from_dict(Example, {name: value})
    assert f"Example.{name}" in str(error.value) and repr(value) in str(error.value)
    assert expected_type in str(error.value)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_config_survives_the_json_round_trip(backend):
    cls = backend_class(backend).config_class
    assert config_from_dict(cls, config_to_dict(cls())) == cls()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "artefact.json", "{}")
        with open(tmp_path / "plain.json", "w") as handle:
            handle.write("{}")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "artefact.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~umask


def test_a_failed_block_leaves_neither_target_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(tmp_path / "cache.npz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []



def test_an_atomic_write_syncs_the_file_and_then_its_directory(tmp_path, monkeypatch):
    # The rename is durable only once the directory is synced; checkpoint rotation deletes older
    # files right after a write, so a power loss must not leave neither.
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    with atomic_path(tmp_path / "checkpoint.pt") as tmp:
        tmp.write_bytes(b"weights")
    assert synced == [False, True] and (tmp_path / "checkpoint.pt").read_bytes() == b"weights"

def test_remove_for_restart_deletes_only_a_run_or_an_empty_directory(tmp_path):
    entries = ("config.json", "checkpoints", "final_eval*.json")

    def is_run(directory):
        return (directory / "checkpoints").is_dir()

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "final_eval[policy=implicit].json").write_text("{}")
    remove_for_restart(run, entries, is_run, "a run")
    assert not run.exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".config.json.0123456789ab.tmp").write_text("{")  # a killed atomic write
    remove_for_restart(tmp_path / "empty", entries, is_run, "a run")
    assert not (tmp_path / "empty").exists()
    # A project directory holding a config.json, or a run with a file the tool never writes, is kept.
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "thesis.tex").write_text("precious")
    with pytest.raises(ArtefactMismatchError, match="project is not a run .it holds thesis.tex.* delete .* yourself"):
        remove_for_restart(project, entries, is_run, "a run")
    assert (project / "thesis.tex").read_text() == "precious"
    (project / "thesis.tex").unlink()
    (project / "checkpoints").rmdir()
    with pytest.raises(ArtefactMismatchError, match="project is not a run; --force"):  # known names, not recognised
        remove_for_restart(project, entries, is_run, "a run")
    assert (project / "config.json").is_file()


def test_fingerprints_tell_apart_arrays_of_the_same_bytes_in_another_shape_or_dtype():
    """fingerprint_arrays hashes dtype and shape with the bytes: the same bytes read as [2, 3] or
    [3, 2], as float32 or int32, or split differently between two arrays are different contents."""
    values = np.arange(6, dtype=np.float32)
    prints = {fingerprint_arrays(values.reshape(2, 3)), fingerprint_arrays(values.reshape(3, 2)),
              fingerprint_arrays(values.view(np.int32)), fingerprint_arrays(values[:2], values[2:]),
              fingerprint_arrays(values[:4], values[4:])}
    assert len(prints) == 5
    assert fingerprint_arrays(values.reshape(2, 3)) == fingerprint_arrays(values.copy().reshape(2, 3))
