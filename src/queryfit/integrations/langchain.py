"""queryfit inside LangChain: adapted query embeddings as an ``Embeddings``.

* :class:`AdaptedEmbeddings` wraps a LangChain ``Embeddings`` (the base model) and an adapter:
  ``embed_query`` is adapted, ``embed_documents`` is the base model's, so a vector store filled
  with the base model is searched as is.
* :func:`to_langchain` turns any queryfit embedder (``AdaptedEmbedder`` included) into an
  ``Embeddings``.

Needs ``pip install 'queryfit[langchain]'``.

Example::

    from queryfit.integrations.langchain import AdaptedEmbeddings
    store = InMemoryVectorStore(AdaptedEmbeddings(base_embeddings, "adapter/"))
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from queryfit.integrations import adapt_query, require

require("langchain_core", "langchain", "queryfit.integrations.langchain")

from langchain_core.embeddings import Embeddings  # noqa: E402

from queryfit.adapters import Adapter, as_adapter, check_fits  # noqa: E402

__all__ = ["AdaptedEmbeddings", "QueryfitEmbeddings", "to_langchain"]


class QueryfitEmbeddings(Embeddings):
    """Any queryfit embedder as a LangChain ``Embeddings``."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def to_langchain(embedder: Any) -> QueryfitEmbeddings:
    """Wrap a queryfit embedder (or anything ``get_embedder`` accepts) as an ``Embeddings``."""
    from queryfit.embedders import get_embedder

    return QueryfitEmbeddings(get_embedder(embedder))


class AdaptedEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` whose queries go through a queryfit (or LlamaIndex) adapter.

    ``adapter`` is an ``Adapter`` or a folder. The adapter's dimension is checked on the first
    query; pass ``model_id`` to also check the base model against the one it was trained for.
    """

    def __init__(
        self,
        base: Embeddings,
        adapter: Adapter | str | Path,
        *,
        model_id: str | None = None,
        force: bool = False,
    ) -> None:
        self.base = base
        self.adapter = as_adapter(adapter, force=force)
        self.force = force
        self.model_id = model_id
        if model_id is not None and not force:
            check_fits(self.adapter, model_id, None)

    def _adapt(self, vector: list[float]) -> list[float]:
        return adapt_query(self.adapter, vector, check=not self.force)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.base.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._adapt(self.base.embed_query(text))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.base.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self._adapt(await self.base.aembed_query(text))
