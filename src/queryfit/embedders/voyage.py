"""Voyage AI embeddings (``voyage:<model>``), with query and document input types kept apart.

Voyage prepends its own retrieval instruction for ``input_type="query"`` and
``input_type="document"``; queryfit sends the right one per kind and keeps them under separate
store keys. Only ``httpx`` is used.

Example::

    emb = get_embedder("voyage:voyage-3.5", dimensions=512)  # $VOYAGE_API_KEY
"""

from __future__ import annotations

from typing import Any

from queryfit._http import endpoint_label, env_or
from queryfit.embedders.base import Kind
from queryfit.embedders.http import HTTPEmbedder
from queryfit.embedders.openai_compatible import parse_openai_data
from queryfit.errors import EmbedderError

VOYAGE_BASE_URL = "https://api.voyageai.com/v1"
VOYAGE_DIMS = {
    "voyage-3.5": 1024,
    "voyage-3.5-lite": 1024,
    "voyage-3-large": 1024,
    "voyage-3": 1024,
    "voyage-3-lite": 512,
    "voyage-code-3": 1024,
    "voyage-finance-2": 1024,
    "voyage-law-2": 1024,
    "voyage-multilingual-2": 1024,
    "voyage-large-2": 1536,
    "voyage-2": 1024,
}


class VoyageEmbedder(HTTPEmbedder):
    """Embeddings from Voyage's ``POST {base_url}/embeddings``.

    ``api_key`` defaults to ``$VOYAGE_API_KEY``; ``base_url`` to ``$VOYAGE_BASE_URL`` or Voyage's
    own. ``dimensions`` sets ``output_dimension`` (voyage-3.5, voyage-3-large, voyage-code-3).
    Voyage accepts up to 1000 texts per request; the default of 128 keeps each request well inside
    its token limits.
    """

    provider = "voyage"
    provider_max_batch = 1000
    key_env = ("VOYAGE_API_KEY",)
    known_dims = VOYAGE_DIMS

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        truncation: bool = True,
        **options: Any,
    ) -> None:
        base_url = env_or(base_url, "VOYAGE_BASE_URL") or VOYAGE_BASE_URL
        api_key = env_or(api_key, *self.key_env)
        self.truncation = truncation
        super().__init__(model, base_url=base_url, api_key=api_key, **options)
        if self._is_default_endpoint() and not self._api_key:
            raise EmbedderError(
                f"{self.model_id} needs an API key: set $VOYAGE_API_KEY or pass --api-key"
            )

    def _is_default_endpoint(self) -> bool:
        return endpoint_label(self.base_url) == endpoint_label(VOYAGE_BASE_URL)

    def _url(self) -> str:
        return f"{self.base_url}/embeddings"

    def _kind_options(self, kind: Kind) -> list[str]:
        return [f"input_type={kind}"]

    def _body(self, texts: list[str], kind: Kind) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": texts,
            "input_type": kind,
            "truncation": self.truncation,
        }
        if self.dimensions is not None:
            body["output_dimension"] = self.dimensions
        return body

    def _parse(self, payload: Any, n: int) -> list[list[float]]:
        return parse_openai_data(payload, n)
