"""The generation journal: an append-only JSONL file of finished passages, for resuming.

Each line records the questions generated for one passage (``{"passage": id, "questions": [...],
...}``) and is written with a single ``write`` on a file opened in append mode, so a process
killed at any instant (``kill -9`` included) leaves every finished line intact and at most one
partial last line. Opening the journal drops such a partial line, so a rerun redoes exactly the
passages that were not finished: no pair is lost and none is written twice. Lines are
``fsync``-ed at least every ``sync_every`` seconds and on close, which also bounds what a power
cut can take.

A journal belongs to one generator setting (model, endpoint, prompt, questions per passage...),
named by a hash of that setting, so changing the prompt or model starts a fresh journal instead of
mixing answers. Raw questions are kept, before filtering: filters can change without asking the
model again. An exclusive lock keeps two runs from writing the same journal at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from queryfit.errors import GenerationError

FORMAT = 1


def setting_hash(setting: dict[str, Any]) -> str:
    """16 hex digits naming a generator setting (JSON with sorted keys)."""
    blob = json.dumps(setting, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class Journal:
    """Finished passages of one generator setting, read on open and appended to as they finish."""

    def __init__(self, path: str | Path, setting: dict[str, Any], *, sync_every: float = 2.0):
        self.path = Path(path)
        self.setting = setting
        self.sync_every = sync_every
        self.entries: dict[str, dict[str, Any]] = {}
        self.dropped_partial = False
        self._fd: int | None = None
        self._last_sync = time.monotonic()
        self._dirty = False
        self._open()

    # -- opening -----------------------------------------------------------------------------

    def _fail(self, why: str) -> GenerationError:
        return GenerationError(
            f"cannot use generation journal {self.path}: {why}; pass another location with "
            "--journal PATH (or delete the file to start over)"
        )

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from exc
        try:
            self._lock(fd)
            self._load(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if os.fstat(fd).st_size == 0:
            self._write_line({"journal": FORMAT, "setting": self.setting})

    def _lock(self, fd: int) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock, single-writer by convention
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise self._fail("another queryfit run is writing to it right now") from None

    def _load(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        good_end = 0
        offset = 0
        for raw in data.split(b"\n")[:-1] if data else []:
            end = offset + len(raw) + 1
            try:
                row = json.loads(raw)
            except ValueError:
                # Only a kill in the middle of the last write leaves a broken line; one anywhere
                # else means the file was edited: refuse rather than guess.
                if end < len(data):
                    raise self._fail(f"line at byte {offset} is not JSON") from None
                break
            offset = end
            good_end = end
            if not isinstance(row, dict):
                continue
            if "journal" in row:
                if row.get("setting") != self.setting:
                    raise self._fail("it was written for another generator setting")
                continue
            pid = row.get("passage")
            if isinstance(pid, str) and isinstance(row.get("questions"), list):
                self.entries[pid] = row  # a repeated passage (never written by us): last wins
        if good_end < size:
            os.ftruncate(fd, good_end)  # drop a partial last line left by a kill
            self.dropped_partial = True

    # -- writing -----------------------------------------------------------------------------

    def _write_line(self, row: dict[str, Any]) -> None:
        if self._fd is None:
            raise self._fail("it is closed")
        line = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):  # a short write (disk full): undo it so the file stays valid
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
            raise self._fail("the disk is full")
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.sync_every:
            self.sync()

    def record(self, passage_id: str, questions: list[str], **meta: Any) -> None:
        """Append one finished passage (its raw questions, before any filter)."""
        row = {"passage": passage_id, "questions": list(questions), **meta}
        self._write_line(row)
        self.entries[passage_id] = row

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __contains__(self, passage_id: object) -> bool:
        return passage_id in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
