"""A client for any OpenAI-compatible chat-completions endpoint.

OpenAI itself, Ollama (``http://localhost:11434/v1``), vLLM, llama.cpp's server, LM Studio,
LiteLLM proxies...: all accept ``POST {base_url}/chat/completions``. :class:`ChatClient` sends one
conversation and returns the answer's text, with what a long generation run needs:

* a **per-request timeout**;
* **retries** with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections,
  honouring the server's ``Retry-After`` (or ``retry-after-ms``) on 429 and 503;
* immediate, explained failure on what retrying cannot fix (a rejected key, an unknown model);
* an ``on_wait`` hook so a progress bar can show rate-limit waits and retries as they happen.

Requests are synchronous and thread-safe (one pooled ``httpx.Client``): the caller decides the
concurrency. The API key is taken from the argument or the environment, sent in a header, and
never appears in ``repr``, error messages, logs or files.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from queryfit.embedders.http import RETRY_STATUSES, endpoint_label, env_or, parse_retry_after
from queryfit.errors import GenerationError

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Environment variables read for the key and the base URL, in order of preference.
KEY_ENV = ("QUERYFIT_LLM_API_KEY", "OPENAI_API_KEY")
BASE_URL_ENV = ("QUERYFIT_LLM_BASE_URL", "OPENAI_BASE_URL")

#: ``on_wait(reason, seconds)`` is called before each pause between tries.
WaitHook = Callable[[str, float], None]


class RequestFailed(Exception):
    """One request gave up after its retries; the run records it and goes on (not fatal)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason  # short, groupable: "HTTP 500", "timeout", "unparseable answer"
        self.detail = detail


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str = "", wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.wait = wait


@dataclass
class ChatStats:
    """Counters across all threads of one client."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    waited_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"waited_seconds": round(self.waited_seconds, 2)}


def _retry_after(headers: Any) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _server_message(response: Any, secret: str | None = None) -> str:
    """The server's own error message, shortened, with the key masked should it echo it."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        if not message and isinstance(body, dict):
            message = body.get("message") or body.get("detail")
    except ValueError:
        message = response.text
    message = " ".join(str(message or "").split())
    if secret:
        message = message.replace(secret, "***")
    return f" ({message[:200]})" if message else ""


class ChatClient:
    """One model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` defaults to ``$QUERYFIT_LLM_BASE_URL``, ``$OPENAI_BASE_URL``, then OpenAI's.
    ``api_key`` defaults to ``$QUERYFIT_LLM_API_KEY`` then ``$OPENAI_API_KEY``; local servers
    need none. ``max_retries`` further tries follow a retryable failure, waiting
    ``backoff_base * 2**attempt`` seconds (with jitter, at most ``backoff_max``) or what the
    server's ``Retry-After`` asks (at most ``max_retry_wait``).

    Example::

        client = ChatClient("llama3.1", base_url="http://localhost:11434/v1")
        text = client.complete([{"role": "user", "content": "Say hi"}])
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_wait: float = 300.0,
        temperature: float | None = 0.7,
        max_tokens: int | None = 512,
        extra_body: dict[str, Any] | None = None,
        max_connections: int = 32,
    ) -> None:
        if not model or not model.strip():
            raise GenerationError("no LLM model named; pass --llm openai:<model>")
        if timeout <= 0:
            raise GenerationError(f"--timeout must be positive, not {timeout}")
        if max_retries < 0:
            raise GenerationError(f"--max-retries must be 0 or more, not {max_retries}")
        self.model = model.strip()
        url = env_or(base_url, *BASE_URL_ENV) or OPENAI_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise GenerationError(
                f"LLM base URL {url!r} must start with http:// or https:// "
                "(e.g. http://localhost:11434/v1 for Ollama)"
            )
        self.base_url = url.rstrip("/")
        self._api_key = env_or(api_key, *KEY_ENV)
        if self._api_key is None and endpoint_label(self.base_url).startswith("api.openai.com"):
            raise GenerationError(
                f"no API key for {self.base_url}: set $OPENAI_API_KEY (or pass --api-key), or "
                "point --base-url at a local OpenAI-compatible server"
            )
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_wait = float(max_retry_wait)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.max_connections = max_connections
        self.stats = ChatStats()
        self._lock = threading.Lock()
        self._client: Any = None
        self._epoch = 0  # bumped by close(): requests of an earlier epoch stop retrying
        self._cancel = threading.Event()

    @property
    def endpoint(self) -> str:
        """``host[:port]/path`` of the base URL: safe to show and to key caches on."""
        return endpoint_label(self.base_url)

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        import httpx
                    except ImportError as exc:
                        raise GenerationError(
                            "calling an LLM needs httpx; install it with "
                            "`pip install 'queryfit[generate]'`"
                        ) from exc
                    self._client = httpx.Client(
                        timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                        limits=httpx.Limits(max_connections=self.max_connections),
                    )
        return self._client

    def close(self) -> None:
        """Close pooled connections and stop the retries of requests still in flight.

        The client stays usable: the next request opens new connections.
        """
        with self._lock:
            self._epoch += 1
            cancel, self._cancel = self._cancel, threading.Event()
            client, self._client = self._client, None
        cancel.set()
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"ChatClient(model={self.model!r}, base_url={self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_api_key=None, _client=None, _lock=None, _cancel=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def _add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    def _body(self, messages: list[dict[str, str]], seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if seed is not None:
            body["seed"] = seed
        return body | self.extra_body

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        seed: int | None = None,
        on_wait: WaitHook | None = None,
        check: Callable[[str], Any] | None = None,
    ) -> Any:
        """Send one conversation; return the answer's text (or ``check(text)`` when given).

        ``check`` may raise ``ValueError`` to reject an answer (say, one that cannot be parsed):
        it then counts as a retryable failure. Raises :class:`RequestFailed` once the retries
        are spent, and :class:`GenerationError` at once for what retrying cannot fix.
        """
        attempt = 0
        epoch, cancel = self._epoch, self._cancel
        while True:
            if self._epoch != epoch:
                raise RequestFailed("cancelled", "the client was closed")
            self._add(requests=1, retries=1 if attempt else 0)
            try:
                text = self._attempt(messages, seed)
                return check(text) if check is not None else text
            except ValueError as exc:
                failure = _Retryable("unparseable answer", str(exc))
            except _Retryable as exc:
                failure = exc
            if attempt >= self.max_retries or self._epoch != epoch:
                raise RequestFailed(failure.reason, failure.detail)
            if failure.wait is not None:
                wait = min(failure.wait, self.max_retry_wait)
            else:
                ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
                wait = ceiling * (0.5 + random.random() / 2)  # jitter: unsynchronise threads
            if on_wait is not None:
                on_wait(failure.reason, wait)
            self._add(waited_seconds=wait)
            if cancel.wait(wait):
                raise RequestFailed("cancelled", "the client was closed")
            attempt += 1

    def _attempt(self, messages: list[dict[str, str]], seed: int | None) -> str:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        url = self.base_url + "/chat/completions"
        where = f"LLM {self.model} at {self.endpoint}"
        try:
            response = self.client.post(url, json=self._body(messages, seed), headers=headers)
        except httpx.TimeoutException:
            raise _Retryable("timeout", f"no answer within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise _Retryable("connection failed", type(exc).__name__) from None
        status = response.status_code
        said = _server_message(response, self._api_key) if status >= 400 else ""
        if status in RETRY_STATUSES:
            if status == 429:
                self._add(rate_limited=1)
            wait = _retry_after(response.headers) if status in (429, 503) else None
            reason = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
            raise _Retryable(reason, said.strip(" ()"), wait)
        if status in (401, 403):
            hint = (
                "set $OPENAI_API_KEY or $QUERYFIT_LLM_API_KEY (or pass --api-key)"
                if not self._api_key
                else "check the key in --api-key / $QUERYFIT_LLM_API_KEY / $OPENAI_API_KEY"
            )
            raise GenerationError(f"{where} refused the request (HTTP {status}{said}); {hint}")
        if status == 404:
            raise GenerationError(
                f"{where}: HTTP 404 for {self.endpoint}/chat/completions"
                f"{said}; check the model name and --base-url "
                "(OpenAI-compatible servers usually end in /v1)"
            )
        if status >= 400:
            raise GenerationError(
                f"{where} rejected the request (HTTP {status}{said}); "
                "check the model name and the prompt template"
            )
        try:
            payload = response.json()
            choice = payload["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("malformed answer", f"HTTP {status}, not a chat completion") from None
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if isinstance(usage, dict):
            self._add(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        if not isinstance(content, str) or not content.strip():
            raise _Retryable("empty answer", f"finish_reason={choice.get('finish_reason')}")
        return content
