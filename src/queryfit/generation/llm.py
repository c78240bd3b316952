"""A client for any OpenAI-compatible chat-completions endpoint.

OpenAI itself, Ollama (``http://localhost:11434/v1``), vLLM, llama.cpp's server, LM Studio,
LiteLLM proxies...: all accept ``POST {base_url}/chat/completions``. :class:`ChatClient` sends one
conversation and returns the answer's text, with what a long generation run needs, from the HTTP
layer every outbound call shares (:mod:`queryfit._http`):

* a **per-request timeout**;
* **retries** with exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and
  unparseable answers, honouring the server's ``Retry-After`` (or ``retry-after-ms``);
* immediate, explained failure on what retrying cannot fix (a rejected key, an unknown model);
* an ``on_wait`` hook so a progress bar can show rate-limit waits and retries as they happen.

Requests are synchronous and thread-safe (one pooled ``httpx.Client``): the caller decides the
concurrency. The API key is taken from the argument or the environment, sent in a header, and
never appears in ``repr``, error messages, logs or files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from queryfit._http import (
    HTTPClient,
    HTTPSettings,
    HTTPStats,
    HTTPStatusError,
    HTTPUser,
    RequestFailed,
    Retryable,
    WaitHook,
    endpoint_label,
    env_or,
)
from queryfit.errors import GenerationError

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Environment variables read for the key and the base URL, in order of preference.
KEY_ENV = ("QUERYFIT_LLM_API_KEY", "OPENAI_API_KEY")
BASE_URL_ENV = ("QUERYFIT_LLM_BASE_URL", "OPENAI_BASE_URL")

__all__ = ["ChatClient", "ChatStats", "RequestFailed", "WaitHook"]


@dataclass
class ChatStats(HTTPStats):
    """Counters across all threads of one client: the HTTP layer's, plus tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient(HTTPUser):
    """One model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` defaults to ``$QUERYFIT_LLM_BASE_URL``, ``$OPENAI_BASE_URL``, then OpenAI's.
    ``api_key`` defaults to ``$QUERYFIT_LLM_API_KEY`` then ``$OPENAI_API_KEY``; local servers
    need none. ``max_retries`` further tries follow a retryable failure, waiting up to
    ``backoff_base * 2**attempt`` seconds (full jitter, at most ``backoff_max``) or what the
    server's ``Retry-After`` asks; a server asking for more than ``max_retry_wait`` fails the
    request at once. The setting names are the embedding providers' too.

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
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.stats = ChatStats()
        try:
            settings = HTTPSettings(timeout, max_retries, backoff_base, backoff_max, max_retry_wait)
            self.http = HTTPClient(settings, max_connections=max_connections, stats=self.stats)
        except ValueError as exc:  # name the CLI flag: "--max-retries must be 0 or more..."
            name, _, rest = str(exc).partition(" ")
            raise GenerationError(f"--{name.replace('_', '-')} {rest}") from None

    @property
    def endpoint(self) -> str:
        """``host[:port]/path`` of the base URL: safe to show and to key caches on."""
        return endpoint_label(self.base_url)

    def __repr__(self) -> str:
        return f"ChatClient(model={self.model!r}, base_url={self.base_url!r})"

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
        are spent (or :meth:`close` cancels them), and :class:`GenerationError` at once for what
        retrying cannot fix.
        """
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            return self.http.post(
                self.base_url + "/chat/completions",
                self._body(messages, seed),
                headers=headers,
                parse=lambda response: self._answer(response, check),
                on_wait=on_wait,
            )
        except HTTPStatusError as exc:
            message = exc.explain(
                f"LLM {self.model} at {self.endpoint}",
                key_env=KEY_ENV,
                key_given=bool(self._api_key),
                other_hint="check the model name and the prompt template",
            )
            raise GenerationError(self.mask(message)) from None

    def _answer(self, response: Any, check: Callable[[str], Any] | None) -> Any:
        """The text (or ``check(text)``) of one answer; an unusable one is worth another try."""
        try:
            payload = response.json()
            choice = payload["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Retryable(
                "malformed answer", f"HTTP {response.status_code}, not a chat completion"
            ) from None
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if isinstance(usage, dict):
            self.stats.add(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        if not isinstance(content, str) or not content.strip():
            raise Retryable("empty answer", f"finish_reason={choice.get('finish_reason')}")
        if check is None:
            return content
        try:
            return check(content)
        except ValueError as exc:
            raise Retryable("unparseable answer", str(exc)) from None
