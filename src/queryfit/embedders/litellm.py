"""A catch-all for providers queryfit does not wrap itself, through LiteLLM (optional extra).

``litellm:<litellm-model>`` passes the model string to ``litellm.embedding`` unchanged, e.g.
``litellm:bedrock/amazon.titan-embed-text-v2:0``, ``litellm:gemini/text-embedding-004`` or
``litellm:mistral/mistral-embed``. Credentials are read by LiteLLM from the usual environment
variables. Install with ``pip install 'queryfit[litellm]'``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from queryfit._http import env_secrets, mask_secrets
from queryfit.embedders.base import Kind, check_vectors
from queryfit.embedders.http import APIEmbedder
from queryfit.errors import EmbedderError

_INSTALL_HINT = "pip install 'queryfit[litellm]'"


def _import_litellm() -> Any:
    try:
        return importlib.import_module("litellm")
    except ImportError as exc:
        raise EmbedderError(
            f"the litellm provider needs the litellm package; install it with `{_INSTALL_HINT}`"
        ) from exc


class LiteLLMEmbedder(APIEmbedder):
    """Any embedding model LiteLLM knows, behind queryfit's store and batching.

    ``input_types`` maps each kind to the ``input_type`` LiteLLM forwards (for providers that take
    one, e.g. ``{"query": "search_query", "document": "search_document"}``); it is part of the
    store key. Retries use LiteLLM's own ``num_retries`` (backoff on rate limits and 5xx), since
    LiteLLM sends the requests; its errors are masked like every other outbound call's: the key
    given here and every credential-like environment variable (where LiteLLM reads its keys).
    """

    provider = "litellm"

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
        if not (model or "").strip():
            raise EmbedderError("litellm: empty model name; e.g. litellm:mistral/mistral-embed")
        super().__init__(
            model,
            dimensions=dimensions,
            dim=dim,
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            batch_size=batch_size,
            concurrency=concurrency,
        )
        self.litellm = _import_litellm()
        self.base_url = base_url
        self._api_key = api_key
        self.input_types = dict(input_types or {})
        self.max_retries = max_retries
        self.timeout = timeout
        self.extra = extra

    def _key_parts(self, kind: Kind, dim: int | None) -> list[str]:
        """Model, size, endpoint, prefix and input type."""
        parts = super()._key_parts(kind, dim)
        if kind in self.input_types:
            parts.append(f"input_type={self.input_types[kind]}")
        return parts

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
        self.stats.add(requests=1)
        try:
            response = self.litellm.embedding(**kwargs)
        except Exception as exc:  # noqa: BLE001 - LiteLLM raises its own family of errors
            # Mask before shortening: a key cut in half would escape the mask.
            said = mask_secrets(f"{type(exc).__name__}: {exc}", [self._api_key, *env_secrets()])
            raise EmbedderError(
                f"{self.model_id} failed: {' '.join(said.split())[:300]}; check the model "
                "name and the provider's credentials in the environment"
            ) from None
        data = response["data"] if isinstance(response, dict) else response.data
        vectors = [item["embedding"] if isinstance(item, dict) else item.embedding for item in data]
        out = check_vectors(vectors, len(texts), self._dim, self.model_id)
        self.stats.add(texts=len(texts))
        return out

    def __repr__(self) -> str:
        return f"LiteLLMEmbedder(model={self.model!r}, dimensions={self.dimensions!r})"
