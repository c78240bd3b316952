"""API providers against a real HTTP server on 127.0.0.1: protocols, batching, retries, keys."""

from __future__ import annotations

import pickle
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from servers.embeddings_server import EmbeddingsServer, toy_vector

from queryfit._http import parse_retry_after
from queryfit.embedders import get_embedder
from queryfit.embedders.cohere import CohereEmbedder
from queryfit.embedders.openai_compatible import OpenAIEmbedder
from queryfit.embedders.voyage import VoyageEmbedder
from queryfit.errors import EmbedderError, QueryfitError
from queryfit.store import EmbeddingStore

FAST = {"backoff_base": 0.01}
SECRET = "sk-test-very-secret-0123456789"


@pytest.fixture(scope="module")
def module_server():
    with EmbeddingsServer() as server:
        yield server


@pytest.fixture
def server(module_server: EmbeddingsServer) -> EmbeddingsServer:
    module_server.reset()
    module_server.state.retry_after = "0"
    module_server.state.required_key = None
    module_server.state.max_inputs = None
    return module_server


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "COHERE_API_KEY",
        "CO_API_KEY",
        "COHERE_BASE_URL",
        "VOYAGE_API_KEY",
        "VOYAGE_BASE_URL",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)


def openai(server: EmbeddingsServer, model: str = "toy-embed", **kw) -> OpenAIEmbedder:
    emb = get_embedder(f"openai:{model}", base_url=f"{server.url}/v1", **(FAST | kw))
    assert isinstance(emb, OpenAIEmbedder)
    return emb


def texts(n: int, prefix: str = "passage") -> list[str]:
    return [f"{prefix} number {i} about topic {i % 7}" for i in range(n)]


# -- OpenAI-compatible ------------------------------------------------------------------------


def test_openai_protocol_and_order(server: EmbeddingsServer) -> None:
    emb = openai(server, dim=32)
    out = emb.embed_documents(["alpha beta", "gamma", "delta epsilon zeta"])
    want = np.stack([toy_vector(t) for t in ["alpha beta", "gamma", "delta epsilon zeta"]])
    # the server answers in reverse index order: the client must sort by index
    np.testing.assert_allclose(out, want, atol=1e-5)
    assert out.dtype == np.float32
    (req,) = server.requests
    assert req.path == "/v1/embeddings"
    assert req.body == {
        "model": "toy-embed",
        "input": ["alpha beta", "gamma", "delta epsilon zeta"],
        "encoding_format": "float",
    }
    assert "Authorization" not in req.headers  # no key for a local server


def test_api_key_sent_as_bearer_never_shown(server: EmbeddingsServer, tmp_path: Path) -> None:
    server.state.required_key = SECRET
    emb = openai(server, api_key=SECRET)
    emb.embed_queries(["hello"])
    assert server.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"
    store = EmbeddingStore(tmp_path / "s.sqlite")
    store.embed(emb, ["one", "two"], "document", progress=False)
    store.close()
    assert SECRET.encode() not in (tmp_path / "s.sqlite").read_bytes()
    for text in (repr(emb), emb.store_key("query"), emb.store_key("document")):
        assert SECRET not in text
    assert SECRET.encode() not in pickle.dumps(emb)


def test_wrong_key_is_a_one_line_error_naming_the_env_var(server: EmbeddingsServer) -> None:
    server.state.required_key = SECRET
    emb = openai(server, api_key="sk-wrong-key", dim=32)
    with pytest.raises(EmbedderError) as info:
        emb.embed_queries(["hello"])
    message = str(info.value)
    assert "HTTP 401" in message and "$OPENAI_API_KEY" in message
    assert "sk-wrong-key" not in message and "\n" not in message
    assert len(server.requests) == 1  # an auth failure is not retried


def test_official_endpoint_needs_a_key() -> None:
    with pytest.raises(EmbedderError, match=r"\$OPENAI_API_KEY"):
        get_embedder("openai:text-embedding-3-small")
    with pytest.raises(EmbedderError, match=r"\$COHERE_API_KEY"):
        get_embedder("cohere:embed-english-v3.0")
    with pytest.raises(EmbedderError, match=r"\$VOYAGE_API_KEY"):
        get_embedder("voyage:voyage-3.5")
    with pytest.raises(EmbedderError, match="cannot shorten"):
        get_embedder("openai:text-embedding-ada-002", api_key="k", dimensions=256)


def test_known_models_need_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert get_embedder("openai:text-embedding-3-large").dim == 3072
    assert get_embedder("openai:text-embedding-3-small", dimensions=512).dim == 512
    assert get_embedder("cohere:embed-english-v3.0", api_key="k").dim == 1024
    assert get_embedder("voyage:voyage-3.5", api_key="k").dim == 1024


def test_dimensions_are_sent_and_checked(server: EmbeddingsServer) -> None:
    emb = openai(server, dimensions=16)
    assert emb.dim == 16 and len(server.requests) == 0  # no probe
    assert emb.embed_queries(["x y"]).shape == (1, 16)
    assert server.requests[-1].body["dimensions"] == 16


def test_unknown_model_probes_once(server: EmbeddingsServer) -> None:
    emb = openai(server)
    assert emb.dim == 32 and emb.dim == 32
    assert len(server.requests) == 1


def test_batching_respects_count_and_size_limits(server: EmbeddingsServer) -> None:
    emb = openai(server, dim=32, batch_size=32, concurrency=2)
    assert emb.max_batch_size == 64  # the store's batch: two requests in flight
    store = EmbeddingStore(":memory:")
    out = store.embed(emb, texts(250), "document", progress=False)
    sizes = [len(r.body["input"]) for r in server.requests]
    assert max(sizes) <= 32 and sum(sizes) == 250 and len(sizes) == 8
    np.testing.assert_allclose(out[7], toy_vector(texts(250)[7]), atol=1e-5)

    server.reset()
    small = openai(server, dim=32, max_batch_chars=60)
    small.embed_documents(["x" * 25] * 3 + ["y" * 70])
    sizes = [len(r.body["input"]) for r in server.requests]
    assert sorted(sizes) == [1, 1, 2]  # 25+25 fit in 60, a third does not; a long text goes alone


def test_requests_run_concurrently(server: EmbeddingsServer) -> None:
    server.state.slow_seconds = 0.4
    server.script(["slow"] * 4)
    emb = openai(server, dim=32, batch_size=2, concurrency=4)
    start = time.perf_counter()
    emb.embed_documents(texts(8))
    elapsed = time.perf_counter() - start
    assert server.state.max_in_flight >= 2
    assert elapsed < 1.2, elapsed  # four 0.4 s requests one after another would take 1.6 s


def test_retries_429_500_and_malformed_json(server: EmbeddingsServer) -> None:
    server.script(["429", "500", "malformed", "short"])
    emb = openai(server, dim=32)
    out = emb.embed_documents(["a", "b"])
    assert out.shape == (2, 32)
    assert emb.stats.requests == 5 and emb.stats.retries == 4


def test_retry_after_is_honoured(server: EmbeddingsServer) -> None:
    server.state.retry_after = "1"
    server.script(["429"])
    emb = openai(server, dim=32, backoff_base=0.0)
    start = time.perf_counter()
    emb.embed_documents(["a"])
    assert time.perf_counter() - start >= 0.9


def test_settings_share_the_llm_clients_names_and_the_old_name_still_works(
    server: EmbeddingsServer,
) -> None:
    emb = openai(server, dim=32, backoff_base=0.2, backoff_max=3, max_retry_wait=9, timeout=5)
    settings = emb.http.settings
    assert (settings.backoff_base, settings.backoff_max, settings.max_retry_wait) == (0.2, 3, 9)
    assert settings.timeout == 5 and settings.max_retries == 6  # the embedders' default
    with pytest.warns(DeprecationWarning, match="backoff_base"):
        old = openai(server, dim=32, retry_base_delay=0.0)
    assert old.http.settings.backoff_base == 0.0
    server.script(["500"])
    assert old.embed_documents(["a"]).shape == (1, 32) and old.stats.retries == 1


def test_retry_after_beyond_the_limit_fails_fast(server: EmbeddingsServer) -> None:
    server.state.retry_after = "3600"
    server.script(["429"])
    emb = openai(server, dim=32, max_retry_wait=5)
    start = time.perf_counter()
    with pytest.raises(EmbedderError, match="asks to wait 3600s"):
        emb.embed_documents(["a"])
    assert time.perf_counter() - start < 2


def test_retries_run_out_with_a_clear_error(server: EmbeddingsServer) -> None:
    server.script(["500"] * 3)
    emb = openai(server, dim=32, max_retries=2)
    with pytest.raises(EmbedderError, match=r"failed after 3 tries: HTTP 500: internal error"):
        emb.embed_documents(["a"])


def test_timeout_is_retried(server: EmbeddingsServer) -> None:
    server.state.slow_seconds = 1.0
    server.script(["slow"])
    emb = openai(server, dim=32, timeout=0.3)
    assert emb.embed_documents(["a"]).shape == (1, 32)
    assert emb.stats.retries == 1

    server.script(["slow", "slow"])
    emb = openai(server, dim=32, timeout=0.3, max_retries=1)
    with pytest.raises(EmbedderError, match="timeout"):
        emb.embed_documents(["a"])


def test_wrong_dimension_fails_without_poisoning_the_store(
    server: EmbeddingsServer, tmp_path: Path
) -> None:
    server.script(["wrong_dim"])
    emb = openai(server, dim=32)
    store = EmbeddingStore(tmp_path / "s.sqlite")
    with pytest.raises(EmbedderError) as info:
        store.embed(emb, ["a", "b"], "document", progress=False)
    assert "35-dimensional" in str(info.value) and "expected 32" in str(info.value)
    assert len(server.requests) == 1  # not retried: the model is wrong, not the network
    assert store.count() == 0


def test_unreachable_server_names_the_url() -> None:
    emb = get_embedder("openai:m", base_url="http://127.0.0.1:9/v1", dim=8, **FAST)
    with pytest.raises(EmbedderError, match=r"127\.0\.0\.1:9/v1.*cannot connect"):
        emb.embed_documents(["a"])


def test_http_400_and_404_are_not_retried(server: EmbeddingsServer) -> None:
    server.script(["400"])
    emb = openai(server, dim=32)
    with pytest.raises(EmbedderError, match="HTTP 400: bad request"):
        emb.embed_documents(["a"])
    bad = get_embedder("openai:m", base_url=f"{server.url}/nope", dim=32)
    with pytest.raises(EmbedderError, match="HTTP 404"):
        bad.embed_documents(["a"])
    assert len(server.requests) == 2


def test_bad_options_are_user_errors() -> None:
    for kwargs in ({"batch_size": 0}, {"concurrency": -1}, {"timeout": 0}, {"dimensions": 0}):
        with pytest.raises(EmbedderError):
            get_embedder("openai:m", base_url="http://127.0.0.1:1/v1", **kwargs)
    with pytest.raises(EmbedderError, match="http"):
        get_embedder("openai:m", base_url="localhost:11434")
    with pytest.raises(EmbedderError, match="does not accept"):
        get_embedder("openai:m", base_url="http://127.0.0.1:1/v1", colour="red")


def test_azure_deployment_url_and_header(server: EmbeddingsServer) -> None:
    emb = get_embedder(
        "azure-openai:my-deploy",
        base_url=server.url,
        api_key=SECRET,
        model="text-embedding-3-small",
        **FAST,
    )
    assert emb.dim == 1536 and len(server.requests) == 0
    server.state.dim = 1536
    try:
        emb.embed_queries(["x"])
    finally:
        server.state.dim = 32
    req = server.requests[-1]
    assert req.path == "/openai/deployments/my-deploy/embeddings?api-version=2024-10-21"
    assert req.headers["api-key"] == SECRET and "Authorization" not in req.headers
    with pytest.raises(EmbedderError, match="AZURE_OPENAI_ENDPOINT"):
        get_embedder("azure:my-deploy", api_key="k")


# -- Cohere and Voyage ------------------------------------------------------------------------


def test_cohere_input_types_and_batch_limit(server: EmbeddingsServer) -> None:
    server.state.max_inputs = 96
    emb = get_embedder("cohere:toy", base_url=server.url, api_key=SECRET, dim=32, **FAST)
    assert isinstance(emb, CohereEmbedder)
    docs = emb.embed_documents(texts(200))
    queries = emb.embed_queries(["passage number 3 about topic 3"])
    bodies = [r.body for r in server.requests]
    assert {r.path for r in server.requests} == {"/v2/embed"}
    assert [b["input_type"] for b in bodies] == ["search_document"] * 3 + ["search_query"]
    assert max(len(b["texts"]) for b in bodies) == 96
    assert bodies[0]["embedding_types"] == ["float"]
    assert server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert not np.allclose(queries[0], docs[3])  # the query type gives another vector
    assert emb.store_key("query") != emb.store_key("document")
    assert "input_type=search_query" in emb.store_key("query")


def test_cohere_v1_endpoint_and_plain_list_answer(server: EmbeddingsServer) -> None:
    emb = CohereEmbedder("toy", base_url=server.url, api_version="v1", dim=32)
    assert emb._parse({"embeddings": [[1.0, 2.0]]}, 1) == [[1.0, 2.0]]
    out = emb.embed_queries(["a b"])
    assert server.requests[-1].path == "/v1/embed" and out.shape == (1, 32)
    server.script(["429", "wrong_dim"])
    with pytest.raises(EmbedderError, match="35-dimensional"):
        emb.embed_documents(["a"])


def test_voyage_input_types_and_output_dimension(server: EmbeddingsServer) -> None:
    emb = get_embedder("voyage:toy", base_url=f"{server.url}/v1", api_key="k", dimensions=16)
    assert isinstance(emb, VoyageEmbedder)
    q = emb.embed_queries(["a b"])
    d = emb.embed_documents(["a b"])
    bodies = [r.body for r in server.requests]
    assert [b["input_type"] for b in bodies] == ["query", "document"]
    assert bodies[0]["output_dimension"] == 16 and q.shape == d.shape == (1, 16)
    assert not np.allclose(q, d)
    assert emb.store_key("query") != emb.store_key("document")


# -- the store: keys and zero-request reruns --------------------------------------------------


def test_store_keys_separate_every_setting(server: EmbeddingsServer) -> None:
    url = f"{server.url}/v1"
    keys = {
        get_embedder("openai:a", base_url=url, dim=32).store_key("query"),
        get_embedder("openai:b", base_url=url, dim=32).store_key("query"),
        get_embedder("openai:a", base_url=url, dimensions=16).store_key("query"),
        get_embedder("openai:a", base_url=url, dim=32, query_prefix="q: ").store_key("query"),
        get_embedder("openai:a", base_url=f"{server.url}/other/v1", dim=32).store_key("query"),
        get_embedder("cohere:a", base_url=server.url, dim=32).store_key("query"),
        get_embedder("cohere:a", base_url=server.url, dim=32).store_key("document"),
        get_embedder("voyage:a", base_url=url, dim=32).store_key("query"),
        get_embedder("voyage:a", base_url=url, dim=32).store_key("document"),
    }
    assert len(keys) == 9
    # a symmetric model with equal prefixes shares one cache for queries and documents
    emb = get_embedder("openai:a", base_url=url, dim=32)
    assert emb.store_key("query") == emb.store_key("document")
    # the official endpoint is implied; any other endpoint is part of the key
    official = get_embedder("openai:text-embedding-3-small", api_key="k")
    assert "endpoint" not in official.store_key("query")
    assert official.store_key("query").startswith("openai:text-embedding-3-small|dim=1536")


@pytest.mark.parametrize("provider", ["openai", "cohere", "voyage"])
def test_second_run_makes_zero_requests(
    server: EmbeddingsServer, tmp_path: Path, provider: str
) -> None:
    from queryfit import api
    from queryfit.data import QADataset

    corpus = {f"d{i}": t for i, t in enumerate(texts(40))}
    queries = {f"q{i}": f"what about topic {i % 7} number {i}" for i in range(25)}
    dataset = QADataset(queries, corpus, {f"q{i}": [f"d{i}"] for i in range(25)})
    base_url = server.url if provider == "cohere" else f"{server.url}/v1"

    def run() -> api.EmbedResult:
        emb = get_embedder(f"{provider}:toy", base_url=base_url, dim=32, batch_size=8)
        return api.embed(dataset, model=emb, store=tmp_path / "s.sqlite", progress=False)

    first = run()
    assert first.texts_embedded == 65 and first.model_calls >= 1
    assert len(server.requests) == 9  # ceil(40 / 8) + ceil(25 / 8): each text sent once
    server.reset()
    second = run()
    assert second.model_calls == 0 and second.texts_from_store == 65
    assert len(server.requests) == 0


def test_warm_store_needs_no_dimension_probe(server: EmbeddingsServer, tmp_path: Path) -> None:
    """An unknown model's size is kept with the store's entries: a warm run sends nothing."""
    path = tmp_path / "s.sqlite"

    def run(more: list[str] = []) -> tuple[np.ndarray, np.ndarray]:  # noqa: B006
        emb = openai(server)  # no dim=: a new object must learn the size somehow
        with EmbeddingStore(path) as store:
            docs = store.embed(emb, texts(12) + more, "document", progress=False)
            queries = store.embed(emb, ["what about topic 3"], "query", progress=False)
        return docs, queries

    cold_docs, cold_queries = run()
    assert len(server.requests) == 3  # the probe, then the passages and the query
    server.reset()
    warm_docs, warm_queries = run()
    assert server.requests == []  # not even a dimension probe
    np.testing.assert_array_equal(warm_docs, cold_docs)
    np.testing.assert_array_equal(warm_queries, cold_queries)

    # A model behind the same name that changed size is caught by the first real request.
    server.state.dim = 48
    try:
        with pytest.raises(EmbedderError, match="48-dimensional.*expected 32.*new --store"):
            run(more=["a text not stored yet"])
    finally:
        server.state.dim = 32


# -- LiteLLM ----------------------------------------------------------------------------------


def test_litellm_passes_model_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def embedding(**kwargs):
        calls.append(kwargs)
        return {"data": [{"embedding": list(toy_vector(t, 8))} for t in kwargs["input"]]}

    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(embedding=embedding))
    emb = get_embedder(
        "litellm:mistral/mistral-embed",
        dim=8,
        batch_size=3,
        input_types={"query": "search_query", "document": "search_document"},
        base_url="http://127.0.0.1:1",
        api_key=SECRET,
    )
    out = emb.embed_documents(texts(7))
    assert out.shape == (7, 8)
    assert [len(c["input"]) for c in calls] == [3, 3, 1]
    assert calls[0]["model"] == "mistral/mistral-embed"
    assert calls[0]["input_type"] == "search_document" and calls[0]["api_base"]
    emb.embed_queries(["q"])
    assert calls[-1]["input_type"] == "search_query"
    assert emb.store_key("query") != emb.store_key("document")
    assert SECRET not in emb.store_key("query") and SECRET not in repr(emb)


def test_litellm_missing_is_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litellm", None)
    with pytest.raises(EmbedderError, match=r"queryfit\[litellm\]"):
        get_embedder("litellm:mistral/mistral-embed")


# -- plain callables ---------------------------------------------------------------------------


def toy_function(batch: list[str]) -> np.ndarray:
    return np.stack([toy_vector(t, 8) for t in batch])


def test_plain_function_is_named_after_itself() -> None:
    emb = get_embedder(toy_function)
    assert emb.model_id == "callable:test_providers.toy_function"
    assert emb.dim == 8 and emb.embed_queries(["a"]).shape == (1, 8)
    with pytest.raises(EmbedderError, match="model_id"):
        get_embedder(lambda batch: toy_function(batch))
    named = get_embedder(lambda batch: toy_function(batch), model_id="toy-v1", dim=8)
    assert named.model_id == "toy-v1"
    with pytest.raises(QueryfitError, match="cannot use int"):
        get_embedder(42)  # type: ignore[arg-type]


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
