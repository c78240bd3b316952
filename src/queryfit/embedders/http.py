"""Shared machinery for embedding APIs spoken over HTTP: batching, concurrency, retries, timeouts.

Every API provider (OpenAI-compatible, Cohere, Voyage) is a small subclass that knows how to build
one request body and read one response; everything that makes a paid API pleasant to use at
scale lives here once:

* **batching** to the provider's limits, both in texts per request (``batch_size``) and in a
  character budget per request (``max_batch_chars``, a stand-in for the token limit);
* **concurrency**: the requests of one store batch go out ``concurrency`` at a time;
* **retries** with exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and
  malformed responses, honouring ``Retry-After``;
* **errors** that name the provider, the model and the fix, and never include the API key.

The API key is held in a private attribute, sent in a header, and never appears in ``repr``, in
store keys, in error messages or on disk.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from queryfit.embedders.base import BaseEmbedder, Kind, check_vectors
from queryfit.errors import EmbedderError

#: HTTP statuses worth another try: rate limits, timeouts at a proxy, and server trouble.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
#: Retries after a refused connection (a server that is down stays down for a while).
CONNECT_RETRIES = 2


@dataclass
class RequestStats:
    """Counters for one embedder object, cumulative; handy in tests and benchmarks."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0  # requests that were a retry of a failed one
    texts: int = 0  # texts embedded successfully

    def reset(self) -> None:
        """Zero every counter."""
        self.requests = self.retries = self.texts = 0


class _RetryableError(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After in seconds, if any."""

    def __init__(self, message: str, wait: float | None = None, *, connect: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.connect = connect


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def endpoint_label(url: str) -> str:
    """``host[:port]/path`` of a base URL, without scheme, credentials or query: for keys/logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path.rstrip('/')}"


def env_or(value: str | None, *names: str) -> str | None:
    """``value`` if given, else the first non-empty environment variable among ``names``."""
    if value:
        return value
    for name in names:
        found = os.environ.get(name, "").strip()
        if found:
            return found
    return None


def check_positive(name: str, value: Any, *, allow_float: bool = False) -> None:
    ok_types = (int, float) if allow_float else (int,)
    if isinstance(value, bool) or not isinstance(value, ok_types) or value <= 0:
        raise EmbedderError(f"{name} must be a positive number, not {value!r}")


class HTTPEmbedder(BaseEmbedder):
    """Base for embedding APIs over HTTP; subclasses implement ``_request`` and ``_parse``.

    Parameters common to every API provider:

    ``batch_size``: texts per request (capped at the provider's limit).
    ``max_batch_chars``: characters per request, so long passages split into more requests.
    ``concurrency``: requests in flight at once for one store batch.
    ``max_retries``: further tries after a retryable failure (429, 5xx, timeout, bad JSON).
    ``timeout``: seconds for one request. ``retry_base_delay``/``max_retry_wait``: backoff base
    and the longest wait accepted (a ``Retry-After`` beyond it fails at once, with its value).
    """

    #: Short provider name used in ``model_id`` and messages, e.g. ``"openai"``.
    provider: str = "http"
    #: The provider's own cap on texts per request.
    provider_max_batch: int = 2048
    #: Environment variables that hold the API key, in order of preference.
    key_env: tuple[str, ...] = ()
    #: Sizes of well-known models, so no probe request is needed to learn ``dim``.
    known_dims: dict[str, int] = {}

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        dimensions: int | None = None,
        dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 128,
        max_batch_chars: int = 400_000,
        concurrency: int = 4,
        max_retries: int = 6,
        timeout: float = 60.0,
        retry_base_delay: float = 0.5,
        max_retry_wait: float = 120.0,
        headers: dict[str, str] | None = None,
        client: Any = None,
    ) -> None:
        model = (model or "").strip()
        if not model:
            raise EmbedderError(f"{self.provider}: empty model name; e.g. {self.provider}:<model>")
        for name, value in (
            ("batch_size", batch_size),
            ("max_batch_chars", max_batch_chars),
            ("concurrency", concurrency),
        ):
            check_positive(name, value)
        check_positive("timeout", timeout, allow_float=True)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise EmbedderError(f"max_retries must be 0 or more, not {max_retries!r}")
        for name, value in (("dimensions", dimensions), ("dim", dim)):
            if value is not None:
                check_positive(name, value)
        if dimensions is not None and dim is not None and dim != dimensions:
            raise EmbedderError(f"dim={dim} contradicts dimensions={dimensions}; give one of them")
        base_url = (base_url or "").strip()
        if not base_url.startswith(("http://", "https://")):
            raise EmbedderError(
                f"base URL {base_url!r} for {self.provider} must start with http:// or https://"
            )
        self.model = model
        self.model_id = f"{self.provider}:{model}"
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.dimensions = dimensions
        self._dim = dimensions or dim or self.known_dims.get(model)
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.batch_size = min(batch_size, self.provider_max_batch)
        self.max_batch_chars = max_batch_chars
        self.concurrency = concurrency
        # The store hands us this many texts per call and commits each call on its own; it is
        # several requests' worth, so that they can run concurrently.
        self.max_batch_size = self.batch_size * concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.retry_base_delay = float(retry_base_delay)
        self.max_retry_wait = float(max_retry_wait)
        self.extra_headers = dict(headers or {})
        self.stats = RequestStats()
        self._stats_lock = threading.Lock()
        self._client = client
        self._own_client = client is None
        self._client_lock = threading.Lock()

    # -- what subclasses provide -------------------------------------------------------------

    def _url(self) -> str:
        """Full URL of the embeddings endpoint."""
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _body(self, texts: list[str], kind: Kind) -> dict[str, Any]:
        """JSON body of one request."""
        raise NotImplementedError

    def _parse(self, payload: Any, n: int) -> list[list[float]]:
        """Vectors, in input order, from one decoded JSON response; raise ValueError if odd."""
        raise NotImplementedError

    def _key_options(self) -> list[str]:
        """Settings that change vectors; the endpoint is one, unless it is the provider's own."""
        opts = []
        if self.dimensions is not None:
            opts.append(f"dimensions={self.dimensions}")
        if not self._is_default_endpoint():
            opts.append(f"endpoint={endpoint_label(self.base_url)}")
        return opts

    def _is_default_endpoint(self) -> bool:
        return False

    # -- the Embedder contract ---------------------------------------------------------------

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Vector size: given, known for the model, or learnt from one short probe request."""
        if self._dim is None:
            out = self._call(["dimension probe"], "document")
            self._dim = int(out.shape[1])
        return self._dim

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        batches = list(self._split(texts))
        if len(batches) == 1 or self.concurrency == 1:
            parts = [self._call(b, kind) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
                parts = list(pool.map(lambda b: self._call(b, kind), batches))
        return np.concatenate(parts, axis=0)

    def _split(self, texts: Sequence[str]) -> Any:
        """Requests of at most ``batch_size`` texts and ``max_batch_chars`` characters."""
        batch: list[str] = []
        chars = 0
        for text in texts:
            full = len(batch) >= self.batch_size or chars + len(text) > self.max_batch_chars
            if batch and full:
                yield batch
                batch, chars = [], 0
            batch.append(text)
            chars += len(text)
        if batch:
            yield batch

    # -- one request, with retries -----------------------------------------------------------

    @property
    def client(self) -> Any:
        """The shared ``httpx.Client`` (connection pooling across requests and threads)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    import httpx

                    self._client = httpx.Client(
                        timeout=self.timeout,
                        limits=httpx.Limits(max_connections=max(self.concurrency, 1) * 2),
                    )
        return self._client

    def close(self) -> None:
        """Close the HTTP connections this embedder opened."""
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None

    def _count(self, *, requests: int = 0, retries: int = 0, texts: int = 0) -> None:
        with self._stats_lock:
            self.stats.requests += requests
            self.stats.retries += retries
            self.stats.texts += texts

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        """One request with retries; returns a checked float32 ``[len(texts), dim]`` array."""
        attempt = 0
        while True:
            self._count(requests=1, retries=1 if attempt else 0)
            try:
                vectors = self._attempt(texts, kind)
            except _RetryableError as exc:
                # A refused connection is rarely cured by waiting long: two retries, not six.
                limit = min(self.max_retries, CONNECT_RETRIES) if exc.connect else self.max_retries
                if attempt >= limit:
                    advice = "" if exc.connect else "; try again later, or lower concurrency"
                    raise EmbedderError(
                        f"{self.model_id} at {endpoint_label(self.base_url)} failed after "
                        f"{attempt + 1} tries: {exc}{advice}"
                    ) from None
                wait = self._backoff(attempt, exc.wait)
                if wait > self.max_retry_wait:
                    raise EmbedderError(
                        f"{self.model_id} at {endpoint_label(self.base_url)}: {exc}; the server "
                        f"asks to wait {wait:.0f}s, more than max_retry_wait="
                        f"{self.max_retry_wait:.0f}s; try again later or raise max_retry_wait"
                    ) from None
                time.sleep(wait)
                attempt += 1
                continue
            self._count(texts=len(texts))
            return vectors

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return server_wait
        # Full jitter: spread the retries of concurrent requests instead of synchronising them.
        ceiling = self.retry_base_delay * (2**attempt)
        return min(self.max_retry_wait, ceiling * (0.5 + random.random() / 2))

    def _attempt(self, texts: list[str], kind: Kind) -> np.ndarray:
        import httpx

        headers = {"Content-Type": "application/json", **self.extra_headers}
        headers.update(self._auth_headers())
        where = f"{self.model_id} at {endpoint_label(self.base_url)}"
        try:
            response = self.client.post(self._url(), json=self._body(texts, kind), headers=headers)
        except httpx.TimeoutException:
            raise _RetryableError(
                f"no answer within the {self.timeout:g}s timeout (raise the timeout option)"
            ) from None
        except httpx.TransportError as exc:
            # Connection refused / reset: a server restarting is worth retrying, but an address
            # that never answers should say so plainly once the retries run out.
            raise _RetryableError(
                f"cannot connect ({type(exc).__name__}); check --base-url and that the server "
                "is running",
                connect=isinstance(exc, httpx.ConnectError),
            ) from None
        status = response.status_code
        if status in RETRY_STATUSES:
            raise _RetryableError(
                f"HTTP {status}{_server_message(response)}",
                wait=parse_retry_after(response.headers.get("retry-after")),
            )
        if status in (401, 403):
            env = " or ".join(f"${name}" for name in self.key_env) or "the API key option"
            hint = (
                f"set {env} (or pass --api-key)"
                if not self._api_key
                else f"check the key in {env} (or --api-key)"
            )
            raise EmbedderError(
                f"{where} refused the request (HTTP {status}{_server_message(response)}); {hint}"
            )
        if status == 404:
            raise EmbedderError(
                f"{where}: HTTP 404 for {self._url()}{_server_message(response)}; check the model "
                "name and --base-url (OpenAI-compatible servers usually end in /v1)"
            )
        if status >= 400:
            raise EmbedderError(
                f"{where} rejected the request (HTTP {status}{_server_message(response)}); check "
                "the model name, --dimensions and the input size"
            )
        try:
            payload = response.json()
        except ValueError:
            raise _RetryableError(f"malformed JSON in the answer (HTTP {status})") from None
        try:
            vectors = self._parse(payload, len(texts))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise _RetryableError(f"unexpected answer shape ({exc})") from None
        expected = self._dim
        try:
            return check_vectors(vectors, len(texts), expected, self.model_id)
        except EmbedderError as exc:
            got = np.shape(vectors)
            if expected is not None and len(got) == 2 and got[0] == len(texts):
                raise EmbedderError(
                    f"{where} returned {got[1]}-dimensional vectors, expected {expected}; "
                    "pass dimensions (--dimensions) or dim= matching the model, or use a new "
                    "--store if the model behind this name changed"
                ) from None
            raise EmbedderError(f"{where}: {exc}") from None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, "
            f"dimensions={self.dimensions!r}, query_prefix={self.query_prefix!r}, "
            f"document_prefix={self.document_prefix!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the key or live connections along with the object.
        state = self.__dict__.copy()
        state.update(_api_key=None, _client=None, _stats_lock=None, _client_lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stats_lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._api_key = env_or(None, *self.key_env)


def _server_message(response: Any) -> str:
    """A short excerpt of the server's own error message, if it gave one."""
    try:
        payload = response.json()
    except ValueError:
        text = response.text.strip()
        return f": {text[:200]}" if text else ""
    message: Any = None
    if isinstance(payload, dict):
        message = payload.get("error") or payload.get("message") or payload.get("detail")
        if isinstance(message, dict):
            message = message.get("message") or message
    if not message:
        return ""
    return f": {str(message)[:200]}"
