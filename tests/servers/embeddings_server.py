"""A real HTTP embeddings server on 127.0.0.1 for tests and benchmarks (stdlib only).

Speaks three protocols with one deterministic toy model (hashed bag of words):

* OpenAI-compatible ``POST /v1/embeddings`` (``model``, ``input``, optional ``dimensions``) and
  Voyage's, which is the same path plus ``input_type`` / ``output_dimension``;
* Cohere's ``POST /v1/embed`` and ``POST /v2/embed`` (``texts``, ``input_type``).

Failures are scripted: ``server.script([...])`` queues actions consumed one per request:
``"429"`` (with ``Retry-After``), ``"500"``, ``"malformed"`` (invalid JSON), ``"wrong_dim"``,
``"short"`` (fewer vectors than inputs), ``"slow"`` (sleeps ``slow_seconds``), ``"401"``, ``"400"``,
or ``"ok"``. Every request is recorded (path, headers, JSON body).

``echo_headers="json"`` (or ``"text"``) makes every error answer echo the request's headers in
its body, credentials first, the way some proxies answer a rejected key: clients must mask them.

Query and document vectors differ when ``input_type`` says so, so tests can see the right type
was sent: a query vector gets a marker added in its last component.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from servers.echo import error_body

DEFAULT_DIM = 32


def toy_vector(text: str, dim: int = DEFAULT_DIM) -> np.ndarray:
    """Hashed bag of words: deterministic, instant, and similar texts get similar vectors."""
    out = np.zeros(dim, dtype=np.float64)
    for word in text.lower().split():
        digest = hashlib.md5(word.strip(".,?!:;").encode()).digest()
        out[int.from_bytes(digest[:4], "little") % dim] += 1.0
    return out + 1e-3


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ServerState:
    dim: int = DEFAULT_DIM
    retry_after: str | None = "0"
    retry_after_ms: str | None = None  # also sent with a 429, like OpenAI and Azure do
    slow_seconds: float = 2.0
    latency: float = 0.0  # seconds added to every request, to model a network round trip
    max_inputs: int | None = None  # reject bigger requests with 400, like a real provider
    required_key: str | None = None  # expected bearer / api-key value, if any
    echo_headers: str | None = None  # "json" / "text": error bodies echo the request headers
    actions: deque = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """An error answer; with ``echo_headers`` its body repeats the request's headers."""
        mode = self.server.state.echo_headers
        payload, kind = error_body(status, message, self.headers.items(), mode)
        return self._send(status, payload, headers, kind)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with state.lock:
            state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
            action = state.actions.popleft() if state.actions else "ok"
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._answer(state, body, action)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(self, state: ServerState, body: Any, action: str) -> None:
        path = self.path.split("?")[0]
        if state.required_key is not None:
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            given = given or self.headers.get("api-key", "")
            if given != state.required_key:
                return self._error(401, "invalid api key")
        if action == "429":
            headers = {"Retry-After": state.retry_after} if state.retry_after is not None else {}
            if state.retry_after_ms is not None:
                headers["retry-after-ms"] = state.retry_after_ms
            return self._error(429, "rate limited", headers)
        if action == "500":
            return self._error(500, "internal error")
        if action == "401":
            return self._error(401, "invalid api key")
        if action == "400":
            return self._error(400, "bad request")
        if action == "malformed":
            return self._send(200, b'{"data": [{"embedding": [0.1, ')
        if action == "slow":
            time.sleep(state.slow_seconds)
        if state.latency:
            time.sleep(state.latency)
        if not isinstance(body, dict):
            return self._send(400, {"error": {"message": "body is not JSON"}})

        openai_like = path == "/v1/embeddings" or (
            path.startswith("/openai/deployments/") and path.endswith("/embeddings")
        )
        if openai_like:
            texts = body.get("input")
            if isinstance(texts, str):
                texts = [texts]
            dim = body.get("dimensions") or body.get("output_dimension") or state.dim
            input_type = body.get("input_type")
        elif path in ("/v1/embed", "/v2/embed"):
            texts = body.get("texts")
            dim = body.get("output_dimension") or state.dim
            input_type = body.get("input_type")
        else:
            return self._send(404, {"error": {"message": f"no route {path}"}})
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._send(400, {"error": {"message": "input must be a list of strings"}})
        if state.max_inputs is not None and len(texts) > state.max_inputs:
            return self._send(400, {"error": {"message": f"at most {state.max_inputs} inputs"}})
        if action == "wrong_dim":
            dim += 3
        vectors = []
        for text in texts:
            v = toy_vector(text, dim)
            if input_type in ("query", "search_query"):
                v[-1] += 5.0
            vectors.append([round(float(x), 6) for x in v])
        if action == "short":
            vectors = vectors[:-1]
        if path.endswith("/embed"):
            wants_types = bool(body.get("embedding_types"))
            embeddings: Any = {"float": vectors} if wants_types else vectors
            return self._send(200, {"id": "x", "embeddings": embeddings, "texts": texts})
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        # Out of order on purpose: clients must sort by index.
        data.reverse()
        return self._send(200, {"object": "list", "data": data, "model": body.get("model")})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is part of the script, not a server failure.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class EmbeddingsServer:
    """Start with ``with EmbeddingsServer() as server:``; ``server.url`` is ``http://127.0.0.1:P``."""

    def __init__(self, **state: Any) -> None:
        self.state = ServerState(**state)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, actions: list[str]) -> None:
        """Queue actions, one per coming request; ``"ok"`` afterwards."""
        with self.state.lock:
            self.state.actions.extend(actions)

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    def reset(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
            self.state.actions.clear()
            self.state.max_in_flight = 0

    def start(self) -> EmbeddingsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> EmbeddingsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
