"""``queryfit serve``: a real uvicorn server on 127.0.0.1 driven by the official ``openai`` client.

In-process servers (a thread, any free port) in front of the bundled MiniLM and in front of the
toy OpenAI-compatible upstream; one ``python -m queryfit serve`` subprocess for SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from servers.embeddings_server import EmbeddingsServer, toy_vector

from queryfit.adapted import AdaptedEmbedder
from queryfit.adapters import Adapter, save_adapter
from queryfit.serve import BackgroundServer, MicroBatcher, ServeConfig, create_app, load_model

KEY = "test-serve-key-0123"
NAME = "support-bot"
MINILM = "sentence-transformers:all-MiniLM-L6-v2"
QUERIES = ["how do I reset my password?", "what is the refund window", "ship to Canada?"]
DOCS = ["Passwords are reset from the account page.", "Refunds are accepted within 30 days."]


def linear_adapter(model_id: str, dim: int, seed: int = 0, **base: str) -> Adapter:
    rng = np.random.default_rng(seed)
    weight = np.eye(dim, dtype=np.float32) + 0.2 * rng.normal(size=(dim, dim)).astype(np.float32)
    bias = 0.05 * rng.normal(size=dim).astype(np.float32)
    return Adapter(
        type="linear",
        params={"weight": weight, "bias": bias},
        dim=dim,
        base_model={"id": model_id, **base},
    )


def vectors(response) -> np.ndarray:
    """The answer's vectors; base64 ones (when asked for explicitly) are little-endian float32."""
    rows = [
        np.frombuffer(base64.b64decode(e), "<f4") if isinstance(e, str) else np.array(e)
        for e in (item.embedding for item in response.data)
    ]
    return np.stack(rows).astype(np.float64)


# -- the bundled local model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve") / NAME
    save_adapter(linear_adapter(MINILM, 384, query_prefix="query: "), folder)
    model = load_model(folder)
    config = ServeConfig(
        name=NAME, api_key=KEY, max_inputs=8, max_body_bytes=64 * 1024, max_wait_ms=20
    )
    with BackgroundServer(create_app(model, config)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
        yield server, client, AdaptedEmbedder.from_pretrained(folder)


def test_models_lists_the_query_and_the_document_id(local):
    _, client, _ = local
    assert [m.id for m in client.models.list().data] == [NAME, f"{NAME}-document"]
    assert client.models.retrieve(f"{NAME}-document").owned_by == "queryfit"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_queries_are_adapted_and_documents_are_the_base_vectors(local):
    _, client, reference = local
    adapted, base = reference.embed_queries(QUERIES), reference.embed_documents(DOCS)
    assert not np.allclose(adapted, reference.base.embed_queries(QUERIES), atol=1e-3)
    # the client's default asks for base64; float is the other encoding
    for fmt in ("base64", "float"):
        got = client.embeddings.create(model=NAME, input=QUERIES, encoding_format=fmt)
        np.testing.assert_allclose(vectors(got), adapted, atol=1e-6)
        assert got.model == NAME and [d.index for d in got.data] == [0, 1, 2]
    np.testing.assert_allclose(
        vectors(client.embeddings.create(model=f"{NAME}-document", input=DOCS)), base, atol=1e-6
    )
    one = client.embeddings.create(model=NAME, input=QUERIES[0])
    np.testing.assert_allclose(vectors(one)[0], adapted[0], atol=1e-6)
    # input_type decides over the model id (Cohere/Voyage convention)
    as_docs = client.embeddings.create(
        model=NAME, input=DOCS, extra_body={"input_type": "document"}
    )
    np.testing.assert_allclose(vectors(as_docs), base, atol=1e-6)
    as_queries = client.embeddings.create(
        model=f"{NAME}-document", input=QUERIES, extra_body={"input_type": "query"}
    )
    np.testing.assert_allclose(vectors(as_queries), adapted, atol=1e-6)
    # usage counts the model's own tokens, prefix and special tokens included
    tokenizer = reference.base.model.tokenizer
    expected = sum(len(tokenizer("query: " + q)["input_ids"]) for q in QUERIES)
    assert got.usage.prompt_tokens == got.usage.total_tokens == expected


def test_concurrent_requests_share_model_calls(local):
    server, client, reference = local
    texts = [f"question number {i} about invoices and refunds" for i in range(16)]
    expected = reference.embed_queries(texts)
    before = httpx.get(server.url + "/health").json()
    barrier = threading.Barrier(len(texts))
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        barrier.wait()
        results[i] = vectors(client.embeddings.create(model=NAME, input=texts[i]))[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(len(texts)))
    np.testing.assert_allclose(np.stack([results[i] for i in range(16)]), expected, atol=1e-6)
    after = httpx.get(server.url + "/health").json()
    assert after["requests"] - before["requests"] == 16
    assert after["model_calls"] - before["model_calls"] < 16  # batched, not one call each
    assert after["largest_call"] > 1


def test_a_bearer_token_is_required(local):
    server, _, _ = local
    for key in ("wrong-key", ""):
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key=key or "x", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.embeddings.create(model=NAME, input="hello")
        assert info.value.status_code == 401 and "--api-key" in info.value.message
    assert (
        httpx.post(server.url + "/v1/embeddings", json={"model": NAME, "input": "x"}).status_code
        == 401
    )
    assert httpx.get(server.url + "/v1/models").status_code == 401
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["models"] == [NAME, f"{NAME}-document"]
    assert KEY not in health.text


BAD_REQUESTS = [
    (b"{", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    ({"input": "x"}, 400, "'model' is required"),
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "does not exist here"),
    ({"model": NAME}, 400, "'input' is required"),
    ({"model": NAME, "input": []}, 400, "empty list"),
    ({"model": NAME, "input": 42}, 400, "a string or a list of strings"),
    ({"model": NAME, "input": ["a", None]}, 400, "'input[1]' is NoneType, not a string"),
    ({"model": NAME, "input": [[101, 2023]]}, 400, "token arrays are not supported"),
    ({"model": NAME, "input": ["a", ""]}, 400, "'input[1]' is an empty string"),
    ({"model": NAME, "input": ["q"] * 9}, 400, "limit of 8 per request"),
    ({"model": NAME, "input": "x", "dimensions": 128}, 400, "'dimensions' is not supported"),
    ({"model": NAME, "input": "x", "encoding_format": "int8"}, 400, "'float' or 'base64'"),
    ({"model": NAME, "input": "x", "input_type": "image"}, 400, "'query' or 'document'"),
    ({"model": NAME, "input": "x" * 70_000}, 413, "limit of 65,536 bytes"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_one_line_openai_errors(local, body, status, message):
    server, _, _ = local
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        server.url + "/v1/embeddings",
        content=content,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and "\n" not in error["message"]
    assert error["type"] == "invalid_request_error" and set(error) == {
        "message",
        "type",
        "param",
        "code",
    }


def test_openai_client_sees_its_usual_exceptions(local):
    server, client, reference = local
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=NAME, input="x", dimensions=128)
    # asking for the model's own size changes nothing, so it is accepted
    same = client.embeddings.create(model=NAME, input=QUERIES[0], dimensions=384)
    np.testing.assert_allclose(vectors(same)[0], reference.embed_query(QUERIES[0]), atol=1e-6)
    for method, path, status in (("GET", "/v2/nothing", 404), ("GET", "/v1/embeddings", 405)):
        response = httpx.request(method, server.url + path)
        assert response.status_code == status and "message" in response.json()["error"]


# -- the micro-batcher alone -----------------------------------------------------------------


class Recorder:
    """An embed function that records its calls: vector i of a text is ``[len(text), kind]``."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[str], str]] = []
        self.fail = fail

    def __call__(self, texts, kind):
        self.calls.append((list(texts), kind))
        if self.fail:
            raise RuntimeError("model fell over")
        time.sleep(0.01)
        vecs = np.array([[len(t), 1.0 if kind == "query" else 2.0] for t in texts], np.float32)
        return vecs, [len(t) for t in texts]


def run_jobs(batcher, jobs):
    async def main():
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.embed(texts, kind) for texts, kind in jobs), return_exceptions=True
            )
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_batcher_coalesces_concurrent_jobs_in_order():
    fn = Recorder()
    jobs = [([f"t{i}" + "x" * i], "query") for i in range(10)]
    results = run_jobs(MicroBatcher(fn, max_batch=64, max_wait=0.05), jobs)
    assert len(fn.calls) == 1 and fn.calls[0][0] == [texts[0] for texts, _ in jobs]
    for (texts, _), (vecs, tokens) in zip(jobs, results, strict=True):
        assert vecs.shape == (1, 2) and vecs[0, 0] == len(texts[0]) and tokens == [len(texts[0])]


def test_batcher_bounds_calls_never_splits_a_request_and_separates_kinds():
    fn = Recorder()
    jobs = [([f"q{i}-{j}" for j in range(3)], "query") for i in range(6)]
    jobs += [([f"big{j}" for j in range(20)], "query"), (["d1", "d2"], "document")]
    results = run_jobs(MicroBatcher(fn, max_batch=8, max_wait=0.05), jobs)
    sizes = [len(texts) for texts, _ in fn.calls]
    assert 20 in sizes and all(s <= 8 for s in sizes if s != 20)
    assert all(len({t[:1] for t in texts}) == 1 or kind == "query" for texts, kind in fn.calls)
    assert [kind for texts, kind in fn.calls if "d1" in texts] == ["document"]
    assert sum(sizes) == sum(len(t) for t, _ in jobs)
    for (texts, kind), (vecs, _) in zip(jobs, results, strict=True):
        assert list(vecs[:, 0]) == [len(t) for t in texts]
        assert set(vecs[:, 1]) == {1.0 if kind == "query" else 2.0}


def test_batcher_never_makes_a_lone_client_wait():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_wait=600.0)  # a wait would outlast the test's timeout

    async def main():
        await batcher.start()
        try:
            for text in ("a", "bb", "ccc"):  # one at a time, as a sequential client sends them
                vecs, _ = await asyncio.wait_for(batcher.embed([text], "query"), timeout=30)
                assert vecs[0, 0] == len(text)
        finally:
            await batcher.close()

    asyncio.run(main())
    assert [texts for texts, _ in fn.calls] == [["a"], ["bb"], ["ccc"]]


def test_batcher_failure_reaches_every_request_of_the_batch():
    results = run_jobs(MicroBatcher(Recorder(fail=True), max_wait=0.05), [(["a"], "query")] * 3)
    assert all(isinstance(r, RuntimeError) for r in results)


# -- in front of an OpenAI-compatible upstream ---------------------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with EmbeddingsServer() as toy:
        folder = tmp_path_factory.mktemp("serve-up") / "toy-bot"
        adapter = linear_adapter("openai:toy", 32, seed=3)
        save_adapter(adapter, folder)
        model = load_model(folder, base_url=toy.url + "/v1", upstream_retries=0)
        with BackgroundServer(create_app(model, ServeConfig(name="toy-bot"))) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
            yield toy, client, adapter


def test_upstream_vectors_get_the_adapter_on_queries_only(upstream):
    toy, client, adapter = upstream
    toy.reset()
    q = vectors(client.embeddings.create(model="toy-bot", input=QUERIES))
    d = vectors(client.embeddings.create(model="toy-bot-document", input=DOCS))
    toy_q = np.stack([toy_vector(t) for t in QUERIES]).astype(np.float32)
    np.testing.assert_allclose(q, adapter.transform(toy_q), atol=1e-5)
    np.testing.assert_allclose(d, np.stack([toy_vector(t) for t in DOCS]), atol=1e-5)
    assert [r.body["input"] for r in toy.requests] == [QUERIES, DOCS]


@pytest.mark.parametrize(("action", "reason"), [("500", "HTTP 500"), ("401", "HTTP 401")])
def test_a_failing_upstream_gives_502_with_the_reason(upstream, action, reason):
    toy, client, adapter = upstream
    toy.script([action])
    with pytest.raises(openai.InternalServerError) as info:
        client.embeddings.create(model="toy-bot", input="a question")
    assert info.value.status_code == 502 and reason in info.value.message
    assert info.value.code == "upstream_error"
    ok = client.embeddings.create(model="toy-bot", input="a question")  # the server recovers
    np.testing.assert_allclose(
        vectors(ok)[0], adapter.transform(toy_vector("a question").astype(np.float32)), atol=1e-5
    )


# -- the command ---------------------------------------------------------------------------


def queryfit(*args: str, **kwargs) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1", **kwargs.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "queryfit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def read_json_object(stream) -> dict:
    lines = []
    for line in stream:
        lines.append(line)
        if line.startswith("}"):
            return json.loads("".join(lines))
    raise AssertionError(f"no JSON object on stdout: {''.join(lines)!r}")


def test_cli_serves_then_drains_in_flight_requests_on_sigterm(tmp_path):
    folder = tmp_path / "toy-bot"
    adapter = linear_adapter("openai:toy", 32, seed=5)
    save_adapter(adapter, folder)
    with EmbeddingsServer(slow_seconds=1.5) as toy:
        args = ("serve", "--adapter", str(folder), "--base-url", toy.url + "/v1", "--port", "0")
        proc = queryfit(*args, "--json", env={"QUERYFIT_SERVE_API_KEY": KEY})
        try:
            info = read_json_object(proc.stdout)
            assert info["models"] == {"query": "toy-bot", "document": "toy-bot-document"}
            assert info["auth"] is True and info["url"].startswith("http://127.0.0.1:")
            client = openai.OpenAI(base_url=info["url"], api_key=KEY, max_retries=0)
            toy.script(["slow"])  # the next upstream call takes 1.5 s
            answer: dict = {}
            request = threading.Thread(
                target=lambda: answer.update(r=client.embeddings.create(model="toy-bot", input="q"))
            )
            request.start()
            deadline = time.monotonic() + 30
            while not any(r.body and r.body.get("input") == ["q"] for r in toy.requests):
                assert time.monotonic() < deadline, "the request never reached the upstream"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)  # while the request is in flight
            request.join(30)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    np.testing.assert_allclose(
        vectors(answer["r"])[0], adapter.transform(toy_vector("q").astype(np.float32)), atol=1e-5
    )
    assert proc.returncode == 0, err
    assert out == "" and "Traceback" not in err and KEY not in err


def test_cli_refuses_bad_settings_in_one_line(tmp_path):
    folder = tmp_path / "bot"
    save_adapter(linear_adapter(MINILM, 384), folder)
    cases = [
        (["--adapter", str(tmp_path / "missing")], "is not an adapter folder"),
        (["--adapter", str(folder), "--base-url", "http://127.0.0.1:9/v1"], "apply to API models"),
        (["--adapter", str(folder), "--max-batch", "0"], "--max-batch must be a positive"),
        (
            [
                "--adapter",
                str(folder),
                "--model",
                "openai:other",
                "--base-url",
                "http://127.0.0.1:9",
            ],
            "was trained for sentence-transformers:all-MiniLM-L6-v2, not openai:other",
        ),
    ]
    for args, message in cases:
        proc = queryfit("serve", *args)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # without the serve extra: named at once, before any model loads
    no_fastapi = "import sys; sys.modules['fastapi'] = None; from queryfit.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", no_fastapi, "serve", "--adapter", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "pip install 'queryfit[serve]'" in proc.stderr
    assert "Traceback" not in proc.stderr
