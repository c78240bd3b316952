"""Shared machinery for remote embedding APIs: batching, concurrency, probing, HTTP requests.

Every API provider (OpenAI-compatible, Cohere, Voyage) is a small subclass that knows how to build
one request body and read one response; everything that makes a paid API pleasant to use at
scale lives once, here or in :mod:`queryfit._http`:

* **batching** to the provider's limits, both in texts per request (``batch_size``) and in a
  character budget per request (``max_batch_chars``, a stand-in for the token limit);
* **concurrency**: the requests of one store batch go out ``concurrency`` at a time;
* **retries**, timeouts, ``Retry-After`` and key masking: :class:`queryfit._http.HTTPClient`,
  the same layer the LLM client uses; malformed answers are retried too;
* **errors** that name the provider, the model and the fix, and never include the API key.

The API key is held in a private attribute, sent in a header, and never appears in ``repr``, in
store keys, in error messages or on disk.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from queryfit._http import (
    HTTPClient,
    HTTPSettings,
    HTTPStats,
    HTTPStatusError,
    HTTPUser,
    RequestFailed,
    Retryable,
    endpoint_label,
    env_or,
)
from queryfit.embedders.base import BaseEmbedder, Kind, ProbedDim, check_vectors
from queryfit.errors import EmbedderError


@dataclass
class RequestStats(HTTPStats):
    """Counters for one embedder object, cumulative; handy in tests and benchmarks."""

    texts: int = 0  # texts embedded successfully


def check_positive(name: str, value: Any, *, allow_float: bool = False) -> None:
    ok_types = (int, float) if allow_float else (int,)
    if isinstance(value, bool) or not isinstance(value, ok_types) or value <= 0:
        raise EmbedderError(f"{name} must be a positive number, not {value!r}")


class APIEmbedder(ProbedDim, BaseEmbedder):
    """What every remote embedder shares, whoever sends its requests; subclasses give ``_call``.

    ``batch_size``: texts per request (capped at the provider's limit). ``max_batch_chars``:
    characters per request, so long passages split into more requests. ``concurrency``: requests
    in flight at once for one store batch. ``dimensions`` asks for shorter vectors; ``dim``
    declares the size, saving the probe that a model of unknown size otherwise costs.
    """

    #: Short provider name used in ``model_id`` and messages, e.g. ``"openai"``.
    provider: str = "api"
    #: The provider's own cap on texts per request.
    provider_max_batch: int = 2048
    #: Sizes of well-known models, so no probe request is needed to learn ``dim``.
    known_dims: dict[str, int] = {}
    base_url: str | None = None

    def __init__(
        self,
        model: str,
        *,
        dimensions: int | None = None,
        dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 128,
        max_batch_chars: int = 400_000,
        concurrency: int = 4,
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
        for name, value in (("dimensions", dimensions), ("dim", dim)):
            if value is not None:
                check_positive(name, value)
        if dimensions is not None and dim is not None and dim != dimensions:
            raise EmbedderError(f"dim={dim} contradicts dimensions={dimensions}; give one of them")
        self.model = model
        self.model_id = f"{self.provider}:{model}"
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
        self.stats = RequestStats()

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        """One request (with its retries); returns a checked float32 ``[len(texts), dim]``."""
        raise NotImplementedError

    def _is_default_endpoint(self) -> bool:
        return False

    @property
    def recorded_endpoint(self) -> str | None:
        """What an adapter records of this model's endpoint, so ``evaluate`` and ``serve`` find
        it again: scheme, host, port and path, never credentials or a query string; ``None`` for
        the provider's own endpoint."""
        if not self.base_url or self._is_default_endpoint():
            return None
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path.rstrip('/')}"

    def _key_options(self) -> list[str]:
        """Settings that change vectors; the endpoint is one, unless it is the provider's own."""
        opts = []
        if self.dimensions is not None:
            opts.append(f"dimensions={self.dimensions}")
        if self.base_url and not self._is_default_endpoint():
            opts.append(f"endpoint={endpoint_label(self.base_url)}")
        return opts

    def _probe_dim(self) -> int:
        return int(self._call([self.probe_text], "document").shape[1])

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        batches = list(self._split(texts))
        if len(batches) == 1 or self.concurrency == 1:
            parts = [self._call(b, kind) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
                parts = list(pool.map(lambda b: self._call(b, kind), batches))
        return np.concatenate(parts, axis=0)

    def _split(self, texts: Sequence[str]) -> Iterator[list[str]]:
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, "
            f"dimensions={self.dimensions!r}, query_prefix={self.query_prefix!r}, "
            f"document_prefix={self.document_prefix!r})"
        )


class HTTPEmbedder(HTTPUser, APIEmbedder):
    """Base for embedding APIs over HTTP; subclasses implement ``_url``, ``_body``, ``_parse``.

    ``options`` are :class:`APIEmbedder`'s (``dimensions``, ``dim``, prefixes, ``batch_size``,
    ``max_batch_chars``, ``concurrency``). The HTTP settings have the LLM client's names
    (:class:`queryfit._http.HTTPSettings`):
    ``timeout`` seconds for one request; ``max_retries`` further tries after a retryable failure
    (429, 5xx, timeout, a malformed answer); ``backoff_base``/``backoff_max``: the exponential
    backoff's base and cap; ``max_retry_wait``: the longest server-asked wait accepted (a
    ``Retry-After`` beyond it fails at once, with its value). ``retry_base_delay`` is the old name
    of ``backoff_base``. ``headers`` are sent with every request; ``client`` lends an
    ``httpx.Client``.
    """

    provider: str = "http"
    #: Environment variables that hold the API key, in order of preference.
    key_env: tuple[str, ...] = ()

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        max_retry_wait: float = 120.0,
        retry_base_delay: float | None = None,
        headers: dict[str, str] | None = None,
        client: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        base_url = (base_url or "").strip()
        if not base_url.startswith(("http://", "https://")):
            raise EmbedderError(
                f"base URL {base_url!r} for {self.provider} must start with http:// or https://"
            )
        if retry_base_delay is not None:
            warnings.warn(
                "retry_base_delay is now called backoff_base (as in the LLM client); the old "
                "name will be removed in a later release",
                DeprecationWarning,
                stacklevel=2,
            )
            backoff_base = retry_base_delay
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.extra_headers = dict(headers or {})
        try:
            settings = HTTPSettings(timeout, max_retries, backoff_base, backoff_max, max_retry_wait)
        except ValueError as exc:
            raise EmbedderError(str(exc)) from None
        pool = self.concurrency * 2
        self.http = HTTPClient(settings, max_connections=pool, stats=self.stats, client=client)

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

    # -- one request, through the HTTP layer -------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.model_id} at {endpoint_label(self.base_url)}"

    def _fail(self, message: str) -> EmbedderError:
        return EmbedderError(self.mask(message))

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        headers = {**self.extra_headers, **self._auth_headers()}
        try:
            vectors = self.http.post(
                self._url(),
                self._body(texts, kind),
                headers=headers,
                parse=lambda response: self._vectors(response, len(texts)),
            )
        except RequestFailed as exc:
            if exc.why == "server_wait":
                raise self._fail(f"{self._where}: {exc}") from None
            advice = (
                "; check --base-url and that the server is running"
                if exc.connect or exc.reason == "connection failed"
                else "; try again later, or lower concurrency"
            )
            raise self._fail(
                f"{self._where} failed after {exc.tries} tries: {exc}{advice}"
            ) from None
        except HTTPStatusError as exc:
            raise self._fail(
                exc.explain(
                    self._where,
                    key_env=self.key_env,
                    key_given=bool(self._api_key),
                    other_hint="check the model name, --dimensions and the input size",
                )
            ) from None
        self.stats.add(texts=len(texts))
        return vectors

    def _vectors(self, response: Any, n: int) -> np.ndarray:
        """Checked vectors from one answer; a malformed answer is worth another try."""
        try:
            payload = response.json()
        except ValueError:
            raise Retryable(
                "malformed answer", f"invalid JSON (HTTP {response.status_code})"
            ) from None
        try:
            vectors = self._parse(payload, n)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise Retryable("unexpected answer shape", str(exc)) from None
        expected = self._dim
        try:
            return check_vectors(vectors, n, expected, self.model_id)
        except EmbedderError as exc:
            got = np.shape(vectors)
            if expected is not None and len(got) == 2 and got[0] == n:
                raise self._fail(
                    f"{self._where} returned {got[1]}-dimensional vectors, expected {expected}; "
                    "pass dimensions (--dimensions) or dim= matching the model, or use a new "
                    "--store if the model behind this name changed"
                ) from None
            raise self._fail(f"{self._where}: {exc}") from None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._api_key = env_or(None, *self.key_env)
