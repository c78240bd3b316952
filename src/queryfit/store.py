"""The embedding store: every text is embedded once per model setting, then read back.

Embedding is the slow and (for API models) paid part of queryfit, so vectors are kept in one
SQLite file. Each batch is committed as soon as the model returns it, so an interrupted run resumes
where it stopped. Entries are checked on the way out; a damaged one is re-embedded, never used.
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
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from queryfit.console import progress_bar
from queryfit.embedders.base import Embedder, Kind, check_kind, check_vectors
from queryfit.errors import StoreError

SCHEMA_VERSION = 1
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
    """Checksum stored next to each vector so that a damaged blob is caught, not used."""
    return hashlib.blake2b(blob, digest_size=16).digest()


def _dim_key(embedder: Embedder, kind: Kind) -> str:
    """Key in `meta` of the vector size seen for this setting: ``dim|`` + the key without it."""
    return "dim|" + embedder.setting_key(kind)  # type: ignore[attr-defined]


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
                raise self._fail(
                    "it is a SQLite database but not a queryfit store "
                    f"(tables: {', '.join(sorted(tables))})"
                )
            raise self._read_only_error("an empty file, and its location is not writable")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            version = int(row[0]) if row is not None else SCHEMA_VERSION
        except (TypeError, ValueError):
            raise self._damaged(f"unreadable schema version {row[0]!r}") from None
        if version > SCHEMA_VERSION:
            raise self._fail(
                f"it was written by a newer queryfit (schema {version}, this version reads up to "
                f"{SCHEMA_VERSION}); upgrade queryfit"
            )
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
                    raise self._fail(
                        "it is a SQLite database but not a queryfit store "
                        f"(tables: {', '.join(sorted(r[0] for r in others))})"
                    )
            if version is not None and version > SCHEMA_VERSION:
                raise self._fail(
                    f"it was written by a newer queryfit (schema {version}, this version reads "
                    f"up to {SCHEMA_VERSION}); upgrade queryfit"
                )
            # One statement at a time: executescript() would commit the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version is None:
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
        self, ns_id: int, hashes: list[bytes], dim: int
    ) -> tuple[dict[bytes, int], Any, int]:
        """Fetch stored vectors for ``hashes``; returns (hash -> row in matrix, matrix, n_bad)."""
        found: list[bytes] = []
        blobs: list[bytes] = []
        n_bad = 0
        want_len = 4 * dim
        for start in range(0, len(hashes), LOOKUP_CHUNK):
            chunk = hashes[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT text_hash, dim, vector, checksum FROM embeddings "
                f"WHERE namespace_id=? AND text_hash IN ({marks})",
                (ns_id, *chunk),
            ).fetchall()
            for h, row_dim, blob, checksum in rows:
                if (
                    row_dim != dim
                    or not isinstance(blob, bytes)
                    or len(blob) != want_len
                    or checksum != vector_checksum(blob)
                ):
                    n_bad += 1
                    continue
                found.append(h)
                blobs.append(blob)
        if not found:
            return {}, np.zeros((0, dim), dtype=np.float32), n_bad
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(found), dim)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            n_bad += int((~finite).sum())
            found = [h for h, ok in zip(found, finite, strict=True) if ok]
            matrix = matrix[finite]
        return {h: i for i, h in enumerate(found)}, matrix, n_bad

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

        # Distinct texts in order of first appearance; `inverse` maps each input to its row.
        unique_index: dict[bytes, int] = {}
        unique_texts: list[str] = []
        inverse = np.empty(len(texts), dtype=np.int64)
        for i, t in enumerate(texts):
            h = text_hash(t)
            j = unique_index.get(h)
            if j is None:
                j = unique_index[h] = len(unique_texts)
                unique_texts.append(t)
            inverse[i] = j
        hashes = list(unique_index)
        if not hashes:
            return np.zeros((0, dim), dtype=np.float32)

        ns_id = self._namespace_id(key, create=True)
        assert ns_id is not None
        found, stored, n_bad = self._lookup(ns_id, hashes, dim)
        if n_bad:
            warnings.warn(
                f"embedding store {self.path}: {n_bad} damaged or mismatched entries for "
                f"{model_id} ({kind}) will be embedded again",
                RuntimeWarning,
                stacklevel=2,
            )

        result = np.empty((len(hashes), dim), dtype=np.float32)
        rows = np.fromiter((found.get(h, -1) for h in hashes), dtype=np.int64, count=len(hashes))
        have = rows >= 0
        result[have] = stored[rows[have]]
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
        return result[inverse]

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
        """Store one batch in its own transaction, replacing any damaged entry."""
        dim = vectors.shape[1]
        rows = []
        for h, vec in zip(hashes, vectors, strict=True):
            blob = vec.astype("<f4", copy=False).tobytes()
            rows.append((ns_id, h, dim, blob, vector_checksum(blob)))
        with _immediate(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO embeddings(namespace_id, text_hash, dim, vector, checksum) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
