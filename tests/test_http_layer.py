"""The one HTTP layer (queryfit._http) against a real server on 127.0.0.1, and warm reruns.

Retries, the server's pace (Retry-After, retry-after-ms, HTTP dates), the cap on a server wait,
fewer retries for a refused connection, stats under concurrency, the masking helper; and the
store keeping an unknown model's vector size so that a second *process* sends no request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from servers.embeddings_server import EmbeddingsServer

from queryfit._http import (
    MASK,
    HTTPClient,
    HTTPSettings,
    HTTPStatusError,
    RequestFailed,
    Retryable,
    header_secrets,
    mask_secrets,
    parse_retry_after,
    server_message,
    server_wait,
)
from queryfit.data import QADataset, save_dataset

SECRET = "sk-layer-SECRET-abcdef0123456789"


@pytest.fixture(scope="module")
def module_server():
    with EmbeddingsServer() as server:
        yield server


@pytest.fixture
def server(module_server: EmbeddingsServer) -> EmbeddingsServer:
    module_server.reset()
    state = module_server.state
    state.retry_after, state.retry_after_ms, state.echo_headers = "0", None, None
    return module_server


def post(client: HTTPClient, server: EmbeddingsServer, **kw):
    body = {"model": "toy", "input": ["a b"]}
    return client.post(f"{server.url}/v1/embeddings", body, parse=lambda r: r.json(), **kw)


# -- masking ----------------------------------------------------------------------------------


def test_mask_secrets_every_form_and_short_keys_only_as_words() -> None:
    key = "sk-a/b+c=d0123456789"
    text = f"bearer {key}; url {httpx.URL('http://x/?k=' + key)}; json {json.dumps(key)}"
    masked = mask_secrets(text, [key, None, ""])
    assert key not in masked and "sk-a%2Fb%2Bc%3Dd" not in masked
    assert masked.count(MASK) == 3
    assert mask_secrets(f"x{key}y", [key]) == f"x{MASK}y"  # a long key anywhere
    # A test key such as "k" is masked only as a word: "check" keeps its k.
    assert mask_secrets("check the key: k", ["k"]) == f"check the key: {MASK}"


def test_server_excerpt_is_masked_before_it_is_cut() -> None:
    # The key straddles the 200-character cut: cutting first would leave half of it.
    response = httpx.Response(401, text="x" * 190 + f"Bearer {SECRET} and more")
    said = server_message(response, [SECRET])
    assert SECRET[:8] not in said and MASK in said
    assert server_message(httpx.Response(401, json={"error": {"message": SECRET}}), [SECRET]) == (
        f": {MASK}"
    )


def test_header_secrets_names_every_credential_header() -> None:
    found = header_secrets(
        {"Authorization": "Bearer abc123", "api-key": "k2", "X-Api-Key": "k3", "Accept": "*/*"}
    )
    assert set(found) == {"Bearer abc123", "abc123", "k2", "k3"}


# -- the server's pace ------------------------------------------------------------------------


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
    later = parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 27 <= later <= 31
    assert server_wait({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert server_wait({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    assert server_wait({}) is None


def test_retry_after_ms_is_honoured_and_reported(server: EmbeddingsServer) -> None:
    server.state.retry_after, server.state.retry_after_ms = None, "300"
    server.script(["429", "500"])
    client = HTTPClient(HTTPSettings(backoff_base=0.0))
    waits: list[tuple[str, float]] = []
    assert post(client, server, on_wait=lambda r, s: waits.append((r, s)))["data"]
    assert waits == [("rate limited (HTTP 429)", 0.3), ("HTTP 500", 0.0)]
    s = client.stats
    assert (s.requests, s.retries, s.rate_limited) == (3, 2, 1) and s.waited_seconds == 0.3


def test_a_server_wait_beyond_the_cap_fails_at_once(server: EmbeddingsServer) -> None:
    server.state.retry_after = "600"
    server.script(["429"])
    started = time.perf_counter()
    with pytest.raises(RequestFailed) as info:
        post(HTTPClient(HTTPSettings(max_retry_wait=10)), server)
    assert time.perf_counter() - started < 2
    assert info.value.why == "server_wait" and "asks to wait 600s" in str(info.value)
    assert len(server.requests) == 1


def test_backoff_is_full_jitter_below_the_exponential_ceiling() -> None:
    client = HTTPClient(HTTPSettings(backoff_base=1.0, backoff_max=5.0))
    draws = [client._backoff(attempt, None) for attempt in (0, 3, 10) for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in draws[:200]) and all(0 <= d <= 5.0 for d in draws[200:])
    assert min(draws[400:]) < 1.0 < max(draws[400:])  # full jitter: anywhere below the cap
    assert client._backoff(3, 0.7) == 0.7  # the server's word wins


def test_refused_connection_gets_fewer_retries() -> None:
    client = HTTPClient(HTTPSettings(max_retries=6, backoff_base=0.0))
    with pytest.raises(RequestFailed) as info:
        client.post("http://127.0.0.1:9/v1/embeddings", {}, parse=lambda r: r)
    assert info.value.connect and info.value.tries == 3 and client.stats.requests == 3
    assert "cannot connect" in str(info.value)


def test_parse_may_ask_for_another_try_and_errors_pass_through(server: EmbeddingsServer) -> None:
    seen: list[int] = []

    def parse(response: httpx.Response) -> int:
        seen.append(response.status_code)
        if len(seen) == 1:
            raise Retryable("unparseable answer", "no questions")
        return len(seen)

    client = HTTPClient(HTTPSettings(backoff_base=0.0))
    assert client.post(f"{server.url}/v1/embeddings", {"input": ["a"]}, parse=parse) == 2
    server.script(["400"])
    with pytest.raises(HTTPStatusError) as info:
        post(client, server)
    assert info.value.status == 400 and info.value.said == ": bad request"


def test_stats_add_up_across_threads(server: EmbeddingsServer) -> None:
    client = HTTPClient(HTTPSettings(backoff_base=0.01), max_connections=8)
    server.script(["500", "429"] * 2)  # four retries, spread over the threads

    def work() -> None:
        for _ in range(5):
            post(client, server)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = client.stats
    assert s.requests == 24 == len(server.requests) and s.retries == 4 and s.rate_limited == 2


# -- a warm store sends nothing, across processes ---------------------------------------------


def test_second_process_with_an_unknown_model_makes_zero_requests(
    server: EmbeddingsServer, tmp_path: Path
) -> None:
    corpus = {f"d{i}": f"passage {i} on subject {i % 5}" for i in range(20)}
    queries = {f"q{i}": f"what about subject {i % 5} number {i}" for i in range(10)}
    save_dataset(
        QADataset(queries, corpus, {f"q{i}": [f"d{i}"] for i in range(10)}), tmp_path / "d.json"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(tmp_path / "store.sqlite")}
    # No --dimensions: the model's size is unknown, so a new process would probe for it.
    args = [sys.executable, "-m", "queryfit", "embed", "--data", "d.json", "--json"]
    args += ["--model", "openai:toy", "--base-url", f"{server.url}/v1"]

    def run() -> dict:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run()
    assert first["texts_embedded"] == 30 and len(server.requests) >= 2
    server.reset()
    second = run()
    assert second["model_calls"] == 0 and second["texts_from_store"] == 30
    assert server.requests == []  # no dimension probe either
