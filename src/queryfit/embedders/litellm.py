"""A catch-all for providers queryfit does not wrap itself, through LiteLLM (optional extra).

``litellm:<litellm-model>`` passes the model string to ``litellm.embedding`` unchanged, e.g.
``litellm:bedrock/amazon.titan-embed-text-v2:0``, ``litellm:gemini/text-embedding-004`` or
``litellm:mistral/mistral-embed``. Credentials are read by LiteLLM from the usual environment
variables. Install with ``pip install 'queryfit[litellm]'``.
"""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from queryfit.embedders.base import BaseEmbedder, Kind, check_vectors
from queryfit.embedders.http import RequestStats, check_positive, endpoint_label
from queryfit.errors import EmbedderError

_INSTALL_HINT = "pip install 'queryfit[litellm]'"


def _import_litellm() -> Any:
    try:
        return importlib.import_module("litellm")
    except ImportError as exc:
        raise EmbedderError(
            f"the litellm provider needs the litellm package; install it with `{_INSTALL_HINT}`"
        ) from exc


class LiteLLMEmbedder(BaseEmbedder):
    """Any embedding model LiteLLM knows, behind queryfit's store and batching.

    ``input_types`` maps each kind to the ``input_type`` LiteLLM forwards (for providers that take
    one, e.g. ``{"query": "search_query", "document": "search_document"}``); it is part of the
    store key. Retries use LiteLLM's own ``num_retries`` (backoff on rate limits and 5xx).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        input_types: dict[str, str] | None = None,
        batch_size: int = 128,
        concurrency: int = 4,
        max_retries: int = 6,
        timeout: float = 60.0,
        **extra: Any,
    ) -> None:
        model = (model or "").strip()
        if not model:
            raise EmbedderError("litellm: empty model name; e.g. litellm:mistral/mistral-embed")
        check_positive("batch_size", batch_size)
        check_positive("concurrency", concurrency)
        for name, value in (("dimensions", dimensions), ("dim", dim)):
            if value is not None:
                check_positive(name, value)
        self.litellm = _import_litellm()
        self.model = model
        self.model_id = f"litellm:{model}"
        self.base_url = base_url
        self._api_key = api_key
        self.dimensions = dimensions
        self._dim = dimensions or dim
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.input_types = dict(input_types or {})
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_batch_size = batch_size * concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.extra = extra
        self.stats = RequestStats()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Vector size: given, or learnt from one probe request."""
        if self._dim is None:
            self._dim = int(self._call(["dimension probe"], "document").shape[1])
        return self._dim

    def _key_options(self) -> list[str]:
        opts = [f"dimensions={self.dimensions}"] if self.dimensions else []
        if self.base_url:
            opts.append(f"endpoint={endpoint_label(self.base_url)}")
        return opts

    def store_key(self, kind: Kind) -> str:
        """Model, size, endpoint, input type and prefix."""
        key = super().store_key(kind)
        if kind in self.input_types:
            key += f"|input_type={self.input_types[kind]}"
        return key

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "input": texts,
            "num_retries": self.max_retries,
            "timeout": self.timeout,
            **self.extra,
        }
        if self.base_url:
            kwargs["api_base"] = self.base_url
        if self._api_key:
            kwargs["api_key"] = self._api_key
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        if kind in self.input_types:
            kwargs["input_type"] = self.input_types[kind]
        with self._lock:
            self.stats.requests += 1
        try:
            response = self.litellm.embedding(**kwargs)
        except Exception as exc:  # noqa: BLE001 - LiteLLM raises its own family of errors
            raise EmbedderError(
                f"{self.model_id} failed: {type(exc).__name__}: {str(exc)[:300]}; check the model "
                "name and the provider's credentials in the environment"
            ) from None
        data = response["data"] if isinstance(response, dict) else response.data
        vectors = [item["embedding"] if isinstance(item, dict) else item.embedding for item in data]
        out = check_vectors(vectors, len(texts), self._dim, self.model_id)
        with self._lock:
            self.stats.texts += len(texts)
        return out

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if len(batches) == 1:
            return self._call(batches[0], kind)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
            return np.concatenate(list(pool.map(lambda b: self._call(b, kind), batches)))

    def __repr__(self) -> str:
        return f"LiteLLMEmbedder(model={self.model!r}, dimensions={self.dimensions!r})"
