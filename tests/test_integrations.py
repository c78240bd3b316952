"""The adapted model out: AdaptedEmbedder, LlamaIndex and LangChain round-trips, import/export."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from servers.embeddings_server import EmbeddingsServer, toy_vector

from queryfit import adapted as adapted_module
from queryfit.adapted import AdaptedEmbedder, adapter_digest
from queryfit.adapters import Adapter, load_adapter, save_adapter
from queryfit.adapters.convert import (
    adapter_matrix,
    export_adapter,
    import_llamaindex_adapter,
    load_llamaindex_adapter,
)
from queryfit.embedders import CallableEmbedder, get_embedder
from queryfit.errors import AdapterError
from queryfit.store import EmbeddingStore

DIM = 32
DOCS = [
    "the cat sat on the mat",
    "dogs bark at the mailman",
    "python is a programming language",
    "the stock market fell today",
    "a recipe for apple pie with cinnamon",
    "rain is expected over the weekend",
    "the cat chased a mouse in the garden",
    "learning rust and python for systems work",
    "bake the pie at 200 degrees",
    "football match ends in a draw",
]
QUERIES = ["which pet chased something", "how do I bake dessert", "programming languages"]


def toy_batch(texts: list[str]) -> np.ndarray:
    return np.stack([toy_vector(t, DIM) for t in texts]).astype(np.float32)


def scrambling_adapter(base_id: str | None = None, seed: int = 3) -> Adapter:
    """A linear adapter far from identity, so adapted rankings differ from the base ones."""
    rng = np.random.default_rng(seed)
    weight = np.eye(DIM, dtype=np.float32) + rng.normal(0, 0.8, (DIM, DIM)).astype(np.float32)
    bias = rng.normal(0, 0.1, DIM).astype(np.float32)
    base = {"id": base_id, "query_prefix": "", "document_prefix": ""} if base_id else {}
    return Adapter(type="linear", params={"weight": weight, "bias": bias}, dim=DIM, base_model=base)


def random_mlp_adapter(rng: np.random.Generator, hidden: int = 8) -> Adapter:
    """A residual MLP adapter with random arrays: not an affine map."""
    params = {
        "in_weight": rng.normal(size=(hidden, DIM)),
        "in_bias": rng.normal(size=hidden),
        "out_weight": rng.normal(size=(DIM, hidden)),
        "out_bias": rng.normal(size=DIM),
    }
    return Adapter(type="residual_mlp", params=params, dim=DIM)


def _scores(adapter: Adapter | None, query: str) -> np.ndarray:
    q = toy_batch([query])
    if adapter is not None:
        q = adapter.transform(q)
    d = toy_batch(DOCS)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    return d @ q[0]


def expected_ranking(adapter: Adapter | None, query: str, k: int = 5) -> list[int]:
    return list(np.argsort(-_scores(adapter, query), kind="stable")[:k])


def assert_ranking(got: list[int], adapter: Adapter | None, query: str) -> None:
    """``got`` is the expected top 5, except that passages with equal scores may swap places
    (frameworks break exact ties in their own order)."""
    scores = _scores(adapter, query)
    want = expected_ranking(adapter, query, len(got))
    np.testing.assert_allclose(scores[got], scores[want], atol=1e-6)
    assert len(set(got)) == len(got)


# -- AdaptedEmbedder ---------------------------------------------------------------------------


def test_adapted_embedder_adapts_queries_only(tmp_path: Path) -> None:
    base = CallableEmbedder(toy_batch, "toy", dim=DIM)
    adapter = scrambling_adapter("toy")
    emb = AdaptedEmbedder(base, adapter)
    np.testing.assert_allclose(emb.embed_documents(DOCS), toy_batch(DOCS), atol=1e-6)
    np.testing.assert_allclose(
        emb.embed_queries(QUERIES), adapter.transform(toy_batch(QUERIES)), atol=1e-6
    )
    assert emb.embed_query(QUERIES[0]).shape == (DIM,)
    assert emb.dim == DIM and emb.model_id == f"toy+adapter:{adapter_digest(adapter)}"
    # documents share the base model's cache entry; adapted queries never mix with base ones
    assert emb.store_key("document") == base.store_key("document")
    assert emb.store_key("query") != base.store_key("query")
    assert emb.embed_queries([]).shape == (0, DIM)


def test_adapted_embedder_refuses_another_base_model(tmp_path: Path) -> None:
    base = CallableEmbedder(toy_batch, "toy", dim=DIM)
    with pytest.raises(AdapterError, match="trained for other-model"):
        AdaptedEmbedder(base, scrambling_adapter("other-model"))
    assert AdaptedEmbedder(base, scrambling_adapter("other-model"), force=True)
    wrong_dim = CallableEmbedder(lambda b: np.ones((len(b), 8)), "toy", dim=8)
    with pytest.raises(AdapterError, match="32-dimensional"):
        AdaptedEmbedder(wrong_dim, scrambling_adapter("toy")).embed_queries(["x"])


def test_from_pretrained_uses_the_recorded_base_and_a_store(tmp_path: Path) -> None:
    with EmbeddingsServer() as server:
        adapter = scrambling_adapter("openai:toy")
        adapter.base_model.query_prefix = "query: "
        save_adapter(adapter, tmp_path / "adapter")
        store = tmp_path / "s.sqlite"

        def load() -> AdaptedEmbedder:
            return AdaptedEmbedder.from_pretrained(
                tmp_path / "adapter", store=store, base_url=f"{server.url}/v1", dim=DIM
            )

        emb = load()
        assert emb.base.model_id == "openai:toy" and emb.query_prefix == "query: "
        q = emb.embed_queries(QUERIES)
        emb.embed_documents(DOCS)
        assert server.requests[0].body["input"][0].startswith("query: ")
        np.testing.assert_allclose(
            q, adapter.transform(toy_batch([f"query: {t}" for t in QUERIES])), atol=1e-5
        )
        server.reset()
        again = load()
        np.testing.assert_allclose(again.embed_queries(QUERIES), q, atol=1e-6)
        again.embed_documents(DOCS)
        assert server.requests == []  # base vectors came from the store


# -- LlamaIndex --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama():
    pytest.importorskip("llama_index.core")
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class ToyLlamaEmbedding(BaseEmbedding):
        @classmethod
        def class_name(cls) -> str:
            return "ToyLlamaEmbedding"

        def _get_query_embedding(self, query: str) -> list[float]:
            return toy_batch([query])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return toy_batch([text])[0].tolist()

    return ToyLlamaEmbedding


def _llama_index(base_model):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(DOCS)]
    return VectorStoreIndex(nodes, embed_model=base_model)


def _retrieved(index, embed_model, query: str) -> list[int]:
    retriever = index.as_retriever(similarity_top_k=5, embed_model=embed_model)
    return [int(hit.node.node_id[1:]) for hit in retriever.retrieve(query)]


def test_llamaindex_round_trip(llama, tmp_path: Path) -> None:
    from queryfit.integrations.llamaindex import (
        AdaptedEmbeddingModel,
        LinearAdapterEmbeddingModel,
        to_llamaindex,
    )

    base = llama(model_name="toy")
    index = _llama_index(base)  # documents embedded once, with the base model
    adapter = scrambling_adapter()
    save_adapter(adapter, tmp_path / "adapter")
    drop_in = LinearAdapterEmbeddingModel(base, str(tmp_path / "adapter"))
    via_embedder = AdaptedEmbedder(base, adapter).as_llamaindex()
    assert isinstance(drop_in, AdaptedEmbeddingModel)
    changed = 0
    for query in QUERIES:
        want = expected_ranking(adapter, query)
        assert_ranking(_retrieved(index, drop_in, query), adapter, query)
        assert_ranking(_retrieved(index, via_embedder, query), adapter, query)
        base_hits = _retrieved(index, base, query)
        assert_ranking(base_hits, None, query)
        changed += base_hits != want
    assert changed >= 1  # the adapter really changed what is retrieved
    # documents pass through untouched
    assert drop_in.get_text_embedding(DOCS[0]) == base.get_text_embedding(DOCS[0])
    # a queryfit embedder of any provider is a BaseEmbedding too
    plain = to_llamaindex(CallableEmbedder(toy_batch, "toy", dim=DIM))
    assert plain.get_query_embedding("x") == pytest.approx(toy_batch(["x"])[0].tolist())


def test_llamaindex_object_as_base_model(llama) -> None:
    emb = get_embedder(llama(model_name="toy/v1"))
    assert emb.model_id == "llamaindex:ToyLlamaEmbedding:toy/v1"
    assert emb.dim == DIM
    assert emb.store_key("query") != emb.store_key("document")
    np.testing.assert_allclose(emb.embed_documents(DOCS[:2]), toy_batch(DOCS[:2]), atol=1e-6)
    store = EmbeddingStore(":memory:")
    store.embed(emb, DOCS, "document", progress=False)
    assert store.count(emb) == len(DOCS)


def test_llamaindex_async_query(llama, tmp_path: Path) -> None:
    import asyncio

    from queryfit.integrations.llamaindex import AdaptedEmbeddingModel

    adapter = scrambling_adapter()
    model = AdaptedEmbeddingModel(llama(model_name="toy"), adapter=adapter)
    got = asyncio.run(model.aget_query_embedding(QUERIES[0]))
    np.testing.assert_allclose(got, adapter.transform(toy_batch(QUERIES[:1]))[0], atol=1e-6)
    wrong = AdaptedEmbeddingModel(llama(model_name="toy"), adapter=_adapter_of_dim(8))
    with pytest.raises(AdapterError, match="8-dimensional"):
        wrong.get_query_embedding("x")


def _adapter_of_dim(dim: int) -> Adapter:
    return Adapter(type="linear", params={"weight": np.eye(dim)}, dim=dim)


# -- LangChain ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lc_base():
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import Embeddings

    class ToyLangChainEmbeddings(Embeddings):
        model = "toy"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return toy_batch(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return toy_batch([text])[0].tolist()

    return ToyLangChainEmbeddings()


def test_langchain_round_trip(lc_base, tmp_path: Path) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    from queryfit.integrations.langchain import AdaptedEmbeddings

    base_store = InMemoryVectorStore(lc_base)
    base_store.add_texts(DOCS, ids=[f"n{i}" for i in range(len(DOCS))])
    adapter = scrambling_adapter()
    save_adapter(adapter, tmp_path / "adapter")
    adapted = AdaptedEmbeddings(lc_base, tmp_path / "adapter")
    # the same stored document vectors, searched with adapted queries
    searched = InMemoryVectorStore(adapted)
    searched.store = base_store.store
    via_embedder = AdaptedEmbedder(lc_base, adapter).as_langchain()
    changed = 0
    for query in QUERIES:
        want = expected_ranking(adapter, query)
        hits = searched.similarity_search(query, k=5)
        assert_ranking([int(h.id[1:]) for h in hits], adapter, query)
        by_vector = base_store.similarity_search_by_vector(via_embedder.embed_query(query), k=5)
        assert_ranking([int(h.id[1:]) for h in by_vector], adapter, query)
        base_hits = [int(h.id[1:]) for h in base_store.similarity_search(query, k=5)]
        changed += base_hits != want
    assert changed >= 1
    assert adapted.embed_documents(DOCS) == lc_base.embed_documents(DOCS)


def test_langchain_object_as_base_model(lc_base) -> None:
    emb = get_embedder(lc_base)
    assert emb.model_id == "langchain:ToyLangChainEmbeddings:toy"
    np.testing.assert_allclose(emb.embed_queries(["a b"]), toy_batch(["a b"]), atol=1e-6)


# -- LlamaIndex adapter folders in, plain matrices out -----------------------------------------


def _save_llamaindex(folder: Path, config: dict, state: dict[str, np.ndarray]) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({k: torch.tensor(v) for k, v in state.items()}, folder / "pytorch_model.bin")
    return folder


def test_import_llamaindex_linear_layer(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(DIM, DIM)).astype(np.float32)
    b = rng.normal(size=DIM).astype(np.float32)
    src = _save_llamaindex(
        tmp_path / "li",
        {"in_features": DIM, "out_features": DIM, "bias": True},
        {"linear.weight": w, "linear.bias": b},
    )
    adapter = import_llamaindex_adapter(src, tmp_path / "qf", base_model="openai:toy")
    q = toy_batch(QUERIES)
    np.testing.assert_allclose(adapter.transform(q), q @ w.T + b, rtol=1e-5, atol=1e-5)
    loaded = load_adapter(tmp_path / "qf", model_id="openai:toy")
    np.testing.assert_allclose(loaded.transform(q), q @ w.T + b, rtol=1e-5, atol=1e-5)
    with pytest.raises(AdapterError, match="trained for openai:toy"):
        load_adapter(tmp_path / "qf", model_id="openai:other")
    # LlamaIndex folders are accepted wherever an adapter folder is
    np.testing.assert_allclose(
        AdaptedEmbedder(CallableEmbedder(toy_batch, "toy", dim=DIM), src).embed_queries(QUERIES),
        q @ w.T + b,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("residual", [True, False])
def test_import_llamaindex_two_layer_nn(tmp_path: Path, residual: bool) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    hidden = 12
    w1, b1 = rng.normal(size=(hidden, DIM)), rng.normal(size=hidden)
    w2, b2 = rng.normal(size=(DIM, hidden)), rng.normal(size=DIM)
    state = {
        "linear1.weight": w1.astype(np.float32),
        "linear1.bias": b1.astype(np.float32),
        "linear2.weight": w2.astype(np.float32),
        "linear2.bias": b2.astype(np.float32),
        "residual_weight": np.array([0.3], np.float32),
    }
    config = {
        "in_features": DIM,
        "hidden_features": hidden,
        "out_features": DIM,
        "bias": True,
        "activation_fn_str": "relu",
        "add_residual": residual,
    }
    adapter = load_llamaindex_adapter(_save_llamaindex(tmp_path / "li", config, state))
    q = rng.normal(size=(5, DIM)).astype(np.float32)
    out = np.maximum(q @ w1.T + b1, 0) @ w2.T + b2
    want = 0.3 * out + q if residual else out
    np.testing.assert_allclose(adapter.transform(q), want, rtol=1e-4, atol=1e-4)


def test_import_refuses_pickled_code_and_bad_folders(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"in_features": 4, "out_features": 4}))
    torch.save({"linear.weight": Path("/etc/passwd")}, folder / "pytorch_model.bin")
    with pytest.raises(AdapterError, match="weights_only"):
        load_llamaindex_adapter(folder)
    with pytest.raises(AdapterError, match="not a LlamaIndex adapter folder"):
        load_llamaindex_adapter(tmp_path)
    wide = _save_llamaindex(
        tmp_path / "wide",
        {"in_features": 4, "out_features": 8, "bias": False},
        {"linear.weight": np.zeros((8, 4), np.float32)},
    )
    with pytest.raises(AdapterError, match="keep the documents' dimension"):
        load_llamaindex_adapter(wide)
    tanh = _save_llamaindex(
        tmp_path / "tanh",
        {"in_features": 4, "hidden_features": 2, "out_features": 4, "activation_fn_str": "tanh"},
        {"linear1.weight": np.zeros((2, 4), np.float32)},
    )
    with pytest.raises(AdapterError, match="tanh"):
        load_llamaindex_adapter(tanh)


def test_export_matrix_pair_reproduces_the_adapter(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    low_rank = Adapter(
        type="low_rank",
        params={"down": rng.normal(size=(4, DIM)), "up": rng.normal(size=(DIM, 4))},
        dim=DIM,
        base_model={"id": "toy"},
    )
    q = rng.normal(size=(6, DIM)).astype(np.float32)
    for adapter in (scrambling_adapter("toy"), low_rank, Adapter.identity(DIM)):
        files = export_adapter(adapter, tmp_path / adapter.type, format="npy")
        assert {f.name for f in files} == {"weight.npy", "bias.npy", "adapter_export.json"}
        w = np.load(tmp_path / adapter.type / "weight.npy")
        b = np.load(tmp_path / adapter.type / "bias.npy")
        out = q @ w.T + b
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        np.testing.assert_allclose(out, adapter.transform(q), rtol=1e-4, atol=1e-5)
    info = json.loads((tmp_path / "low_rank" / "adapter_export.json").read_text())
    assert info["type"] == "affine" and info["base_model"]["id"] == "toy"

    from safetensors.numpy import load_file

    export_adapter(low_rank, tmp_path / "st", format="safetensors")
    pair = load_file(str(tmp_path / "st" / "adapter_matrix.safetensors"))
    np.testing.assert_allclose(pair["weight"], adapter_matrix(low_rank)[0])

    mlp = random_mlp_adapter(rng)
    with pytest.raises(AdapterError, match="not a matrix"):
        adapter_matrix(mlp)
    names = {f.name for f in export_adapter(mlp, tmp_path / "mlp")}
    assert "in_weight.npy" in names and "out_bias.npy" in names
    with pytest.raises(AdapterError, match="unknown export format"):
        export_adapter(mlp, tmp_path / "x", format="tflite")


@pytest.mark.parametrize("kind", ["linear", "residual_mlp"])
def test_export_to_llamaindex_and_back(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    if kind == "linear":
        adapter = scrambling_adapter("toy")
    else:
        adapter = random_mlp_adapter(rng)
    export_adapter(adapter, tmp_path / "li", format="llamaindex")
    back = load_llamaindex_adapter(tmp_path / "li")
    q = rng.normal(size=(4, DIM)).astype(np.float32)
    a, b = adapter.transform(q), back.transform(q)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)  # LlamaIndex does not normalise
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- the core stays free of the frameworks -----------------------------------------------------


def test_core_never_imports_frameworks() -> None:
    code = (
        "import sys, queryfit, queryfit.api, queryfit.cli, queryfit.adapted\n"
        "import queryfit.adapters.convert\n"
        "from queryfit.embedders import get_embedder\n"
        "get_embedder('openai:m', base_url='http://127.0.0.1:1/v1', dim=4)\n"
        "get_embedder('cohere:m', base_url='http://127.0.0.1:1', dim=4)\n"
        "bad = [m for m in sys.modules if m.startswith(('llama_index', 'langchain', 'litellm'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_framework_is_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from queryfit.errors import QueryfitError
    from queryfit.integrations import MissingExtraError

    monkeypatch.setitem(sys.modules, "langchain_core", None)
    monkeypatch.delitem(sys.modules, "queryfit.integrations.langchain", raising=False)
    with pytest.raises(MissingExtraError, match=r"queryfit\[langchain\]") as info:
        importlib.import_module("queryfit.integrations.langchain")
    assert isinstance(info.value, QueryfitError) and isinstance(info.value, ImportError)
    monkeypatch.delitem(sys.modules, "queryfit.integrations.langchain", raising=False)
    assert adapted_module  # the core module imported fine above
