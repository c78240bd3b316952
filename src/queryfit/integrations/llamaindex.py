"""queryfit inside LlamaIndex: adapted query embeddings as a ``BaseEmbedding``.

Two ways in:

* :class:`AdaptedEmbeddingModel` is a drop-in for LlamaIndex's ``AdapterEmbeddingModel`` /
  ``LinearAdapterEmbeddingModel``: the same arguments (``base_embed_model``, ``adapter_path``,
  ``transform_query``...), but ``adapter_path`` may be a queryfit adapter folder as well as a
  LlamaIndex one, and no torch is needed to apply it.
* :func:`to_llamaindex` turns any queryfit embedder (``AdaptedEmbedder`` included) into a
  ``BaseEmbedding``.

Either way queries are adapted and documents are the base model's, so an index built with the base
model is queried as is. Needs ``pip install 'queryfit[llamaindex]'``.

Example::

    from queryfit.integrations.llamaindex import AdaptedEmbeddingModel
    embed_model = AdaptedEmbeddingModel(base_embed_model, "adapter/")
    retriever = index.as_retriever(embed_model=embed_model)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from queryfit.integrations import adapt_query, require

require("llama_index.core", "llamaindex", "queryfit.integrations.llamaindex")

from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.callbacks import CallbackManager  # noqa: E402
from llama_index.core.constants import DEFAULT_EMBED_BATCH_SIZE  # noqa: E402

from queryfit.adapters import Adapter, as_adapter, check_fits  # noqa: E402

__all__ = [
    "AdaptedEmbeddingModel",
    "AdapterEmbeddingModel",
    "LinearAdapterEmbeddingModel",
    "QueryfitEmbedding",
    "to_llamaindex",
]


class QueryfitEmbedding(BaseEmbedding):
    """Any queryfit embedder as a LlamaIndex ``BaseEmbedding`` (queries and documents by kind)."""

    _embedder: Any = PrivateAttr()

    def __init__(
        self,
        embedder: Any,
        *,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        callback_manager: CallbackManager | None = None,
        model_name: str | None = None,
    ) -> None:
        super().__init__(
            model_name=model_name or embedder.model_id,
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
        )
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "QueryfitEmbedding"

    @property
    def embedder(self) -> Any:
        """The wrapped queryfit embedder."""
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_documents(list(texts)).tolist()

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


def to_llamaindex(embedder: Any, **kwargs: Any) -> QueryfitEmbedding:
    """Wrap a queryfit embedder (or anything ``get_embedder`` accepts) as a ``BaseEmbedding``."""
    from queryfit.embedders import get_embedder

    return QueryfitEmbedding(get_embedder(embedder), **kwargs)


class AdaptedEmbeddingModel(BaseEmbedding):
    """A LlamaIndex embedding whose queries go through a queryfit (or LlamaIndex) adapter.

    Arguments mirror LlamaIndex's ``AdapterEmbeddingModel``: ``base_embed_model`` (any
    ``BaseEmbedding``), ``adapter_path`` (a queryfit adapter folder, a LlamaIndex adapter folder,
    or pass ``adapter=`` an ``Adapter``), ``transform_query``. ``adapter_cls`` and ``device`` are
    accepted for compatibility and ignored: the adapter's type is read from its folder and applied
    with numpy. The adapter's dimension is checked against the first query; pass ``model_id`` to
    also check the base model's identity against the one the adapter was trained for.
    """

    _base_embed_model: Any = PrivateAttr()
    _adapter: Any = PrivateAttr()
    _transform_query: bool = PrivateAttr()
    _force: bool = PrivateAttr()

    def __init__(
        self,
        base_embed_model: BaseEmbedding,
        adapter_path: str | Path | None = None,
        adapter_cls: Any = None,
        transform_query: bool = True,
        device: str | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        callback_manager: CallbackManager | None = None,
        *,
        adapter: Adapter | None = None,
        model_id: str | None = None,
        force: bool = False,
    ) -> None:
        if (adapter_path is None) == (adapter is None):
            raise TypeError("give exactly one of adapter_path and adapter")
        loaded = as_adapter(adapter if adapter is not None else adapter_path, force=force)
        if model_id is not None and not force:
            check_fits(loaded, model_id, None)
        super().__init__(
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager or base_embed_model.callback_manager,
            model_name=f"queryfit adapter for {base_embed_model.model_name}",
        )
        self._base_embed_model = base_embed_model
        self._adapter = loaded
        self._transform_query = transform_query
        self._force = force

    @classmethod
    def class_name(cls) -> str:
        return "QueryfitAdaptedEmbeddingModel"

    @property
    def adapter(self) -> Adapter:
        """The queryfit ``Adapter`` applied to queries."""
        return self._adapter

    def _adapt(self, vector: list[float]) -> list[float]:
        if not self._transform_query:
            return vector
        return adapt_query(self._adapter, vector, check=not self._force)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._adapt(self._base_embed_model._get_query_embedding(query))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._adapt(await self._base_embed_model._aget_query_embedding(query))

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._base_embed_model._get_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._base_embed_model._get_text_embeddings(texts)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await self._base_embed_model._aget_text_embedding(text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._base_embed_model._aget_text_embeddings(texts)


#: Drop-in names of LlamaIndex's own classes.
AdapterEmbeddingModel = AdaptedEmbeddingModel
LinearAdapterEmbeddingModel = AdaptedEmbeddingModel
