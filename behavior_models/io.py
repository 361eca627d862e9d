"""Small I/O helpers shared by every artefact writer: atomic writes, JSON configs, fingerprints.

Every long job writes through these so that an interrupted run never leaves a half-written
file under the final name: data goes to a temporary file in the same directory, is flushed
to disk, then renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from types import UnionType
from typing import Any, Callable, Iterable, Iterator, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

from behavior_models.errors import ArtefactMismatchError, ConfigError, first_lines

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    ``suffix`` is kept on the temporary name for writers that insist on an extension
    (``np.savez`` appends ``.npz`` otherwise).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_file_beside(target, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_directory(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: after a power loss the new directory entry survives only once the
    directory itself is synced, and callers delete older files (checkpoints) right after."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories (Windows): the rename is what it is
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(descriptor)


def _create_file_beside(target: Path, suffix: str) -> Path:
    """Create a new, empty, uniquely named file beside ``target`` and return its path.

    Not ``tempfile.mkstemp``: it always creates mode 0600, which ``os.replace`` keeps, so every
    artefact would be unreadable to other users. Creating with 0666 lets the kernel apply the
    umask (and any default ACL) exactly as for a plain ``open()``, without reading the umask,
    which can only be done by setting it process-wide (racy with other threads).
    """
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # name taken (astronomically rare): draw another
            continue
        return tmp


_TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp")  # _create_file_beside's names


def contents(directory: Path) -> list[Path]:
    """The entries of ``directory``, without the temporary files of atomic writes that a killed
    process left behind (a fit killed while writing its first checkpoint leaves only that)."""
    return [entry for entry in directory.iterdir() if not _TEMPORARY_NAME.match(entry.name)]


def remove_for_restart(directory: str | os.PathLike, entries: tuple[str, ...], is_ours: Callable[[Path], bool],
                       what: str) -> None:
    """Delete ``directory`` for ``--force``, but only if it is empty or is ``what``: ``is_ours``
    recognises it and every entry matches one of ``entries`` (glob patterns; temporaries of
    atomic writes aside). A mistyped ``--out``, a project directory that happens to hold a
    config.json, or the other tool's run is never wiped."""
    directory = Path(directory)
    if not directory.exists():
        return
    present = contents(directory) if directory.is_dir() else [directory]
    unknown = sorted(entry.name for entry in present if not any(fnmatch.fnmatch(entry.name, pattern) for pattern in entries))
    if present and (unknown or not is_ours(directory)):
        detail = f" (it holds {', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''})" if unknown else ""
        raise ArtefactMismatchError(f"{directory} is not {what}{detail}; --force only replaces {what}. Choose another "
                                    f"--out, or delete {directory} yourself")
    shutil.rmtree(directory)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike, payload: Any) -> None:
    write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npz_atomic(target: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file eagerly, refusing pickled objects."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_json_artefact(path: str | os.PathLike, fix: str) -> Any:
    """The JSON of an artefact file, or an :class:`ArtefactMismatchError` that names the file,
    what is wrong with it (missing, not JSON) and ``fix``, instead of a bare traceback."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtefactMismatchError(f"{path} is missing; {fix}") from None
    except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtefactMismatchError(f"{path} is damaged (not readable JSON: {first_lines(error)}); {fix}") from None


def load_torch_artefact(path: str | os.PathLike, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with a damaged or missing file reported
    as an :class:`ArtefactMismatchError` naming it and ``fix`` (a truncated file is torch's
    "failed finding central directory" RuntimeError; a foreign one an UnpicklingError)."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtefactMismatchError(f"{path} is missing; {fix}") from None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise ArtefactMismatchError(f"{path} is damaged or not a checkpoint of this library ({first_lines(error)}); "
                                    f"{fix}") from None


def _hash_file_into(digest: Any, path: str | os.PathLike) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (64 hex characters), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    _hash_file_into(digest, path)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a plain JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


def dict_changes(old: dict[str, Any], new: dict[str, Any], ignore: Iterable[str] = (), prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for each key whose value differs (sorted; a missing key reads None),
    for errors that refuse to mix an artefact with other settings."""
    skip = set(ignore)
    return [f"{prefix}{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if key not in skip and old.get(key) != new.get(key)]


def config_from_dict(cls: type[T], payload: dict[str, Any]) -> T:
    """Rebuild a dataclass config, refusing unknown keys with a message naming them.

    Every value is checked against the field's declared type by :func:`coerce_field`: a JSON
    list becomes a tuple (so a frozen config survives the JSON round trip unchanged and stays
    hashable), an int is accepted for a float, and a string such as ``"100"`` from a
    hand-written file is parsed; anything else is a :class:`ConfigError` naming the field.
    """
    require_known_fields(cls, payload)
    return cls(**{name: coerce_field(cls, name, value) for name, value in payload.items()})


def require_known_fields(cls: type, names: Iterable[str]) -> None:
    """Refuse field names the dataclass ``cls`` does not have, listing the valid ones."""
    fields = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(names) - fields)
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown} for {cls.__name__}; valid fields are {sorted(fields)}")


_BOOL_WORDS = {"true": True, "1": True, "false": False, "0": False}
_NONE_WORDS = ("none", "null")


def coerce_field(cls: type, name: str, value: Any) -> Any:
    """``value`` as the declared type of field ``name`` of the dataclass ``cls``.

    ``value`` is either command-line text (``--set FIELD=VALUE``) or a JSON value (a config
    file), so both spellings are accepted: ``none``/``null`` for an optional field,
    ``true``/``false``/``1``/``0`` for a bool, a JSON list or ``256,256`` for a tuple. A value
    that does not fit (``3.5`` for an int, ``1e-3x`` for a float, ``yes`` for a bool) raises a
    :class:`ConfigError` naming the field, the value and the expected type.
    """
    # The configs use ``from __future__ import annotations``: their annotations are strings.
    expected = get_type_hints(cls)[name]
    try:
        return _coerce(expected, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{cls.__name__}.{name} takes {_describe(expected)}, got {value!r}") from None


def _coerce(expected: Any, value: Any) -> Any:
    origin, args = get_origin(expected), get_args(expected)
    if expected is Any:
        return value
    if origin in (Union, UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(option, value)
            except (TypeError, ValueError):
                pass
        raise ValueError(value)
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                return choice
        raise ValueError(value)
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else [item for item in text.split(",") if item.strip()]
        else:
            items = value
        if not isinstance(items, (list, tuple)):
            raise TypeError(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item) for item in items)
        if len(items) != len(args):
            raise ValueError(value)
        return tuple(_coerce(kind, item) for kind, item in zip(args, items))
    # bool before int: True is an int in Python, and neither may stand for the other here.
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[str(value).strip().lower()]
        raise ValueError(value)
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return int(value.strip())  # "3.5" raises: an int field never silently truncates
        raise TypeError(value)
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(value)
    if expected is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    if isinstance(expected, type) and isinstance(value, expected):
        return value
    raise TypeError(value)


def _describe(expected: Any) -> str:
    origin, args = get_origin(expected), get_args(expected)
    if origin in (Union, UnionType):
        return " or ".join(_describe(option) for option in args)
    if expected is type(None):
        return "null (none)"
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(args[0]) or _describe(args[0])
        else:
            kinds = ", ".join(map(_describe, args))
        return f"a tuple of {kinds} (a JSON list or comma-separated, e.g. 256,256)"
    names = {bool: "a boolean (true/false/1/0)", int: "an integer", float: "a number", str: "a string"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def save_config(path: str | os.PathLike, config: Any) -> None:
    write_json_atomic(path, config_to_dict(config))


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    return config_from_dict(cls, json.loads(Path(path).read_text()))


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """A content hash of arrays: their dtypes, shapes and bytes. 16 hex characters."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def fingerprint_directory(directory: str | os.PathLike, pattern: str = "*") -> str:
    """A content hash of the files in a directory (names and bytes), in sorted order.

    Used to notice that a model directory changed under an artefact built from it.
    """
    digest = hashlib.sha256()
    directory = Path(directory)
    for path in sorted(p for p in directory.glob(pattern) if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode())
        _hash_file_into(digest, path)
    return digest.hexdigest()[:16]
