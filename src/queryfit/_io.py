"""The one way queryfit writes a file: to a temporary neighbour, then renamed into place.

A reader (or a rerun after ``kill -9``) sees the old file or the new one, never half of one.
Temporary files are created private (``tempfile``'s 0600); the finished file gets the mode a plain
``open()`` would have given it under the user's umask, so an adapter or a report written by one
user stays readable by the service that loads it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_umask_lock = threading.Lock()


def default_file_mode() -> int:
    """``0o666`` minus the process umask: the mode ``open(path, "w")`` creates files with."""
    with _umask_lock:  # reading the umask means setting it; keep other threads out meanwhile
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. ``mode`` is
    ``"w"`` (UTF-8 text) or ``"wb"``. Parent folders are created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, *, default: Any = None) -> Path:
    """Write ``data`` as indented UTF-8 JSON (one trailing newline) atomically."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=default) + "\n"
    return write_text(path, text)
