"""The embedding store: each text is embedded once, damage is caught, interruptions resume."""

from __future__ import annotations

import hashlib
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

from queryfit.embedders import CallableEmbedder
from queryfit.errors import StoreError
from queryfit.store import EmbeddingStore, StoreStats, default_store_path

DIM = 8


def fake_vector(text: str) -> np.ndarray:
    """Deterministic, text-dependent vector so that mix-ups between texts are visible."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class Counting:
    """A model function that records every batch it is given."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if self.fail_on_call is not None and len(self.batches) == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        return np.stack([fake_vector(t) for t in texts])

    @property
    def calls(self) -> int:
        return len(self.batches)

    @property
    def texts(self) -> list[str]:
        return [t for b in self.batches for t in b]


def make_embedder(
    fn: Counting, model_id: str = "test:fake", qp: str = "", dp: str = "", batch: int = 64
) -> CallableEmbedder:
    return CallableEmbedder(
        fn, model_id, dim=DIM, query_prefix=qp, document_prefix=dp, max_batch_size=batch
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "embeddings.sqlite"


TEXTS = [f"text number {i}" for i in range(10)]


def test_second_embed_makes_no_model_calls(store_path: Path) -> None:
    fn = Counting()
    emb = make_embedder(fn)
    with EmbeddingStore(store_path) as store:
        first = store.embed(emb, TEXTS, "document", progress=False)
        assert fn.calls == 1
        assert sorted(fn.texts) == sorted(TEXTS)
        assert first.dtype == np.float32 and first.shape == (10, DIM)
        np.testing.assert_array_equal(first, np.stack([fake_vector(t) for t in TEXTS]))
        assert store.stats == StoreStats(model_calls=1, texts_embedded=10, texts_from_store=0)

        second = store.embed(emb, TEXTS, "document", progress=False)
        assert fn.calls == 1
        np.testing.assert_array_equal(first, second)
        assert store.stats.texts_from_store == 10
        assert store.count() == 10
        assert store.count(emb) == 10
        store.stats.reset()
        assert store.stats == StoreStats()

    # A new store object over the same file still needs no model.
    with EmbeddingStore(store_path) as store:
        third = store.embed(emb, TEXTS, "document", progress=False)
        assert fn.calls == 1
        assert store.stats.model_calls == 0
        np.testing.assert_array_equal(first, third)


def test_duplicates_embedded_once_and_order_preserved(store_path: Path) -> None:
    fn = Counting()
    emb = make_embedder(fn)
    texts = ["b", "a", "b", "c", "a", "b"]
    with EmbeddingStore(store_path) as store:
        out = store.embed(emb, texts, "query", progress=False)
    assert fn.texts == ["b", "a", "c"]
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_partial_overlap_embeds_only_new_texts(store_path: Path) -> None:
    fn = Counting()
    emb = make_embedder(fn)
    with EmbeddingStore(store_path) as store:
        store.embed(emb, TEXTS[:6], "document", progress=False)
        fn.batches.clear()
        mixed = [TEXTS[8], TEXTS[0], TEXTS[9], TEXTS[5]]
        out = store.embed(emb, mixed, "document", progress=False)
        assert fn.texts == [TEXTS[8], TEXTS[9]]
        assert store.stats.texts_from_store == 2
        np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in mixed]))


def test_prefix_and_model_id_get_separate_entries(store_path: Path) -> None:
    fn = Counting()
    plain = make_embedder(fn)
    prefixed = make_embedder(fn, qp="query: ", dp="passage: ")
    other_model = make_embedder(fn, model_id="test:other")
    with EmbeddingStore(store_path) as store:
        store.embed(plain, ["x"], "query", progress=False)
        # Symmetric embedder (equal prefixes): the document of the same text is a cache hit.
        store.embed(plain, ["x"], "document", progress=False)
        assert fn.texts == ["x"]
        store.embed(prefixed, ["x"], "query", progress=False)
        store.embed(prefixed, ["x"], "document", progress=False)
        assert fn.texts == ["x", "query: x", "passage: x"]
        store.embed(other_model, ["x"], "query", progress=False)
        assert fn.calls == 4
        assert store.count() == 4
        assert store.count(prefixed) == 2
        assert store.count(plain) == 1


def test_store_key_ignores_kind_but_not_prefix() -> None:
    emb = make_embedder(Counting())
    assert emb.store_key("query") == emb.store_key("document")
    asym = make_embedder(Counting(), qp="q: ")
    assert asym.store_key("query") != asym.store_key("document")
    assert "test:fake" in asym.store_key("query") and f"dim={DIM}" in asym.store_key("query")


def _corrupt(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("UPDATE embeddings SET vector = ?", (b"garbage!",)),  # wrong length
        ("UPDATE embeddings SET vector = ?", (bytes(4 * DIM),)),  # right length, bad checksum
        ("UPDATE embeddings SET dim = ?", (DIM + 1,)),  # dimension mismatch
    ],
    ids=["short-blob", "checksum", "dim"],
)
def test_damaged_entries_are_reembedded_with_warning(
    store_path: Path, sql: str, params: tuple
) -> None:
    fn = Counting()
    emb = make_embedder(fn)
    with EmbeddingStore(store_path) as store:
        good = store.embed(emb, TEXTS[:3], "document", progress=False)
    _corrupt(store_path, sql, params)
    fn.batches.clear()
    with EmbeddingStore(store_path) as store:
        with pytest.warns(RuntimeWarning, match="3 damaged"):
            out = store.embed(emb, TEXTS[:3], "document", progress=False)
        assert fn.calls == 1 and sorted(fn.texts) == sorted(TEXTS[:3])
        np.testing.assert_array_equal(out, good)
        # The damaged rows were overwritten: the next read is clean and needs no model.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = store.embed(emb, TEXTS[:3], "document", progress=False)
        assert fn.calls == 1
        np.testing.assert_array_equal(again, good)


def test_non_finite_stored_vector_is_rejected(store_path: Path) -> None:
    from queryfit.store import vector_checksum

    fn = Counting()
    emb = make_embedder(fn)
    with EmbeddingStore(store_path) as store:
        store.embed(emb, ["only"], "query", progress=False)
    nan_blob = np.full(DIM, np.nan, dtype="<f4").tobytes()
    _corrupt(
        store_path,
        "UPDATE embeddings SET vector = ?, checksum = ?",
        (nan_blob, vector_checksum(nan_blob)),
    )
    with EmbeddingStore(store_path) as store:
        with pytest.warns(RuntimeWarning, match="1 damaged"):
            out = store.embed(emb, ["only"], "query", progress=False)
    assert fn.calls == 2
    np.testing.assert_array_equal(out[0], fake_vector("only"))


def test_interrupted_run_resumes_with_remaining_texts(store_path: Path) -> None:
    texts = [f"t{i}" for i in range(10)]
    crashing = Counting(fail_on_call=3)
    with EmbeddingStore(store_path) as store:
        with pytest.raises(KeyboardInterrupt):
            store.embed(make_embedder(crashing, batch=3), texts, "document", progress=False)
        assert store.stats.model_calls == 3
        assert store.stats.texts_embedded == 6
    assert crashing.texts[:6] == texts[:6]

    fn = Counting()
    with EmbeddingStore(store_path) as store:
        assert store.count() == 6
        out = store.embed(make_embedder(fn, batch=3), texts, "document", progress=False)
    assert fn.texts == texts[6:]
    assert fn.calls == 2  # 4 remaining texts in batches of 3
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_batch_size_argument_overrides_embedder(store_path: Path) -> None:
    fn = Counting()
    with EmbeddingStore(store_path) as store:
        store.embed(make_embedder(fn), TEXTS, "query", batch_size=4, progress=False)
    assert [len(b) for b in fn.batches] == [4, 4, 2]


def test_progress_bar_draws_on_stderr(store_path: Path, capsys: pytest.CaptureFixture) -> None:
    fn = Counting()
    with EmbeddingStore(store_path) as store:
        store.embed(make_embedder(fn), TEXTS, "query", description="Embedding tests")
        assert "Embedding tests" in capsys.readouterr().err
        store.embed(make_embedder(fn), TEXTS, "query", description="Nothing to do")
        assert "Nothing to do" not in capsys.readouterr().err


def test_empty_request(store_path: Path) -> None:
    fn = Counting()
    with EmbeddingStore(store_path) as store:
        out = store.embed(make_embedder(fn), [], "query", progress=False)
    assert out.shape == (0, DIM) and fn.calls == 0


def test_wrong_output_shape_is_not_stored(store_path: Path) -> None:
    from queryfit.errors import EmbedderError

    emb = CallableEmbedder(lambda texts: np.ones((len(texts), DIM + 1)), "test:bad", dim=DIM)
    with EmbeddingStore(store_path) as store:
        with pytest.raises(EmbedderError, match="test:bad"):
            store.embed(emb, ["a"], "query", progress=False)
        assert store.count() == 0


def test_non_sqlite_file_raises_store_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.sqlite"
    bogus.write_text("this is not a database, just some text that is long enough " * 20)
    with pytest.raises(StoreError, match=r"notes\.sqlite.*--store PATH"):
        EmbeddingStore(bogus)


def test_folder_as_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="--store PATH"):
        EmbeddingStore(tmp_path)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    _corrupt(path, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not a queryfit store"):
        EmbeddingStore(path)


def test_newer_schema_is_refused(store_path: Path) -> None:
    EmbeddingStore(store_path).close()
    _corrupt(store_path, "UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer queryfit"):
        EmbeddingStore(store_path)


def test_store_uses_wal_and_closes(store_path: Path) -> None:
    store = EmbeddingStore(store_path)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count()


def test_default_path_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUERYFIT_STORE", raising=False)
    assert default_store_path() == tmp_path / ".queryfit" / "embeddings.sqlite"
    with EmbeddingStore() as store:
        assert store.path == tmp_path / ".queryfit" / "embeddings.sqlite"
        assert store.path.is_file()
    monkeypatch.setenv("QUERYFIT_STORE", str(tmp_path / "env.sqlite"))
    with EmbeddingStore() as store:
        assert store.path == tmp_path / "env.sqlite"


def test_lookup_of_many_texts_is_chunked(store_path: Path) -> None:
    # More distinct texts than one IN (...) chunk holds.
    texts = [f"doc {i}" for i in range(2500)]
    emb = CallableEmbedder(
        lambda ts: np.array([[float(t.split()[1]), 1.0] for t in ts]), "test:id", dim=2
    )
    with EmbeddingStore(store_path) as store:
        store.embed(emb, texts, "document", batch_size=1000, progress=False)
        store.stats.reset()
        out = store.embed(emb, texts[::-1], "document", progress=False)
        assert store.stats.model_calls == 0 and store.stats.texts_from_store == 2500
    np.testing.assert_array_equal(out[:, 0], np.arange(2499, -1, -1, dtype=np.float32))
