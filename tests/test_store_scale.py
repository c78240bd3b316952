"""The store at scale: bounded write transactions, whole-store scans, the schema-2 checksum, and
stores written by schema 1 still read."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

from queryfit import store as store_module
from queryfit.embedders import CallableEmbedder
from queryfit.store import EmbeddingStore, vector_checksum, vector_checksums

DIM = 6


def _vectors(texts: list[str]) -> np.ndarray:
    return np.array([[float(t.split()[1]) + j for j in range(DIM)] for t in texts], np.float32)


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return _vectors(texts)


def _embedder(fn: Recorder, batch: int = 1000) -> CallableEmbedder:
    return CallableEmbedder(fn, "test:rows", dim=DIM, max_batch_size=batch)


TEXTS = [f"doc {i}" for i in range(300)]


def test_checksum_changes_with_any_one_word_of_the_vector_or_its_key():
    rng = np.random.default_rng(0)
    keys = [rng.bytes(32) for _ in range(5)]
    for dim in (6, 7):  # 64-bit words, and 32-bit words for an odd dimension
        v = rng.normal(size=(5, dim)).astype(np.float32)
        base = vector_checksums(v, keys, 1)
        assert base.dtype == np.uint64 and len(base) == 5
        for j in range(dim):
            w = v.copy()
            w.view(np.uint32)[2, j] ^= 1  # one flipped bit
            changed = vector_checksums(w, keys, 1)
            assert changed[2] != base[2] and (np.delete(changed, 2) == np.delete(base, 2)).all()
        for byte in (0, 8, 16, 31):  # each of the hash's four words
            other = list(keys)
            other[2] = keys[2][:byte] + bytes([keys[2][byte] ^ 1]) + keys[2][byte + 1 :]
            assert vector_checksums(v, other, 1)[2] != base[2]
        # The same vector filed under another text (a damaged key index) or namespace fails.
        assert vector_checksums(v, keys[1:] + keys[:1], 1)[0] != base[0]
        assert (vector_checksums(v, keys, 2) != base).all()


def test_writes_go_in_bounded_transactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(store_module, "WRITE_BATCH", 64)
    statements: list[str] = []
    with EmbeddingStore(tmp_path / "s.sqlite") as store:
        store.conn.set_trace_callback(statements.append)
        out = store.embed(_embedder(Recorder()), TEXTS, "document", progress=False)
        store.conn.set_trace_callback(None)
        assert store.count() == 300
    np.testing.assert_array_equal(out, _vectors(TEXTS))
    # 300 rows in one model batch, written 64 at a time (5), after creating the namespace (1)
    # and recording the model's dimension (1).
    assert statements.count("COMMIT") == 7


@pytest.mark.parametrize("scan", [False, True])
def test_reads_by_lookup_and_by_scan_agree(tmp_path: Path, monkeypatch, scan):
    path = tmp_path / "s.sqlite"
    fn = Recorder()
    with EmbeddingStore(path) as store:
        store.embed(_embedder(fn), TEXTS, "document", progress=False)
        store.embed(_embedder(fn), ["other 1", "other 2"], "query", progress=False)
    monkeypatch.setattr(store_module, "SCAN_MIN", 1 if scan else 10**9)
    monkeypatch.setattr(store_module, "READ_BATCH", 7)
    wanted = TEXTS[::-1][:250] + ["doc 299", "new 999"]  # a repeat and a text never stored
    with EmbeddingStore(path) as store:
        out = store.embed(_embedder(fn), wanted, "document", progress=False)
        assert store.stats.texts_from_store == 250 and store.stats.texts_embedded == 1
    np.testing.assert_array_equal(out, _vectors(wanted))


@pytest.mark.parametrize("scan", [False, True])
def test_damage_is_caught_by_the_schema_2_checksum(tmp_path: Path, monkeypatch, scan):
    path = tmp_path / "s.sqlite"
    fn = Recorder()
    with EmbeddingStore(path) as store:
        store.embed(_embedder(fn), TEXTS, "document", progress=False)
    conn = sqlite3.connect(path)
    with conn:  # flip one bit in 3 stored vectors
        rows = conn.execute("SELECT rowid, vector FROM embeddings LIMIT 3").fetchall()
        for rowid, blob in rows:
            damaged = bytearray(blob)
            damaged[5] ^= 1
            conn.execute("UPDATE embeddings SET vector=? WHERE rowid=?", (bytes(damaged), rowid))
    conn.close()
    monkeypatch.setattr(store_module, "SCAN_MIN", 1 if scan else 10**9)
    with EmbeddingStore(path) as store:
        with pytest.warns(RuntimeWarning, match="3 damaged"):
            out = store.embed(_embedder(fn), TEXTS, "document", progress=False)
        assert store.stats.texts_embedded == 3
    np.testing.assert_array_equal(out, _vectors(TEXTS))


def test_a_schema_1_store_still_reads_and_is_marked_2(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    fn = Recorder()
    with EmbeddingStore(path) as store:
        store.embed(_embedder(fn), TEXTS[:20], "document", progress=False)
    conn = sqlite3.connect(path)
    with conn:  # what schema 1 wrote: 16-byte blake2b checksums
        for rowid, blob in conn.execute("SELECT rowid, vector FROM embeddings").fetchall():
            conn.execute(
                "UPDATE embeddings SET checksum=? WHERE rowid=?", (vector_checksum(blob), rowid)
            )
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()
    with EmbeddingStore(path) as store:
        version = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'")
        assert version.fetchone()[0] == "2"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = store.embed(_embedder(fn), TEXTS[:20], "document", progress=False)
        assert store.stats.model_calls == 0
    np.testing.assert_array_equal(out, _vectors(TEXTS[:20]))


def test_hash_matcher_finds_rows_in_any_order_and_tells_shared_prefixes_apart():
    from queryfit.store import _HashMatcher

    rng = np.random.default_rng(5)
    hashes = [rng.bytes(32) for _ in range(50)]
    hashes[7] = hashes[3][:8] + rng.bytes(24)  # same 8-byte prefix as row 3
    matcher = _HashMatcher(hashes)
    as_words = lambda hs: np.frombuffer(b"".join(hs), dtype="<u8").reshape(-1, 4)  # noqa: E731
    assert matcher.rows(as_words(hashes[:20])).tolist() == list(range(20))  # in order
    shuffled = [hashes[i] for i in (7, 3, 49, 0)] + [rng.bytes(32)]
    assert matcher.rows(as_words(shuffled)).tolist() == [7, 3, 49, 0, -1]


def test_a_packed_range_out_of_request_order_lands_in_the_right_rows():
    """A range whose rows span exactly as many rows as it holds, but permuted, is not copied as
    one block (the bug: rows 1 and 2 swapped their vectors)."""
    from queryfit.store import _HashMatcher, _take_packed

    rng = np.random.default_rng(7)
    dim, n = 6, 5
    hashes = [rng.bytes(32) for _ in range(n)]
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    record = np.dtype([("hash", "<u8", (4,)), ("checksum", "<u8"), ("vector", "<f4", (dim,))])
    order = [0, 2, 1, 3, 4]  # first and last in place, two swapped between them
    rows = np.zeros(n, dtype=record)
    rows["hash"] = np.frombuffer(b"".join(hashes[i] for i in order), dtype="<u8").reshape(n, 4)
    rows["vector"] = vectors[order]
    rows["checksum"] = vector_checksums(vectors[order], rows["hash"], 1)
    out, found = np.zeros((n, dim), np.float32), np.zeros(n, bool)
    assert _take_packed(rows.tobytes(), _HashMatcher(hashes), 1, dim, out, found) == 0
    np.testing.assert_array_equal(out, vectors)
    assert found.all()
