"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

``POST /v1/chat/completions`` answers with questions about the passage found in the last user
message (between the ``-----`` rulers of queryfit's default prompt, else the whole message). The
questions are deterministic and built from the passage's own rarer words, so they pass queryfit's
filters, differ between passages, and let a test compare two runs exactly.

Failures are scripted: ``server.script([...])`` queues actions consumed one per request:

``"ok"``        numbered questions after a preamble ("Here are N questions:")
``"json"``      the questions as a JSON array in a code fence
``"junk"``      prose with no question in it
``"429"``       HTTP 429 with ``Retry-After: <retry_after>``
``"500"``       HTTP 500
``"hang"``      sleeps ``hang_seconds`` before answering (longer than the client's timeout)
``"401"``, ``"404"``, ``"400"``  the matching error
``"empty"``     a completion with empty content

``echo_headers="json"`` (or ``"text"``) makes every error answer echo the request's headers in its
body, credentials first, as some proxies do: queryfit must mask the key.

With the queue empty, ``default`` is used (``"ok"``). ``latency`` seconds are slept before every
answer, to mimic a model's generation time. Every request is recorded; ``max_in_flight`` is the
peak of concurrent requests seen.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers.echo import error_body

_STOP = set(
    """a an the and or but if of to in on at by for with from as is are was were be been it its
    this that these those which who what when where why how not no can could should would will
    than then so such into about over under between through during all each some more most other
    there their they them has have had do does did also only very""".split()
)


def passage_of(prompt: str) -> str:
    """The passage inside queryfit's default prompt (between the dashed rulers)."""
    parts = re.split(r"^-{5,}\s*$", prompt, flags=re.M)
    if len(parts) >= 3:
        return parts[1].strip()
    match = re.search(r"Text:\s*(.*)", prompt, flags=re.S)
    return (match.group(1) if match else prompt).strip()


def questions_for(passage: str, n: int) -> list[str]:
    """Deterministic, filter-proof questions about the passage's main word and a few others.

    The most frequent word (ties: the longest, then the first) is in every question, so
    questions about different passages differ; none copies more than two passage words in a
    row.
    """
    words: list[str] = []
    counts: dict[str, int] = {}
    for w in re.findall(r"[A-Za-z][A-Za-z0-9-]{3,}", passage):
        lw = w.lower()
        if lw not in _STOP:
            counts[lw] = counts.get(lw, 0) + 1
            if lw not in words:
                words.append(lw)
    if not words:
        words = ["this", "that"]
    key = sorted(range(len(words)), key=lambda i: (-counts.get(words[i], 0), -len(words[i]), i))[0]
    main, others = words[key], [w for w in words if w != words[key]] or ["it"]
    frames = [
        "What is known about {0} and {1}?",
        "How does {0} relate to {1}?",
        "Why does {0} matter for {1}?",
        "Which role does {0} play with {1}?",
        "When is {0} used together with {1}?",
    ]
    return [frames[i % len(frames)].format(main, others[i % len(others)]) for i in range(n)]


def n_requested(prompt: str) -> int:
    match = re.search(r"write (\d+)", prompt, flags=re.I)
    return int(match.group(1)) if match else 2


@dataclass
class Recorded:
    headers: dict[str, str]
    body: Any
    action: str


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (a rejected key stops the run) and hung up mid-request is part
        # of the script; printing its traceback would pollute the CLI output the tests read.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ChatServer:
    """Start with ``with ChatServer() as server:``; ``server.base_url`` ends in ``/v1``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        retry_after: float = 1,
        hang_seconds: float = 5.0,
        default: str = "ok",
        echo_headers: str | None = None,
    ) -> None:
        self.latency = latency
        self.echo_headers = echo_headers
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.default = default
        self.requests: list[Recorded] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, {"error": {"message": "invalid JSON"}})
                action = server._next_action()
                with server._lock:
                    server.requests.append(Recorded(dict(self.headers), body, action))
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._answer(body, action)
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _answer(self, body: dict[str, Any], action: str) -> None:
                if server.latency:
                    time.sleep(server.latency)
                prompt = body["messages"][-1]["content"]
                n = n_requested(prompt)
                questions = questions_for(passage_of(prompt), n)
                if action in ("429", "500", "400", "401", "404"):
                    messages = {
                        "429": "Rate limit reached",
                        "500": "internal error",
                        "400": "bad request",
                        # echoes the key, as some servers do: queryfit must mask it
                        "401": "Incorrect API key provided: "
                        + self.headers.get("Authorization", "").removeprefix("Bearer "),
                        "404": f"The model {body.get('model')} does not exist",
                    }
                    wait = {"Retry-After": f"{server.retry_after:g}"} if action == "429" else {}
                    return self._error(int(action), messages[action], wait)
                if action == "hang":
                    server._stop.wait(server.hang_seconds)
                if action == "junk":
                    text = "I am a language model and this is a lovely day for writing prose."
                elif action == "empty":
                    text = ""
                elif action == "json":
                    text = "```json\n" + json.dumps(questions) + "\n```"
                else:
                    listing = "\n".join(f"{i + 1}. {q}" for i, q in enumerate(questions))
                    text = f"Here are {n} questions:\n\n{listing}\n"
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 20},
                    },
                )

            def _error(self, status: int, message: str, headers: dict[str, str]) -> None:
                payload, kind = error_body(
                    status, message, self.headers.items(), server.echo_headers
                )
                return self._send(status, payload, headers, kind)

            def _send(
                self,
                status: int,
                payload: Any,
                headers: dict[str, str] | None = None,
                content_type: str = "application/json",
            ) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to do

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, actions: list[str]) -> None:
        with self._lock:
            self._queue.extend(actions)

    def _next_action(self) -> str:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if (
    __name__ == "__main__"
):  # a standalone server for manual tries: python tests/servers/chat_server.py
    import sys

    srv = ChatServer(latency=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0).start()
    print(srv.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
