"""Checking and repairing an embedding store whose file was damaged (a bad disk, a copy cut short).

A damaged SQLite file fails on every run that reads the damaged pages, reruns included, so the
store says so and points here. :func:`check_store` looks at every page and every vector without
changing anything. :func:`repair_store` copies every row SQLite can still read, and whose vector
still matches its checksum, into a fresh store, moves the damaged file aside as
``<name>.damaged-<timestamp>`` (nothing is deleted) and puts the fresh one in its place; texts whose
entries were lost are simply embedded again by the next run.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.errors import StoreError
from queryfit.store import (
    EmbeddingStore,
    checksum_matches,
    default_store_path,
    one_line,
    sqlite_error_kind,
)

#: What reading a damaged file can raise: SQLite's errors, and its text decoded from bad pages.
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)
#: Columns without which a table's rows are useless (an entry needs its namespace and checksum).
REQUIRED_COLUMNS = {
    "namespaces": {"id", "key"},
    "embeddings": {"namespace_id", "text_hash", "dim", "vector", "checksum"},
}
#: Rows read per step while salvaging; after a damaged step its rows are read one by one.
WINDOW = 256
#: With the table's last rowid unreadable, this many empty windows in a row end the salvage.
EMPTY_WINDOWS_TO_STOP = 64


@dataclass
class StoreCheck:
    """What :func:`check_store` found. ``ok`` is False when SQLite finds damage or cannot read."""

    path: str
    ok: bool
    size_bytes: int
    entries: int = 0  # vectors read
    bad_entries: int = 0  # read, but failing their checksum (the next run embeds them again)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StoreRepair:
    """What :func:`repair_store` did. ``repaired`` is False when the store was healthy."""

    path: str
    repaired: bool
    moved_to: str | None = None  # where the damaged file now is
    kept: dict[str, int] = field(default_factory=dict)  # rows copied, per table
    dropped_entries: int = 0  # vectors read but damaged (or whose namespace was lost)
    unreadable_rows: int = 0  # rows SQLite could not read at all
    problems: list[str] = field(default_factory=list)  # what the check found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve(path: str | Path | None) -> Path:
    path = default_store_path() if path is None else Path(path).expanduser()
    if not path.exists():
        raise StoreError(f"no embedding store at {path}; pass the store's file with --store PATH")
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not an embedding store; pass the file with --store")
    return path


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes to ``path``: ``mode=ro``, or ``immutable=1`` where the
    ``-shm`` file cannot be used (a read-only folder)."""
    uri = path.absolute().as_uri()
    last: sqlite3.Error | None = None
    for target in (f"{uri}?mode=ro", f"{uri}?immutable=1"):
        conn = sqlite3.connect(target, uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except BaseException as exc:
            conn.close()
            if not isinstance(exc, sqlite3.Error) or sqlite_error_kind(exc) == "damaged":
                raise
            last = exc
    assert last is not None
    raise last


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _refuse_foreign(path: Path, tables: set[str]) -> None:
    if "meta" not in tables and "embeddings" not in tables:
        listed = ", ".join(sorted(tables)) or "none"
        raise StoreError(
            f"{path} is a SQLite database but not a queryfit embedding store (tables: {listed}); "
            "pass the store's file with --store PATH"
        )


def check_store(path: str | Path | None = None) -> StoreCheck:
    """Look at every page (``PRAGMA integrity_check``) and every vector's checksum.

    Reads only; safe on a read-only store and while another process uses it. Raises StoreError
    for a missing file or a SQLite file that is not a queryfit store.
    """
    path = _resolve(path)
    result = StoreCheck(path=str(path), ok=True, size_bytes=path.stat().st_size)
    try:
        conn = _connect_read_only(path)
    except DB_ERRORS as exc:
        result.ok = False
        result.problems.append(one_line(str(exc)))
        return result
    try:
        try:
            tables = _tables(conn)
        except DB_ERRORS as exc:
            result.ok = False
            result.problems.append(f"schema unreadable: {one_line(str(exc))}")
            return result
        _refuse_foreign(path, tables)
        try:
            found = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        except DB_ERRORS as exc:
            found = [str(exc)]
        if found != ["ok"]:
            result.ok = False
            result.problems.extend(one_line(p) for p in found)
        try:
            for entry in conn.execute(
                "SELECT namespace_id, text_hash, dim, vector, checksum FROM embeddings"
            ):
                result.entries += 1
                if not _entry_ok(*entry):
                    result.bad_entries += 1
        except DB_ERRORS as exc:
            result.ok = False
            result.problems.append(
                f"reading entries stopped after {result.entries}: {one_line(str(exc))}"
            )
    finally:
        conn.close()
    return result


def _entry_ok(namespace: Any, text_hash: Any, dim: Any, blob: Any, checksum: Any) -> bool:
    """The store's own test of an entry: right length, matching checksum, finite numbers."""
    if not isinstance(dim, int) or dim <= 0 or not isinstance(blob, bytes):
        return False
    if len(blob) != 4 * dim or not checksum_matches(blob, checksum, text_hash, namespace):
        return False
    return bool(np.isfinite(np.frombuffer(blob, dtype="<f4")).all())


def _max_rowid(conn: sqlite3.Connection, table: str) -> int | None:
    try:
        row = conn.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()
    except DB_ERRORS:
        return None
    if row is None or row[0] is None:
        return 0  # an empty table
    return int(row[0]) if isinstance(row[0], int) else None


def _readable_rows(
    conn: sqlite3.Connection, table: str, columns: list[str], counts: dict[str, int]
) -> Iterator[tuple[Any, ...]]:
    """Every row of ``table`` SQLite can still read, in rowid order.

    Reads in windows of rowids; a window that fails is read again row by row, since a lookup by
    rowid reaches every row whose own pages are intact. ``counts["unreadable"]`` counts the rest.
    Stops at the table's last rowid, or after EMPTY_WINDOWS_TO_STOP windows in a row with no
    readable row (when that rowid is unreadable, or damage makes it a wild number).
    """
    cols = ", ".join(f'"{c}"' for c in columns)
    batch_sql = f'SELECT rowid, {cols} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?'
    one_sql = f'SELECT rowid, {cols} FROM "{table}" WHERE rowid = ?'
    last_rowid = _max_rowid(conn, table)
    last = 0
    empty_windows = 0
    while True:
        batch: list[tuple[Any, ...]] | None
        try:
            batch = conn.execute(batch_sql, (last, WINDOW)).fetchall()
        except DB_ERRORS:
            batch = None
        if batch:
            empty_windows = 0
            for row in batch:
                yield row[1:]
            last = int(batch[-1][0])
            continue
        if last_rowid is not None and last >= last_rowid:
            return
        found = 0
        for rowid in range(last + 1, last + WINDOW + 1):
            try:
                row = conn.execute(one_sql, (rowid,)).fetchone()
            except DB_ERRORS:
                counts["unreadable"] += 1
                continue
            if row is not None:
                found += 1
                yield row[1:]
        last += WINDOW
        # Windows where nothing could be read (gaps, or a table whose root is damaged) count
        # toward the end; a window with any row resets the count.
        empty_windows = 0 if found else empty_windows + 1
        if empty_windows >= EMPTY_WINDOWS_TO_STOP:
            return


def repair_store(path: str | Path | None = None) -> StoreRepair:
    """Rebuild a damaged store from what is readable; the damaged file is moved aside, not lost.

    A healthy store is left untouched (``repaired=False``). Run it while no other queryfit
    process uses the store.
    """
    path = _resolve(path)
    check = check_store(path)
    if check.ok:
        return StoreRepair(path=str(path), repaired=False)
    if not os.access(path.parent, os.W_OK):
        raise StoreError(
            f"cannot repair embedding store {path}: its folder is read-only; copy the file to a "
            "writable folder and repair it there"
        )
    fresh_path = path.with_name(f".{path.name}.repair-{os.getpid()}.tmp")
    aside = _aside_name(path)
    result = StoreRepair(path=str(path), repaired=True, problems=check.problems)
    try:
        EmbeddingStore(fresh_path).close()  # the current schema, empty
        _copy_readable(path, fresh_path, result)
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        os.replace(fresh_path, path)
    except OSError as exc:
        raise StoreError(
            f"cannot repair embedding store {path}: {exc.strerror or exc}; free space or fix "
            "the folder's permissions and run the repair again"
        ) from exc
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{fresh_path}{suffix}").unlink(missing_ok=True)
    result.moved_to = str(aside)
    return result


def _aside_name(path: Path) -> Path:
    """``<name>.damaged-<timestamp>``, with a counter if that exists: never overwrite a file."""
    stem = f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    candidate, n = path.with_name(stem), 1
    while any(Path(f"{candidate}{s}").exists() for s in ("", "-wal", "-shm")):
        candidate, n = path.with_name(f"{stem}-{n}"), n + 1
    return candidate


def _copy_readable(damaged: Path, fresh: Path, result: StoreRepair) -> None:
    """Copy every readable row of every table the fresh schema also has; vectors are checked."""
    counts = {"unreadable": 0}
    try:
        source = _connect_read_only(damaged)
    except DB_ERRORS:
        result.kept = {}
        return  # nothing readable at all (the header is gone): the fresh store starts empty
    target = sqlite3.connect(str(fresh), isolation_level=None)
    try:
        try:
            old_tables = _tables(source)
        except DB_ERRORS:
            old_tables = {"meta", "namespaces", "embeddings"}  # try the known ones anyway
        new_tables = sorted(_tables(target))
        namespaces: set[int] = set()
        target.execute("BEGIN")
        # namespaces before embeddings, so an entry's namespace is known when it is copied
        order = sorted(new_tables, key=lambda t: (t == "embeddings", t))
        for table in order:
            if table not in old_tables:
                continue
            columns = [r[1] for r in target.execute(f'PRAGMA table_info("{table}")')]
            try:
                old_columns = {r[1] for r in source.execute(f'PRAGMA table_info("{table}")')}
            except DB_ERRORS:
                old_columns = set(columns)
            if not REQUIRED_COLUMNS.get(table, set()) <= old_columns:
                continue  # its schema is damaged: its rows cannot be told apart
            columns = [c for c in columns if c in old_columns]
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" * len(columns))
            insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})'
            kept = 0
            for row in _readable_rows(source, table, columns, counts):
                if table == "embeddings":
                    entry = dict(zip(columns, row, strict=True))
                    fields = ("namespace_id", "text_hash", "dim", "vector", "checksum")
                    if entry.get("namespace_id") not in namespaces or not _entry_ok(
                        *(entry.get(name) for name in fields)
                    ):
                        result.dropped_entries += 1
                        continue
                try:
                    added = target.execute(insert, row).rowcount
                except sqlite3.IntegrityError:  # e.g. a damaged id that is no longer an integer
                    added = 0
                kept += added
                if table == "namespaces" and added:
                    namespaces.add(row[columns.index("id")])
            result.kept[table] = kept
        target.execute("COMMIT")
    finally:
        source.close()
        target.close()
    result.unreadable_rows = counts["unreadable"]
