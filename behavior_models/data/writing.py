"""Writing episodes as a real Minari dataset (``minari.create_dataset_from_buffers``), atomically.

Used by the dataset recipes, the tests and the benchmarks, so that everything this library
generates is read back through the same path as a downloaded dataset.

An interrupted write must never leave a half-written dataset under its final name
(``is_local`` would take it as built), nor lose the dataset it replaces. So the dataset is
built in a private staging root inside the datasets root (``<root>/.building-<pid>@<host>.*``,
hence on the same filesystem) and its directory is renamed into place (``os.replace``, atomic
on POSIX); a dataset it replaces stays in place until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from behavior_models.data.minari_io import dataset_path, datasets_root

STAGING_PREFIX = ".building-"


def write_minari_dataset(
    dataset_id: str,
    episodes: Sequence[dict[str, Any]],
    *,
    observation_space: Any = None,
    action_space: Any = None,
    env: Any = None,
    eval_env: Any = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    algorithm_name: str = "behavior_models",
    description: str = "",
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
):
    """Create ``dataset_id`` from episode dicts and return the opened ``MinariDataset``.

    Each episode (a dict, or a ``minari.data_collector.EpisodeBuffer``) holds ``observations`` (T+1 rows, or a dict of such arrays),
    ``actions``, ``rewards``, ``terminations`` and ``truncations`` (T rows each), as
    ``create_dataset_from_buffers`` expects. Reference scores are stored as the
    ``ref_min_score``/``ref_max_score`` metadata keys Minari's own datasets use; ``metadata``
    (JSON-ready) adds further top-level metadata keys. Both are written before the dataset
    appears under its id.

    Raises ``FileExistsError`` if the dataset exists and ``overwrite`` is False, also when
    another process put it there while this one was building.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    if (ref_min_score is None) != (ref_max_score is None):
        raise ValueError("give both ref_min_score and ref_max_score, or neither")
    buffers = [episode if isinstance(episode, EpisodeBuffer) else EpisodeBuffer(**episode) for episode in episodes]
    root, target = datasets_root(), dataset_path(dataset_id)
    if target.exists() and not overwrite:
        raise FileExistsError(f"dataset {dataset_id} already exists at {target}; pass overwrite=True to replace it")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging_dirs(root)
    # Absolute: Minari's size count joins each globbed file, already prefixed with the data path,
    # onto that path again, which doubles a relative MINARI_DATASETS_PATH into a missing file.
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}@{socket.gethostname()}.", dir=root)).absolute()
    replaced = staging / ".replaced"  # a leading dot: no dataset id or namespace can clash with it
    try:
        with _minari_root(staging):
            _create(dataset_id, buffers, env=env, eval_env=eval_env, observation_space=observation_space,
                    action_space=action_space, algorithm_name=algorithm_name, description=description,
                    ref_min_score=ref_min_score, ref_max_score=ref_max_score, metadata=metadata)
        target.parent.mkdir(parents=True, exist_ok=True)
        _move_namespace_metadata(staging, root, dataset_id)
        if target.exists():
            if not overwrite:  # another process built it meanwhile: keep theirs, which may be in use
                raise FileExistsError(f"dataset {dataset_id} appeared at {target} while this one was being built; "
                                      "pass overwrite=True to replace it")
            # Moved aside rather than deleted, so that an interruption before the next rename
            # can put it back (the finally below), and a slow rmtree never leaves it half-deleted.
            os.replace(target, replaced)
        os.replace(staging / dataset_id, target)
    finally:
        if replaced.exists() and not target.exists():
            os.replace(replaced, target)
        shutil.rmtree(staging, ignore_errors=True)
    return minari.MinariDataset(target / "data")


def _create(dataset_id: str, buffers: list, *, ref_min_score: float | None, ref_max_score: float | None,
            metadata: dict[str, Any] | None, description: str, **kwargs: Any) -> None:
    """Write the dataset under the Minari root in effect, with its reference scores and metadata.

    Returns nothing so that the dataset (and its open file) is released before the move.
    """
    import minari

    # Reference scores are written afterwards, with update_metadata: create_dataset_from_buffers
    # drops them when there is no eval env, and rolls out 100 random episodes when only
    # ref_max_score is given. Recipes measure both themselves.
    with warnings.catch_warnings():
        # Minari warns about every optional metadata field left empty; nothing to act on here.
        warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None).*", category=UserWarning)
        dataset = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            author="behavior-models",
            author_email="behavior-models@localhost",
            code_permalink="behavior-models",
            description=description or f"{dataset_id}, written by behavior_models",
            **kwargs,
        )
    extra = dict(metadata or {})
    if ref_min_score is not None:
        extra.update(ref_min_score=float(ref_min_score), ref_max_score=float(ref_max_score))
    if extra:
        dataset.storage.update_metadata(extra)


@contextlib.contextmanager
def _minari_root(root: Path) -> Iterator[None]:
    """Point Minari (which reads MINARI_DATASETS_PATH at each call) at ``root`` for a while."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _move_namespace_metadata(staging: Path, root: Path, dataset_id: str) -> None:
    """Carry over the namespace_metadata.json files Minari wrote for the dataset's namespaces
    (as a direct write into ``root`` would have), keeping any that already exist."""
    from minari.namespace import NAMESPACE_METADATA_FILENAME

    for namespace in Path(dataset_id).parents:
        source, dest = staging / namespace / NAMESPACE_METADATA_FILENAME, root / namespace / NAMESPACE_METADATA_FILENAME
        if namespace != Path(".") and source.is_file() and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, dest)


def remove_stale_staging_dirs(root: Path) -> None:
    """Delete the staging dirs of builds that were killed (SIGKILL skips their cleanup).

    A staging dir is named ``.building-<pid>@<host>.<random>``; it is stale only if it was made
    on this host and that pid is no longer running. Age is no criterion (a live build can take
    hours) and other hosts' dirs are left alone (a shared filesystem: their pids mean nothing
    here). A reused pid only keeps a stale dir a while longer; dirs named otherwise are kept.
    """
    host = socket.gethostname()
    for path in root.glob(f"{STAGING_PREFIX}*"):
        pid, _, rest = path.name[len(STAGING_PREFIX):].partition("@")
        if not pid.isdigit() or rest.rpartition(".")[0] != host or _pid_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
