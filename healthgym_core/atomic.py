"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename.

A crash or a full disk leaves the previous file intact and never a file that looks complete but is not.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from healthgym_core.errors import ConfigError, DataError, HealthGymError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@functools.cache
def _umask() -> int:
    """The process's umask: read from /proc where Linux shows it, else by setting it and putting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on any error it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise HealthGymError(f"{path}: cannot write here ({e.strerror or e})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        raise HealthGymError(
            f"{path}: write failed ({e.strerror or e}); the previous file, if any, is intact"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def plain_name(name: str, what: str) -> str:
    """A file or folder name that stays inside its parent: no separators, no '..', not hidden, not empty."""
    import re

    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or not re.fullmatch(r"[\w.+=,@-]+", name)
    ):
        raise HealthGymError(f"{what} {name!r} must be a plain name (letters, digits, . _ - + = , @), not a path")
    return name


def check_creatable_folder(folder: Path, what: str) -> None:
    """`folder` exists as a folder, or can be created: its nearest existing parent is a writable folder."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{what} {folder} cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{what} {folder} is not writable")


def check_table_suffix(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(str(path), "output must end in .csv or .parquet")
    return suffix


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet by extension, atomically."""
    suffix = check_table_suffix(path)
    if suffix == ".csv":
        return atomic_write(path, lambda p: frame.to_csv(p, index=False))
    return atomic_write(path, lambda p: frame.to_parquet(p, index=False))
