"""The Ray backend of embed and generate, on a real local Ray instance (``num_cpus=2``).

One Ray instance serves the whole module. Embedding goes to a real HTTP embeddings server (and,
in the slow test, the bundled MiniLM) from Ray actors; generation runs the heuristic generator
and an OpenAI-compatible chat server. Every result is compared with the local backend's, and
the store / journal written on Ray is checked to be the one a local rerun (or a resumed run)
reads.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from servers.chat_server import ChatServer
from servers.embeddings_server import EmbeddingsServer
from typer.testing import CliRunner

from queryfit import api
from queryfit.cli import app
from queryfit.data import QADataset, save_dataset
from queryfit.distributed import RayBackend, resolve_backend
from queryfit.embedders import get_embedder
from queryfit.errors import BackendError, EmbedderError, GenerationError
from queryfit.generation import generate
from queryfit.generation.documents import Document, chunk_documents
from queryfit.store import EmbeddingStore
from queryfit.vectors import embed_dataset

KEY = "sk-ray-test-SECRET-0123456789"
PROBE = "dimension probe"  # the HTTP embedder's one request to learn the vector size


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module; workers inherit this environment (the key)."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUERYFIT_LLM_API_KEY", KEY)
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "QUERYFIT_LLM_BASE_URL", "RAY_ADDRESS"):
            mp.delenv(name, raising=False)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 * 1024**2,
            logging_level=logging.WARNING,
        )
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def embed_server():
    with EmbeddingsServer() as server:
        yield server


def dataset(n_docs: int = 40, n_queries: int = 30) -> QADataset:
    corpus = {
        f"d{i}": f"passage {i} about topic {i % 7} and the item {i * 13}" for i in range(n_docs)
    }
    queries = {
        f"q{i}": f"which passage covers topic {i % 7} item {i * 13}" for i in range(n_queries)
    }
    return QADataset(
        queries=queries, corpus=corpus, relevant_docs={f"q{i}": [f"d{i}"] for i in range(n_queries)}
    )


def sent_texts(server: EmbeddingsServer) -> list[str]:
    return [t for r in server.requests for t in r.body["input"] if t != PROBE]


# -- settings, checked before any work ------------------------------------------------------


def test_backend_settings_and_secrets_are_refused_with_the_fix(tmp_path):
    with pytest.raises(BackendError, match="--backend must be local or ray"):
        resolve_backend("spark")
    with pytest.raises(BackendError, match="need --backend ray"):
        resolve_backend("local", address="auto")
    with pytest.raises(BackendError, match="--ray-workers must be at least 1"):
        RayBackend(workers=0)
    assert resolve_backend("ray", address="auto", workers=3) == RayBackend("auto", 3)
    data = dataset(4, 2)
    with EmbeddingStore(tmp_path / "s.sqlite") as store:
        embedder = get_embedder(lambda t: np.ones((len(t), 3)), model_id="fn")
        with pytest.raises(BackendError, match="spec string .* not a CallableEmbedder"):
            api.embed(data, model=embedder, store=store, backend="ray")
        with pytest.raises(BackendError, match=r"not sent to Ray workers.*\$OPENAI_API_KEY") as e:
            api.embed(data, model="openai:m", model_options={"api_key": KEY}, store=store,
                      backend="ray")  # fmt: skip
        assert KEY not in str(e.value)
    with pytest.raises(BackendError, match="not sent to Ray workers"):
        generate(passages(2), llm="openai:m", base_url="http://127.0.0.1:9/v1", api_key=KEY,
                 journal=tmp_path / "j.jsonl", backend="ray", progress=False)  # fmt: skip


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when not installed
    with pytest.raises(BackendError, match=r"pip install 'queryfit\[ray\]'"):
        api.embed(dataset(4, 2), model="openai:m", store=tmp_path / "s.sqlite", backend="ray")


# -- embedding ------------------------------------------------------------------------------


def test_ray_embeds_only_what_the_store_lacks_and_equals_local(ray_local, embed_server, tmp_path):
    data = dataset()
    model, options = "openai:toy-embed", {"base_url": f"{embed_server.url}/v1", "batch_size": 8}
    local = get_embedder(model, **options)
    texts = list(data.corpus.values()) + list(data.queries.values())
    with EmbeddingStore(tmp_path / "local.sqlite") as store:
        want = embed_dataset(data, local, store, progress=False)
    with EmbeddingStore(tmp_path / "ray.sqlite") as store:
        # A run that stopped half-way through the passages: 20 of them are stored already.
        store.embed(local, texts[:20], "document", progress=False)
        embed_server.reset()
        report = api.embed(
            data, model=model, model_options=options, store=store, backend="ray", progress=False
        )
        assert report.texts_embedded == len(texts) - 20 and report.texts_from_store == 20
        assert report.model_id == local.model_id and report.model_calls >= 2
        # The workers sent exactly the missing texts, each once.
        assert sorted(sent_texts(embed_server)) == sorted(texts[20:])
        # The store now serves everything locally, with the local backend's vectors.
        embed_server.reset()
        store.stats.reset()
        got = embed_dataset(data, local, store, progress=False)
        assert store.stats.model_calls == 0 and sent_texts(embed_server) == []
    assert np.array_equal(got.docs, want.docs) and np.array_equal(got.queries, want.queries)


@pytest.mark.slow
def test_a_run_stopped_by_a_worker_error_keeps_its_batches_and_resumes(
    ray_local, embed_server, tmp_path
):
    data = dataset(40, 8)
    model = "openai:toy-embed"
    # One request of 8 texts per store batch, and one worker: the batches go in order.
    options = {"base_url": f"{embed_server.url}/v1", "batch_size": 8, "concurrency": 1}
    texts = list(data.corpus.values()) + list(data.queries.values())
    embed_server.reset()
    # Two size probes (one to key the store, one in the worker) and the first batch are
    # answered; then the provider refuses the key.
    embed_server.script(["ok"] * 3 + ["401"] * 20)
    with EmbeddingStore(tmp_path / "ray.sqlite") as store:
        with pytest.raises(EmbedderError, match=r"^on a Ray worker: .*HTTP 401"):
            api.embed(data, model=model, model_options=options, store=store, progress=False,
                      backend=RayBackend(workers=1))  # fmt: skip
        assert store.count() == 8  # the answered batch was committed as it arrived
        stored = set(sent_texts(embed_server)[:8])
        embed_server.reset()
        report = api.embed(
            data, model=model, model_options=options, store=store, backend="ray", progress=False
        )
        assert report.texts_from_store == 8 and report.texts_embedded == len(texts) - 8
        assert sorted(sent_texts(embed_server)) == sorted(set(texts) - stored)


def test_a_model_missing_on_the_workers_is_one_line(ray_local, tmp_path):
    with pytest.raises(EmbedderError, match=r"^on a Ray worker: model folder /nonexistent/m"):
        api.embed(dataset(4, 2), model="sentence-transformers:/nonexistent/m",
                  store=tmp_path / "s.sqlite", backend="ray", progress=False)  # fmt: skip


@pytest.mark.slow
def test_ray_embeds_with_minilm_like_the_local_backend(ray_local, tmp_path):
    data = dataset(48, 24)
    options = {"batch_size": 16}
    with EmbeddingStore(tmp_path / "ray.sqlite") as store:
        report = api.embed(data, model_options=options, store=store, backend="ray", progress=False)
        assert report.texts_embedded == 72 and report.model_calls >= 2
        local = get_embedder(None, **options)
        store.stats.reset()
        got = embed_dataset(data, local, store, progress=False)
        assert store.stats.model_calls == 0  # warm: the workers wrote under the local key
    with EmbeddingStore(tmp_path / "local.sqlite") as store:
        want = embed_dataset(data, local, store, progress=False)
    # Same model, same batches; the workers run torch on 1 thread (Ray's OMP_NUM_THREADS), this
    # process on more, which may change the last bit of a float32 sum.
    np.testing.assert_allclose(got.docs, want.docs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.queries, want.queries, rtol=0, atol=1e-6)


# -- generation -----------------------------------------------------------------------------


def passages(n: int):
    words = ["calcination", "fermentation", "oxidation", "distillation", "sublimation",
             "filtration", "hydrolysis", "pasteurization", "crystallization", "electrolysis",
             "condensation", "evaporation", "polymerization", "combustion"]  # fmt: skip
    texts = [
        f"Document {i} explains the {w} process in detail. Engineers at site {i} measure {w} "
        f"rates every single day. Each {w} sample is stored in vault {i * 11} for later review."
        for i, w in enumerate(words[:n])
    ]
    return chunk_documents([Document(f"doc{i}.txt", t) for i, t in enumerate(texts)])


def same_dataset(a: QADataset, b: QADataset) -> bool:
    return (a.queries, a.corpus, a.relevant_docs) == (b.queries, b.corpus, b.relevant_docs)


def test_ray_generation_equals_local_and_resumes_a_local_journal(ray_local, tmp_path):
    items = passages(12)
    want = generate(items, llm="heuristic", journal=tmp_path / "local.jsonl", progress=False)
    journal = tmp_path / "ray.jsonl"
    # A local run stopped after 5 passages; the Ray run finishes the other 7 in the same journal.
    generate(items[:5], llm="heuristic", journal=journal, progress=False)
    got = generate(items, llm="heuristic", journal=journal, backend="ray", progress=False)
    assert got.stats.from_journal == 5 and got.stats.generated == 7 and not got.stats.failed
    assert got.stats.requests == 7  # as locally: one "request" per passage for a model-less writer
    assert same_dataset(got.dataset, want.dataset) and got.pairs > 0
    again = generate(items, llm="heuristic", journal=journal, backend="ray", progress=False)
    assert again.stats.from_journal == 12 and again.stats.generated == 0
    assert same_dataset(again.dataset, want.dataset)
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 12  # the header, then each passage once


@pytest.mark.slow
def test_ray_generation_with_an_llm_records_failures_and_resumes(ray_local, tmp_path):
    items = passages(10)
    options = {"llm": "openai:test-model", "max_retries": 0, "concurrency": 2, "progress": False}
    with ChatServer() as server:
        base = {"base_url": server.base_url}
        want = generate(items, journal=tmp_path / "local.jsonl", **base, **options)
        assert want.stats.generated == 10
        server.requests.clear()
        server.script(["500", "500"])  # the first two requests fail; no retries
        journal = tmp_path / "ray.jsonl"
        first = generate(items, journal=journal, backend="ray", **base, **options)
        assert first.stats.failed == 2 and first.stats.failures == {"HTTP 500": 2}
        assert first.stats.generated == 8 and first.stats.requests == 10
        assert len(server.requests) == 10
        # The workers read the key from their own environment; it reached the server only.
        assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
        second = generate(items, journal=journal, backend="ray", **base, **options)
        assert second.stats.from_journal == 8 and second.stats.generated == 2
        assert len(server.requests) == 12  # only the two failed passages were asked again
        # What retrying cannot fix (a refused key) stops the run with the worker's one line.
        server.script(["401"] * 4)
        with pytest.raises(GenerationError, match=r"^on a Ray worker: .*HTTP 401") as err:
            generate(items, journal=tmp_path / "refused.jsonl", backend="ray", **base, **options)
        assert KEY not in str(err.value)
    assert same_dataset(second.dataset, want.dataset)
    assert KEY not in journal.read_text() and KEY not in json.dumps(second.to_dict())


# -- command line ---------------------------------------------------------------------------


def test_cli_refuses_ray_flags_without_ray_and_keys_for_workers(tmp_path):
    data = tmp_path / "pairs.json"
    save_dataset(dataset(4, 2), data)
    args = ["embed", "--data", str(data), "--model", "openai:m", "--store", str(tmp_path / "s")]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--ray-address", "auto"])
    assert result.exit_code == 2 and "need --backend ray" in result.output
    result = runner.invoke(app, [*args, "--backend", "ray", "--api-key", KEY])
    assert result.exit_code == 2 and "not sent to Ray workers" in result.output
    result = runner.invoke(app, [*args, "--backend", "dask"])
    assert result.exit_code == 2 and "--backend must be local or ray" in result.output
    assert "Traceback" not in result.output and KEY not in result.output


@pytest.mark.slow
def test_cli_embed_on_ray_joins_the_running_instance(ray_local, embed_server, tmp_path):
    data = tmp_path / "pairs.json"
    save_dataset(dataset(12, 6), data)
    store = tmp_path / "s.sqlite"
    args = ["embed", "--data", str(data), "--model", "openai:toy-embed", "--store", str(store),
            "--base-url", f"{embed_server.url}/v1"]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--backend", "ray", "--ray-workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["texts_embedded"] == 18 and report["texts_from_store"] == 0
    result = runner.invoke(app, [*args, "--json"])  # the local backend finds it all stored
    assert json.loads(result.stdout)["model_calls"] == 0


@pytest.mark.slow
def test_cli_generate_on_ray_starts_its_own_instance_and_writes_the_local_dataset(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for p in passages(6):
        (docs / f"{p.id}.txt").write_text(p.text)
    outs = {}
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a new local instance
    for backend in ("local", "ray"):
        out = tmp_path / f"{backend}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "queryfit", "generate", "--docs", str(docs), "--out", str(out),
             "--llm", "heuristic", "--journal", str(tmp_path / f"{backend}.j"),
             "--backend", backend, "--json"],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["generation"]["generated"] == 6  # stdout: one object
        outs[backend] = out.read_text()
    assert outs["ray"] == outs["local"] and outs["ray"]
