"""Cohere embeddings (``cohere:<model>``), with query and document input types kept apart.

Cohere's models embed a search query and a searchable document differently (``input_type``
``search_query`` vs ``search_document``); queryfit sends the right one for each kind, and the two
live under different store keys. Only ``httpx`` is used.

Example::

    emb = get_embedder("cohere:embed-english-v3.0")          # $COHERE_API_KEY
"""

from __future__ import annotations

from typing import Any

from queryfit._http import endpoint_label, env_or
from queryfit.embedders.base import Kind
from queryfit.embedders.http import HTTPEmbedder
from queryfit.errors import EmbedderError

COHERE_BASE_URL = "https://api.cohere.com"
COHERE_DIMS = {
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
    "embed-v4.0": 1536,
}
INPUT_TYPES = {"query": "search_query", "document": "search_document"}


class CohereEmbedder(HTTPEmbedder):
    """Embeddings from Cohere's ``POST {base_url}/v2/embed`` (or ``/v1/embed``).

    ``api_key`` defaults to ``$COHERE_API_KEY``; ``base_url`` to ``$COHERE_BASE_URL`` or Cohere's
    own. ``dimensions`` sets ``output_dimension`` (embed-v4.0). ``truncate`` is ``"END"`` so an
    over-long passage is cut rather than failing the whole batch. Cohere accepts 96 texts per
    request. ``api_version`` picks the ``v2`` (default) or ``v1`` endpoint.
    """

    provider = "cohere"
    provider_max_batch = 96
    key_env = ("COHERE_API_KEY", "CO_API_KEY")
    known_dims = COHERE_DIMS

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_version: str = "v2",
        truncate: str = "END",
        batch_size: int = 96,
        **options: Any,
    ) -> None:
        if api_version not in ("v1", "v2"):
            raise EmbedderError(f"Cohere api_version must be 'v1' or 'v2', not {api_version!r}")
        base_url = env_or(base_url, "COHERE_BASE_URL") or COHERE_BASE_URL
        api_key = env_or(api_key, *self.key_env)
        self.api_version = api_version
        self.truncate = truncate
        super().__init__(
            model, base_url=base_url, api_key=api_key, batch_size=batch_size, **options
        )
        if self._is_default_endpoint() and not self._api_key:
            raise EmbedderError(
                f"{self.model_id} needs an API key: set $COHERE_API_KEY or pass --api-key"
            )

    def _is_default_endpoint(self) -> bool:
        return endpoint_label(self.base_url) == endpoint_label(COHERE_BASE_URL)

    def _url(self) -> str:
        return f"{self.base_url}/{self.api_version}/embed"

    def _kind_options(self, kind: Kind) -> list[str]:
        return [f"input_type={INPUT_TYPES[kind]}"]

    def _body(self, texts: list[str], kind: Kind) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "texts": texts,
            "input_type": INPUT_TYPES[kind],
            "embedding_types": ["float"],
            "truncate": self.truncate,
        }
        if self.dimensions is not None:
            body["output_dimension"] = self.dimensions
        return body

    def _parse(self, payload: Any, n: int) -> list[list[float]]:
        if not isinstance(payload, dict) or "embeddings" not in payload:
            raise ValueError("no 'embeddings' in the answer")
        embeddings = payload["embeddings"]
        if isinstance(embeddings, dict):  # embedding_types given: {"float": [[...], ...]}
            embeddings = embeddings.get("float")
        if not isinstance(embeddings, list) or len(embeddings) != n:
            got = len(embeddings) if isinstance(embeddings, list) else "no"
            raise ValueError(f"{got} float embeddings for {n} texts")
        return embeddings
