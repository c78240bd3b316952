"""Embedder resolution and the bundled MiniLM model, loaded strictly offline."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from queryfit.embedders import (
    DEFAULT_MODEL,
    BaseEmbedder,
    CallableEmbedder,
    Embedder,
    get_embedder,
    register_provider,
)
from queryfit.embedders import registry as registry_module
from queryfit.embedders.bundled import default_model_path
from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder
from queryfit.errors import EmbedderError

MINILM_ID = "sentence-transformers:all-MiniLM-L6-v2"


@pytest.fixture(scope="session", autouse=True)
def offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """The bundled model, loaded once for the whole session (later instances share it)."""
    emb = get_embedder()
    assert isinstance(emb, SentenceTransformerEmbedder)
    _ = emb.dim  # load now
    return emb


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly on any attempt to open a connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# -- registry (no model loaded) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        None,
        DEFAULT_MODEL,
        "st:all-MiniLM-L6-v2",
        "ST:all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2",
    ],
)
def test_default_and_aliases_resolve_to_bundled_model(spec: str | None) -> None:
    emb = get_embedder(spec)
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert emb.model_id == MINILM_ID
    assert emb.path.resolve() == default_model_path().resolve()
    assert emb._model is None  # resolving loads nothing


def test_path_spec_keeps_bundled_identity() -> None:
    folder = str(default_model_path())
    for spec in (folder, f"sentence-transformers:{folder}", f"st:{folder}"):
        emb = get_embedder(spec)
        assert emb.model_id == MINILM_ID, spec


def test_copied_model_folder_is_named_after_folder(tmp_path: Path) -> None:
    copy = tmp_path / "my-minilm"
    copy.mkdir()
    (copy / "modules.json").write_text("[]")  # resolution only looks at the folder
    emb = get_embedder(str(copy), query_prefix="q: ")
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert emb.model_id == "sentence-transformers:my-minilm"
    assert emb.query_prefix == "q: " and emb.document_prefix == ""


def test_unknown_provider_lists_known_ones() -> None:
    with pytest.raises(EmbedderError) as info:
        get_embedder("acme:text-embedder-1")
    message = str(info.value)
    assert "unknown embedding provider 'acme'" in message
    assert "openai" in message and "cohere" in message
    assert "sentence-transformers" in message and "st" in message


def test_missing_local_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="does not exist"):
        get_embedder(f"st:{tmp_path / 'nope'}")


def test_embedder_instance_passes_through() -> None:
    emb = CallableEmbedder(lambda ts: np.zeros((len(ts), 3)), "test:zeros", dim=3)
    assert get_embedder(emb) is emb
    assert isinstance(emb, Embedder) and isinstance(emb, BaseEmbedder)
    with pytest.raises(EmbedderError, match="query_prefix"):
        get_embedder(emb, query_prefix="other: ")


def test_register_provider_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_PROVIDERS", dict(registry_module._PROVIDERS))
    seen: list[tuple[str, dict]] = []

    def factory(name: str, options: dict) -> Embedder:
        seen.append((name, options))
        return CallableEmbedder(
            lambda ts: np.ones((len(ts), 2)),
            f"fake:{name}",
            dim=2,
            query_prefix=options["query_prefix"],
        )

    register_provider("fake", factory)
    emb = get_embedder("fake:model-a", query_prefix="Q ", extra=1)
    assert emb.model_id == "fake:model-a" and emb.query_prefix == "Q "
    assert seen == [("model-a", {"query_prefix": "Q ", "document_prefix": "", "extra": 1})]


def test_callable_embedder_validates_and_discovers_dim() -> None:
    calls: list[list[str]] = []

    def fn(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return [[1.0, 2.0, float(len(t))] for t in texts]

    emb = CallableEmbedder(fn, "test:list", query_prefix="q: ", document_prefix="d: ")
    assert emb.dim == 3 and len(calls) == 1  # one probe call
    out = emb.embed_queries(["ab"])
    assert calls[-1] == ["q: ab"]
    assert out.dtype == np.float32 and out.tolist() == [[1.0, 2.0, 5.0]]
    emb.embed_documents(["ab"])
    assert calls[-1] == ["d: ab"]

    nan = CallableEmbedder(lambda ts: np.full((len(ts), 2), np.nan), "test:nan", dim=2)
    with pytest.raises(EmbedderError, match="test:nan.*non-finite"):
        nan.embed_queries(["x"])
    short = CallableEmbedder(lambda ts: np.ones((1, 2)), "test:short", dim=2)
    with pytest.raises(EmbedderError, match=r"test:short.*shape \[1, 2\] for 2 texts"):
        short.embed_documents(["x", "y"])


def test_hub_name_not_in_cache_fails_fast_without_network(no_network: None) -> None:
    start = time.monotonic()
    with pytest.raises(EmbedderError, match="not available offline") as info:
        get_embedder("sentence-transformers:queryfit-tests/no-such-model-anywhere")
    assert time.monotonic() - start < 10
    assert "sentence-transformers:/path/to/model" in str(info.value)
    with pytest.raises(EmbedderError, match="not available offline"):
        get_embedder("BAAI/bge-small-en-v1.5-not-cached-here")


def test_missing_sentence_transformers_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    with pytest.raises(EmbedderError, match=r"queryfit\[train\]"):
        get_embedder()


# -- the bundled model ------------------------------------------------------------------------


def test_bundled_minilm_loads_offline(
    minilm: SentenceTransformerEmbedder, no_network: None
) -> None:
    assert minilm.model_id == MINILM_ID
    assert minilm.dim == 384
    assert minilm.store_key("query") == f"{MINILM_ID}|dim=384|prefix=''"
    out = minilm.embed_documents(["a cat sat on the mat", "stock markets fell today"])
    assert out.dtype == np.float32 and out.shape == (2, 384)
    assert np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])
    # Deterministic: the same text gives the same vector, which is what the store relies on.
    again = minilm.embed_documents(["a cat sat on the mat"])
    np.testing.assert_allclose(again[0], out[0], rtol=1e-5, atol=1e-6)


def test_query_prefix_is_applied(minilm: SentenceTransformerEmbedder) -> None:
    prefixed = get_embedder(DEFAULT_MODEL, query_prefix="query: ", document_prefix="passage: ")
    assert prefixed.model_id == MINILM_ID
    assert prefixed.store_key("query") != prefixed.store_key("document")
    assert prefixed.store_key("query") != minilm.store_key("query")
    with_prefix = prefixed.embed_queries(["how do plants make food"])
    by_hand = minilm.embed_documents(["query: how do plants make food"])
    without = minilm.embed_queries(["how do plants make food"])
    np.testing.assert_allclose(with_prefix, by_hand, rtol=1e-5, atol=1e-6)
    assert not np.allclose(with_prefix, without, atol=1e-4)
    doc = prefixed.embed_documents(["plants use photosynthesis"])
    np.testing.assert_allclose(
        doc, minilm.embed_documents(["passage: plants use photosynthesis"]), rtol=1e-5, atol=1e-6
    )


def test_normalize_option_changes_key_and_norm(minilm: SentenceTransformerEmbedder) -> None:
    unit = get_embedder(DEFAULT_MODEL, normalize=True)
    assert unit.store_key("query") != minilm.store_key("query")
    out = unit.embed_queries(["hello there"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
