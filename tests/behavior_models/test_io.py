"""behavior_models.io: atomic writes, and what --force may delete."""

from __future__ import annotations

import os
import stat

import pytest

from behavior_models.errors import ArtefactMismatchError
from behavior_models.io import atomic_path, remove_for_restart, write_text_atomic


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


def test_remove_for_restart_deletes_only_a_run_or_an_empty_directory(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    remove_for_restart(run, ("config.json", "checkpoints"), "a run")
    assert not run.exists()
    (tmp_path / "empty").mkdir()
    remove_for_restart(tmp_path / "empty", ("config.json",), "a run")
    assert not (tmp_path / "empty").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ArtefactMismatchError, match="notes is not a run .* delete .* yourself"):
        remove_for_restart(tmp_path / "notes", ("config.json",), "a run")
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"
