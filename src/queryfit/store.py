"""The embedding store: every text is embedded once per model setting, then read back.

Embedding is the slow and (for API models) paid part of queryfit, so vectors are kept in one
SQLite file. Each batch is committed as soon as the model returns it, so an interrupted run resumes
where it stopped. Entries are checked on the way out; a damaged one is re-embedded, never used.

At scale (a million passages): writes go in transactions of at most :data:`WRITE_BATCH` rows
whatever the model's batch size; a read of a large share of the store scans it in storage order
(:data:`READ_BATCH` rows at a time) instead of probing the key index, checks each chunk of vectors
with one vectorised checksum, and fills the result in place (docs/benchmarks.md, "Scale").
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from queryfit.console import progress_bar
from queryfit.embedders.base import Embedder, Kind, check_kind, check_vectors
from queryfit.errors import StoreError

# 2: rows carry an 8-byte vectorised checksum of the vector, its text hash and its namespace
# (vector_checksums); rows written under 1 keep and are checked with their 16-byte blake2b of the
# vector alone (vector_checksum). A schema-1 store is marked 2 when opened.
SCHEMA_VERSION = 2
ENV_VAR = "QUERYFIT_STORE"
DEFAULT_RELATIVE_PATH = Path(".queryfit") / "embeddings.sqlite"
#: ``runner(missing_texts, kind, batch_size)``: embeds elsewhere, yields (positions, vectors).
Runner = Callable[[list[str], Kind, int], Iterable[tuple[Sequence[int], Any]]]
#: Keys per ``IN (...)`` lookup: below SQLite's historic limit of 999 bound variables.
LOOKUP_CHUNK = 900
#: Stores up to this size get ``PRAGMA quick_check`` each time they are opened (about 0.2 s for
#: 256 MiB with the file in the page cache), so damage is named before any work starts; bigger
#: ones are checked by ``queryfit store check`` and caught on the first damaged read.
QUICK_CHECK_MAX_BYTES = 256 * 2**20

#: Rows per write transaction at most (a model batch larger than this is split).
WRITE_BATCH = 8192
#: Rows fetched and checked at once when reading.
READ_BATCH = 16_384
#: A read of at least this many texts, and at least SCAN_SHARE of the stored rows, scans the
#: table in storage order instead of looking keys up (measured ~4x faster for a whole corpus).
SCAN_MIN = 20_000
SCAN_SHARE = 0.25
SCAN_MMAP_BYTES = 2**31 - 2**16  # SQLite's default ceiling for memory-mapped I/O

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS namespaces (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS embeddings (
    namespace_id INTEGER NOT NULL REFERENCES namespaces(id),
    text_hash BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    checksum BLOB NOT NULL,
    UNIQUE (namespace_id, text_hash)
);
"""
# A rowid table on purpose: WITHOUT ROWID rows live in index pages, which spill any row over
# ~1 KB (every vector of 256+ dims) to overflow pages, tripling the file and slowing reads.


def default_store_path() -> Path:
    """``$QUERYFIT_STORE`` if set, else ``.queryfit/embeddings.sqlite`` under the cwd."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.cwd() / DEFAULT_RELATIVE_PATH


def text_hash(text: str) -> bytes:
    """Key of a text: sha256 of its exact UTF-8 bytes (no normalisation of any kind)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def vector_checksum(blob: bytes) -> bytes:
    """The 16-byte checksum of rows written under schema 1 (still verified when read)."""
    return hashlib.blake2b(blob, digest_size=16).digest()


def checksum_matches(blob: bytes, checksum: Any, text_hash: Any, namespace: Any) -> bool:
    """Whether one stored entry matches its checksum, under either schema (8 bytes: schema 2's
    :func:`vector_checksums`; 16 bytes: schema 1's blake2b). Reads check whole ranges at once;
    this is the row-by-row form for ``queryfit store check`` and ``repair``."""
    if not isinstance(checksum, bytes):
        return False
    if len(checksum) == 8:
        if not (blob and len(blob) % 4 == 0 and isinstance(namespace, int)):
            return False
        if not (isinstance(text_hash, bytes) and len(text_hash) == 32):
            return False
        row = np.frombuffer(blob, dtype="<f4").reshape(1, -1)
        expected = vector_checksums(row, [text_hash], namespace)[0]
        return int(expected) == int.from_bytes(checksum, "little")
    return checksum == vector_checksum(blob)


def _dim_key(embedder: Embedder, kind: Kind) -> str:
    """Key in `meta` of the vector size seen for this setting: ``dim|`` + the key without it."""
    return "dim|" + embedder.setting_key(kind)  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=8)
def _checksum_weights(words: int, seed: int = 0x9F17C0DE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**64, size=words, dtype=np.uint64, endpoint=False) | np.uint64(1)


def _hash_words(hashes: np.ndarray | Sequence[bytes]) -> np.ndarray:
    """32-byte text hashes as ``[n, 4]`` little-endian uint64 words."""
    if isinstance(hashes, np.ndarray):
        return hashes
    return np.frombuffer(b"".join(hashes), dtype="<u8").reshape(-1, 4)


def vector_checksums(
    vectors: np.ndarray, hashes: np.ndarray | Sequence[bytes], namespace: int
) -> np.ndarray:
    """Checksums stored next to each vector (schema 2) so a damaged entry is caught, not used.

    Per row, the sum of its 64-bit words (32-bit words for an odd dimension), its text hash's
    four words and its namespace id, each times a fixed odd 64-bit weight, modulo 2**64: a change
    of any one word always changes it, and one integer matrix-vector product checks a whole chunk
    of vectors (a per-row hash in Python capped reads near 100,000 vectors/s). The key is in it
    because SQLite may answer ``text_hash`` from the key index and the vector from the table: a
    damaged index entry pointing at another row must not pass as that text's vector.
    ``vectors`` is float32 ``[n, dim]`` (rows may be strided, each row contiguous), ``hashes``
    the rows' 32-byte text hashes (or their ``[n, 4]`` uint64 words); returns uint64 ``[n]``.
    """
    matrix = np.asarray(vectors)
    if matrix.dtype != np.dtype("<f4") or matrix.strides[-1] != 4:
        matrix = np.ascontiguousarray(matrix, dtype="<f4")
    if matrix.shape[1] % 2 == 0:
        words = matrix.view("<u8")
    else:
        words = matrix.view("<u4").astype(np.uint64)
    keys = np.empty((len(words), 5), dtype=np.uint64)
    keys[:, :4] = _hash_words(hashes)
    keys[:, 4] = namespace
    return words @ _checksum_weights(words.shape[1]) + keys @ _checksum_weights(5, 0x51D7E4)


class _HashMatcher:
    """Finds the wanted row of many stored text hashes at once, instead of one dict lookup per
    stored row: a range read back in the order it was written is recognised by one comparison;
    otherwise sorted 8-byte prefixes are searched and the full 32 bytes compared."""

    def __init__(self, hashes: list[bytes]) -> None:
        self.full = np.frombuffer(b"".join(hashes), dtype="<u8").reshape(-1, 4)
        self.order = np.argsort(self.full[:, 0], kind="stable")
        self.prefix = self.full[self.order, 0]
        self.next = 0  # where the previous range ended, if it was in order

    def rows(self, stored: np.ndarray) -> np.ndarray:
        """The wanted row of each stored hash ([n, 4] uint64), -1 when not wanted."""
        n, start = len(stored), self.next
        if start + n <= len(self.full) and np.array_equal(self.full[start : start + n], stored):
            self.next = start + n
            return np.arange(start, start + n)
        if not len(self.prefix):
            return np.full(n, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.prefix, stored[:, 0]), len(self.prefix) - 1)
        row = self.order[at]
        hit = (self.full[row] == stored).all(axis=1)
        # Two wanted hashes sharing a prefix (odds ~n**2 / 2**65) are told apart by looking on.
        step = at.copy()
        while not hit.all():
            step += 1
            more = ~hit & (step < len(self.prefix))
            more[more] &= self.prefix[step[more]] == stored[more, 0]
            if not more.any():
                break
            row[more] = self.order[step[more]]
            hit[more] = (self.full[row[more]] == stored[more]).all(axis=1)
        if hit.all() and (np.diff(row) == 1).all():
            self.next = int(row[-1]) + 1
        return np.where(hit, row, -1)


def _take_packed(
    packed: bytes,
    matcher: _HashMatcher,
    ns_id: int,
    dim: int,
    out: np.ndarray,
    found: np.ndarray,
) -> int:
    """Check a packed range of well-formed rows (hash, checksum, vector each) and copy the sound
    wanted ones into ``out``; returns the number of wanted rows that were damaged."""
    record = np.dtype([("hash", "<u8", (4,)), ("checksum", "<u8"), ("vector", "<f4", (dim,))])
    rows = np.frombuffer(packed, dtype=record)
    at = matcher.rows(rows["hash"])
    if not (at >= 0).all():
        rows, at = rows[at >= 0], at[at >= 0]
    vectors = np.ascontiguousarray(rows["vector"])  # contiguous rows check ~3x faster
    sums = vector_checksums(vectors, rows["hash"], ns_id)
    sound = np.isfinite(vectors).all(axis=1) & (sums == rows["checksum"])
    if sound.all() and len(at) and (np.diff(at) == 1).all():
        out[at[0] : at[-1] + 1] = vectors  # the common case: a run of rows in request order
    else:
        vectors, at = vectors[sound], at[sound]
        out[at] = vectors
    found[at] = True
    return int(len(sound) - sound.sum())


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken up front; rolled back on any failure, the COMMIT's included."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def sqlite_error_kind(exc: sqlite3.Error) -> str:
    """``damaged``, ``read-only``, ``full``, ``busy`` or ``other``: what an SQLite error means
    for the user (by error name where Python gives it, else by SQLite's message)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or any(
        word in text for word in ("malformed", "not a database", "corrupt")
    ):
        return "damaged"
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "read-only"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "full"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "busy"
    return "other"


def one_line(text: str, limit: int = 200) -> str:
    """SQLite's multi-line check output as one short line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip() and not p.startswith("***")]
    flat = "; ".join(parts)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


F = TypeVar("F", bound=Callable[..., Any])


def _sqlite_errors(method: F) -> F:
    """Turn an SQLite error raised while reading or writing into a StoreError saying what to do."""

    @functools.wraps(method)
    def wrapper(self: EmbeddingStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        except UnicodeDecodeError as exc:  # SQLite's text from damaged pages
            raise self._damaged(f"unreadable text: {exc.reason}") from exc

    return wrapper  # type: ignore[return-value]


@dataclass
class StoreStats:
    """Cumulative counters for one store object; texts are counted once per request."""

    model_calls: int = 0  # batches sent to the model
    texts_embedded: int = 0  # distinct texts the model embedded
    texts_from_store: int = 0  # distinct texts served from the store

    def reset(self) -> None:
        """Zero all counters, e.g. between two phases whose cost is reported separately."""
        for f in fields(self):
            setattr(self, f.name, 0)


class EmbeddingStore:
    """Cache of embeddings keyed by (embedder setting, exact text), in one SQLite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = default_store_path() if path is None else Path(path).expanduser()
        self.stats = StoreStats()
        #: Opened read-only because the file or its folder is not writable: stored vectors are
        #: served, and only a text that would need embedding is an error.
        self.read_only = False
        self._conn: sqlite3.Connection | None = None
        self._conn = self._open()

    # -- opening -----------------------------------------------------------------------------

    def _fail(self, why: str) -> StoreError:
        return StoreError(
            f"cannot use embedding store {self.path}: {why}; "
            "pass another location with --store PATH (or set QUERYFIT_STORE)"
        )

    def _damaged(self, why: str) -> StoreError:
        return StoreError(
            f"embedding store {self.path} is damaged ({one_line(why)}); run `queryfit store "
            f"repair --store {self.path}` to keep every readable entry and move the damaged file "
            "aside (or delete the file to start over)"
        )

    def _foreign(self, tables: Iterable[str]) -> StoreError:
        return self._fail(
            "it is a SQLite database but not a queryfit store "
            f"(tables: {', '.join(sorted(tables))})"
        )

    def _newer(self, version: int) -> StoreError:
        return self._fail(
            f"it was written by a newer queryfit (schema {version}, this version reads up to "
            f"{SCHEMA_VERSION}); upgrade queryfit"
        )

    def _read_only_error(self, why: str) -> StoreError:
        return StoreError(
            f"cannot write to embedding store {self.path}: it is read-only ({why}); make it "
            "writable, or pass a writable location with --store PATH (or set QUERYFIT_STORE)"
        )

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """The StoreError for an SQLite error met while reading or writing entries."""
        kind = sqlite_error_kind(exc)
        if kind == "damaged":
            return self._damaged(str(exc))
        if kind == "read-only":
            why = "opened read-only" if self.read_only else str(exc)
            return self._read_only_error(f"{why}; texts not yet in it need embedding")
        if kind == "full":
            return self._fail("the disk is full; free some space")
        if kind == "busy":
            return self._fail("another process holds it locked (waited 30 s); let it finish")
        return self._fail(f"SQLite error: {exc}")

    def _writable(self) -> bool:
        """Whether SQLite can write here: the file (if any) and its folder, which holds the WAL."""
        folder_ok = os.access(self.path.parent, os.W_OK)
        return folder_ok and (not self.path.exists() or os.access(self.path, os.W_OK))

    def _quick_check(self, conn: sqlite3.Connection) -> None:
        """Name damage at open (cheap for stores up to QUICK_CHECK_MAX_BYTES), not mid-run."""
        try:
            size = self.path.stat().st_size + Path(f"{self.path}-wal").stat().st_size
        except FileNotFoundError:
            size = self.path.stat().st_size if self.path.exists() else 0
        if size > QUICK_CHECK_MAX_BYTES:
            return
        result = conn.execute("PRAGMA quick_check(1)").fetchone()
        if result is not None and result[0] != "ok":
            raise self._damaged(str(result[0]))

    def _open_read_only(self) -> sqlite3.Connection:
        """Open a store whose file or folder is not writable, for reading what it holds.

        ``mode=ro`` reads a WAL-mode file when its ``-shm`` can be used; in a read-only folder
        without one, ``immutable=1`` reads the file as it is, which is exact when no ``-wal`` with
        unmerged changes lies next to it (a store closed cleanly has none).
        """
        if not self.path.exists():
            raise self._fail("its folder is read-only, so no store can be created there")
        uri = self.path.absolute().as_uri()
        wal = Path(f"{self.path}-wal")
        attempts = [f"{uri}?mode=ro"]
        if not (wal.exists() and wal.stat().st_size > 0):
            attempts.append(f"{uri}?immutable=1")
        last: sqlite3.Error | None = None
        for target in attempts:
            conn = None
            try:
                conn = sqlite3.connect(target, uri=True, timeout=30.0)
                conn.isolation_level = None
                self._quick_check(conn)
                self._check_schema_read_only(conn)
                return conn
            except BaseException as exc:
                if conn is not None:
                    conn.close()
                if isinstance(exc, UnicodeDecodeError):
                    raise self._damaged(f"unreadable text: {exc.reason}") from exc
                if not isinstance(exc, sqlite3.Error):
                    raise
                if sqlite_error_kind(exc) == "damaged":
                    raise self._damaged(str(exc)) from exc
                last = exc
        raise self._fail(
            f"it is read-only and cannot be read as it is ({last}; it has unmerged changes in "
            f"{wal.name}): open it once where it is writable, or copy it with its {wal.name} to a "
            "writable folder"
        )

    def _check_schema_read_only(self, conn: sqlite3.Connection) -> None:
        """The checks of :meth:`_init_schema`, without creating anything."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables:
                raise self._foreign(tables)
            raise self._read_only_error("an empty file, and its location is not writable")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            version = int(row[0]) if row is not None else SCHEMA_VERSION
        except (TypeError, ValueError):
            raise self._damaged(f"unreadable schema version {row[0]!r}") from None
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        missing = {"namespaces", "embeddings"} - tables
        if missing:
            raise self._damaged(f"tables missing: {', '.join(sorted(missing))}")

    def _open(self) -> sqlite3.Connection:
        in_memory = str(self.path) == ":memory:"
        if not in_memory:
            if self.path.is_dir():
                raise self._fail("it is a folder, not a file")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise self._fail(
                        f"its folder cannot be created: the location is read-only ({exc.strerror})"
                    ) from exc
                raise self._fail(f"cannot create its folder ({exc.strerror or exc})") from exc
            if not self._writable():
                self.read_only = True
                return self._open_read_only()
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0)
            # isolation_level=None: transactions are explicit, one per batch.
            conn.isolation_level = None
            if not in_memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise self._fail(f"cannot switch it to WAL journaling (got {mode!r})")
            # WAL + NORMAL: a crash of the process never loses a committed batch.
            conn.execute("PRAGMA synchronous=NORMAL")
            if not in_memory:
                self._quick_check(conn)
            self._init_schema(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()  # on any failure: a leaked connection keeps its file locked
            if isinstance(exc, UnicodeDecodeError):  # SQLite's text from damaged pages
                raise self._damaged(f"unreadable text: {exc.reason}") from exc
            if not isinstance(exc, sqlite3.Error):
                raise
            kind = sqlite_error_kind(exc)
            if kind == "read-only" and not in_memory:
                self.read_only = True  # writable by its mode bits, yet not: open it to read
                return self._open_read_only()
            if kind == "damaged" and "not a database" not in str(exc):
                raise self._damaged(str(exc)) from exc
            if kind == "damaged":
                raise self._fail(
                    f"not a usable SQLite database ({exc}); if it is a damaged queryfit store, "
                    f"`queryfit store repair --store {self.path}` moves it aside and starts afresh"
                ) from exc
            raise self._error(exc) from exc
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        with _immediate(conn):
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            version: int | None = None
            if has_meta:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is not None:
                    try:
                        version = int(row[0])
                    except ValueError as exc:
                        raise self._fail(f"unreadable schema version {row[0]!r}") from exc
            else:
                others = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                ).fetchall()
                if others:
                    raise self._foreign(r[0] for r in others)
            if version is not None and version > SCHEMA_VERSION:
                raise self._newer(version)
            # One statement at a time: executescript() would commit the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version is None or version < SCHEMA_VERSION:
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"embedding store {self.path} is closed")
        return self._conn

    def close(self) -> None:
        """Close the file; further use raises StoreError."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r})"

    # -- namespaces --------------------------------------------------------------------------

    def _namespace_id(self, key: str, create: bool) -> int | None:
        row = self.conn.execute("SELECT id FROM namespaces WHERE key=?", (key,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        with _immediate(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO namespaces(key) VALUES (?)", (key,))
        row = self.conn.execute("SELECT id FROM namespaces WHERE key=?", (key,)).fetchone()
        return int(row[0])

    # -- reading -----------------------------------------------------------------------------

    def _lookup(
        self, ns_id: int, position: dict[bytes, int], dim: int, out: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """Fill ``out[position[hash]]`` with each sound stored vector; returns (found, n_bad).

        ``position`` maps each wanted text hash to its row of ``out``; ``found`` marks the rows
        filled. A stored entry is bad when its dimension, length or checksum is wrong or it holds
        a non-finite value.
        """
        found = np.zeros(len(position), dtype=bool)
        n_bad = 0
        hashes = list(position)
        scan = len(hashes) >= SCAN_MIN and len(hashes) >= SCAN_SHARE * int(
            self.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        )
        if not scan:
            for start in range(0, len(hashes), LOOKUP_CHUNK):
                chunk = hashes[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    "SELECT text_hash, dim, vector, checksum FROM embeddings "
                    f"WHERE namespace_id=? AND text_hash IN ({marks})",
                    (ns_id, *chunk),
                ).fetchall()
                n_bad += self._take(rows, position, ns_id, dim, out, found)
            return found, n_bad
        matcher = _HashMatcher(hashes)
        # Memory-mapped pages spare SQLite a copy per page (~20% faster scans, measured).
        self.conn.execute(f"PRAGMA mmap_size={SCAN_MMAP_BYTES}")
        try:
            for kind, data in self._scan(ns_id, dim):
                if kind == "packed":
                    n_bad += _take_packed(data, matcher, ns_id, dim, out, found)
                else:
                    n_bad += self._take(data, position, ns_id, dim, out, found)
        finally:
            self.conn.execute("PRAGMA mmap_size=0")
        return found, n_bad

    def _scan(self, ns_id: int, dim: int) -> Iterator[tuple[str, Any]]:
        """The namespace's rows in storage order, READ_BATCH rowids at a time.

        A range whose rows are all well-formed schema-2 rows comes back as one packed buffer
        (``("packed", bytes)``: SQLite concatenates each row's hash, checksum and vector, so no
        Python object is made per row: ~2x faster, measured); any other range (schema-1 rows,
        damage, another dimension) comes back row by row (``("rows", list)``).
        """
        low, high = self.conn.execute("SELECT min(rowid), max(rowid) FROM embeddings").fetchone()
        if low is None:
            return
        where = "FROM embeddings NOT INDEXED WHERE namespace_id=? AND rowid > ? AND rowid <= ?"
        for start in range(low - 1, high, READ_BATCH):
            span = (ns_id, start, start + READ_BATCH)
            count, odd, packed = self.conn.execute(
                "SELECT count(*), sum(dim != ? OR typeof(text_hash) != 'blob' "
                "OR length(text_hash) != 32 OR typeof(checksum) != 'blob' "
                "OR length(checksum) != 8 OR typeof(vector) != 'blob' OR length(vector) != ?), "
                f"CAST(group_concat(text_hash || checksum || vector, '') AS BLOB) {where}",
                (dim, 4 * dim, *span),
            ).fetchone()
            if not count:
                continue
            if odd or packed is None or len(packed) != count * (40 + 4 * dim):
                rows = self.conn.execute(
                    f"SELECT text_hash, dim, vector, checksum {where}", span
                ).fetchall()
                yield "rows", rows
            else:
                yield "packed", packed

    @staticmethod
    def _take(
        rows: list[tuple],
        position: dict[bytes, int],
        ns_id: int,
        dim: int,
        out: np.ndarray,
        found: np.ndarray,
    ) -> int:
        """Check a chunk of stored rows and copy the sound wanted ones into ``out``; returns the
        number of wanted rows that were damaged."""
        if not rows:
            return 0
        hashes, dims, blobs, sums = zip(*rows, strict=True)
        at = np.fromiter(map(position.get, hashes, repeat(-1)), dtype=np.int64, count=len(rows))
        wanted = at >= 0
        # Set-based checks run in C: the common case (every row wanted and well-formed, schema
        # 2) takes one join and one vectorised check per chunk.
        if (
            wanted.all()
            and set(dims) == {dim}
            and set(map(type, blobs)) == {bytes}
            and set(map(len, blobs)) == {4 * dim}
            and set(map(type, sums)) == {bytes}
            and set(map(len, sums)) == {8}
        ):
            matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, dim)
            stored = np.frombuffer(b"".join(sums), dtype="<u8")
            sums = vector_checksums(matrix, hashes, ns_id)
            sound = np.isfinite(matrix).all(axis=1) & (sums == stored)
            if sound.all():
                out[at] = matrix
                found[at] = True
                return 0
            out[at[sound]] = matrix[sound]
            found[at[sound]] = True
            return int((~sound).sum())
        want_len = 4 * dim
        ok = wanted & (np.asarray(dims) == dim)
        ok &= np.fromiter(
            (type(b) is bytes and len(b) == want_len for b in blobs), dtype=bool, count=len(rows)
        )
        picked = np.flatnonzero(ok).tolist()
        matrix = np.frombuffer(b"".join(blobs[i] for i in picked), dtype="<f4").reshape(-1, dim)
        sound = np.isfinite(matrix).all(axis=1)
        # Schema-2 rows (8-byte checksums) are checked in one pass; schema-1 rows one by one.
        new = np.fromiter(
            (type(sums[i]) is bytes and len(sums[i]) == 8 for i in picked),
            dtype=bool,
            count=len(picked),
        )
        if new.any():
            stored = np.frombuffer(
                b"".join(sums[i] for i, n in zip(picked, new, strict=True) if n), dtype="<u8"
            )
            keys = [hashes[i] for i, n in zip(picked, new, strict=True) if n]
            sound[new] &= vector_checksums(matrix[new], keys, ns_id) == stored
        for k in np.flatnonzero(~new).tolist():
            sound[k] &= sums[picked[k]] == vector_checksum(blobs[picked[k]])
        rows_out = at[picked][sound]
        out[rows_out] = matrix[sound]
        found[rows_out] = True
        return int(wanted.sum()) - int(sound.sum())

    @_sqlite_errors
    def count(self, embedder: Embedder | None = None) -> int:
        """Number of stored vectors, overall or under the embedder's query and document keys."""
        if embedder is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        keys = {embedder.store_key("query"), embedder.store_key("document")}
        total = 0
        for key in keys:
            ns_id = self._namespace_id(key, create=False)
            if ns_id is not None:
                total += int(
                    self.conn.execute(
                        "SELECT COUNT(*) FROM embeddings WHERE namespace_id=?", (ns_id,)
                    ).fetchone()[0]
                )
        return total

    # -- vector sizes ------------------------------------------------------------------------
    # An API model of unknown size would send a probe request in every process just to learn
    # the size that is part of its store key. The store keeps the size it saw per setting (the
    # key without the size) in `meta`, and tells such an embedder (`adopt_dim`), so a warm run
    # sends nothing; a size that no longer holds fails the first real request, never the store.

    def _dim_of(self, embedder: Embedder, kind: Kind) -> int:
        """The embedder's size; one that would probe for it gets the size remembered here."""
        if getattr(embedder, "dim_known", True) is False:
            row = self.conn.execute(
                "SELECT value FROM meta WHERE key=?", (_dim_key(embedder, kind),)
            ).fetchone()
            if row is not None and str(row[0]).isdigit() and int(row[0]) > 0:
                embedder.adopt_dim(int(row[0]))  # type: ignore[attr-defined]
        return int(embedder.dim)

    def _remember_dim(self, embedder: Embedder, kind: Kind, dim: int) -> None:
        if hasattr(embedder, "adopt_dim"):
            with _immediate(self.conn):
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    (_dim_key(embedder, kind), str(dim)),
                )

    # -- embedding ---------------------------------------------------------------------------

    @_sqlite_errors
    def embed(
        self,
        embedder: Embedder,
        texts: Sequence[str],
        kind: Kind,
        *,
        batch_size: int | None = None,
        progress: bool = True,
        description: str | None = None,
        runner: Runner | None = None,
    ) -> np.ndarray:
        """Vectors for ``texts`` in input order, float32 ``[len(texts), dim]``.

        Only texts not yet stored (or whose stored entry is damaged) go to the model, each distinct
        text once, in batches committed one by one.

        ``runner(missing_texts, kind, batch_size)`` embeds the missing texts elsewhere (the Ray
        backend, ``queryfit.distributed``) and yields ``(positions in missing_texts, vectors)``
        as batches finish, in any order; each is checked and committed here as it arrives.
        """
        check_kind(kind)
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
        if batch_size is None:
            batch_size = int(getattr(embedder, "max_batch_size", 64) or 64)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, not {batch_size}")

        dim = self._dim_of(embedder, kind)
        key = embedder.store_key(kind)
        model_id = getattr(embedder, "model_id", type(embedder).__name__)

        # Distinct texts in order of first appearance; `inverse` maps each input to its row
        # (None when every text is distinct: the rows are already in input order).
        sha256 = hashlib.sha256  # text_hash, inlined: a million texts are hashed here
        hashes = [sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        unique_index = dict(zip(hashes, range(len(hashes)), strict=True))
        if len(unique_index) < len(texts):  # repeats: number the first appearances instead
            unique_index = {h: j for j, h in enumerate(dict.fromkeys(hashes))}
        inverse: np.ndarray | None = None
        unique_texts = texts
        if len(unique_index) < len(texts):
            inverse = np.fromiter((unique_index[h] for h in hashes), np.int64, len(hashes))
            first = np.unique(inverse, return_index=True)[1]  # first input row of each text
            unique_texts = [texts[i] for i in first]
            hashes = list(unique_index)
        if not hashes:
            return np.zeros((0, dim), dtype=np.float32)

        ns_id = self._namespace_id(key, create=True)
        assert ns_id is not None
        result = np.empty((len(hashes), dim), dtype=np.float32)
        have, n_bad = self._lookup(ns_id, unique_index, dim, result)
        if n_bad:
            warnings.warn(
                f"embedding store {self.path}: {n_bad} damaged or mismatched entries for "
                f"{model_id} ({kind}) will be embedded again",
                RuntimeWarning,
                stacklevel=2,
            )
        missing: list[int] = np.flatnonzero(~have).tolist()
        self.stats.texts_from_store += len(hashes) - len(missing)
        if missing and self.read_only:  # say so before paying for a model call
            raise self._read_only_error(
                f"opened read-only; {len(missing)} of these {kind} texts are not in it yet"
            )

        if missing:
            self._remember_dim(embedder, kind, dim)
            embed_fn = embedder.embed_queries if kind == "query" else embedder.embed_documents
            bar = progress_bar() if progress else None
            with bar if bar is not None else nullcontext():
                task = None
                if bar is not None:
                    label = description or f"Embedding {kind}s ({model_id})"
                    task = bar.add_task(label, total=len(missing))
                todo = [unique_texts[j] for j in missing]
                batches = (
                    self._model_batches(embed_fn, todo, batch_size)
                    if runner is None
                    else runner(todo, kind, batch_size)
                )
                try:
                    for positions, output in batches:
                        idx = [missing[p] for p in positions]
                        if runner is not None:
                            self.stats.model_calls += 1
                        vectors = check_vectors(output, len(idx), dim, model_id)
                        self._write(ns_id, [hashes[j] for j in idx], vectors)
                        result[idx] = vectors
                        self.stats.texts_embedded += len(idx)
                        if bar is not None:
                            bar.advance(task, len(idx))
                finally:
                    close = getattr(batches, "close", None)
                    if close is not None:
                        close()  # stop a remote runner's work at once on an error
        return result if inverse is None else result[inverse]

    def _model_batches(
        self, embed_fn: Callable[[list[str]], Any], texts: list[str], batch_size: int
    ) -> Iterator[tuple[range, Any]]:
        """The local runner: the model called here, one batch at a time."""
        for start in range(0, len(texts), batch_size):
            self.stats.model_calls += 1
            yield (
                range(start, min(start + batch_size, len(texts))),
                embed_fn(texts[start : start + batch_size]),
            )

    def _write(self, ns_id: int, hashes: list[bytes], vectors: np.ndarray) -> None:
        """Store one batch, in transactions of at most WRITE_BATCH rows, replacing any damaged
        entry."""
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        dim, size = matrix.shape[1], 4 * matrix.shape[1]
        sums = vector_checksums(matrix, hashes, ns_id).astype("<u8").tobytes()
        for start in range(0, len(hashes), WRITE_BATCH):
            stop = min(start + WRITE_BATCH, len(hashes))
            raw = matrix[start:stop].tobytes()
            rows = [
                (
                    ns_id,
                    hashes[i],
                    dim,
                    raw[(i - start) * size : (i - start + 1) * size],
                    sums[8 * i : 8 * i + 8],
                )
                for i in range(start, stop)
            ]
            with _immediate(self.conn):
                self.conn.executemany(
                    "INSERT OR REPLACE INTO embeddings"
                    "(namespace_id, text_hash, dim, vector, checksum) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
