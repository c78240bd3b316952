"""The adapted model: queries go through the adapter, documents pass through untouched.

``AdaptedEmbedder`` wraps any base embedder (a spec string, a queryfit embedder, a LlamaIndex or
LangChain embedding object, a function) and a trained adapter. Because document vectors are exactly
the base model's, an index built with the base model keeps working: only the query side changes.

Example::

    from queryfit import AdaptedEmbedder
    emb = AdaptedEmbedder.from_pretrained("adapter/")       # base model read from adapter.json
    q = emb.embed_queries(["how do I reset my password?"])  # adapted
    d = emb.embed_documents(["To reset your password..."])  # same as the base model's

    emb.as_llamaindex()   # a LlamaIndex BaseEmbedding   (pip install 'queryfit[llamaindex]')
    emb.as_langchain()    # a LangChain Embeddings       (pip install 'queryfit[langchain]')
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.adapters import Adapter, as_adapter, check_fits
from queryfit.adapters.model import base_embedder
from queryfit.embedders import Embedder, get_embedder
from queryfit.embedders.base import Kind, check_kind
from queryfit.errors import AdapterError


def adapter_digest(adapter: Adapter) -> str:
    """A short content hash of the adapter's function: type, arrays and normalisation."""
    h = hashlib.sha256()
    h.update(f"{adapter.type}|{adapter.dim}|{adapter.normalize}".encode())
    for name in sorted(adapter.params):
        array = np.ascontiguousarray(adapter.params[name], dtype="<f4")
        h.update(name.encode() + b"|" + str(array.shape).encode() + b"|" + array.tobytes())
    return h.hexdigest()[:16]


class AdaptedEmbedder:
    """A base embedder with a query adapter: an ``Embedder`` in its own right.

    ``store`` (an :class:`~queryfit.store.EmbeddingStore` or a path) caches the *base* vectors, so
    documents already embedded for training are never embedded again. ``force`` skips the check
    that the adapter was trained for this base model.
    """

    def __init__(
        self,
        base: Any,
        adapter: Adapter | str | Path,
        *,
        store: Any = None,
        force: bool = False,
        progress: bool = False,
    ) -> None:
        self.adapter = as_adapter(adapter, force=force)
        self.base: Embedder = get_embedder(base)
        if not force:
            # Checking dim may load a local model or probe an API once: only when both are known.
            check_fits(self.adapter, self.base.model_id, None)
        self.force = force
        self.digest = adapter_digest(self.adapter)
        self.model_id = f"{self.base.model_id}+adapter:{self.digest}"
        if store is not None and not hasattr(store, "embed"):
            from queryfit.store import EmbeddingStore

            store = EmbeddingStore(store)
        self.store = store
        self.progress = progress
        self._checked_dim = False

    @classmethod
    def from_pretrained(
        cls,
        adapter: str | Path | Adapter,
        model: Any = None,
        *,
        store: Any = None,
        force: bool = False,
        **model_options: Any,
    ) -> AdaptedEmbedder:
        """The adapter with its own base model (read from ``adapter.json``) unless ``model`` given.

        ``model_options`` (``base_url``, ``api_key``, ``dimensions``...) go to the base model; its
        query and document prefixes are the ones the adapter was trained with.
        """
        adapter = as_adapter(adapter, force=force)
        if model is None and adapter.base_model.id is None:
            raise AdapterError(
                "this adapter does not record its base model (e.g. one imported from LlamaIndex "
                "without --model); pass model='provider:name'"
            )
        base = base_embedder(adapter, model, **model_options)
        return cls(base, adapter, store=store, force=force)

    # -- the Embedder protocol ---------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector size: the base model's (an adapter maps queries into the documents' space)."""
        dim = int(self.base.dim)
        if not self._checked_dim and not self.force:
            check_fits(self.adapter, self.base.model_id, dim)
            self._checked_dim = True
        return dim

    @property
    def query_prefix(self) -> str:
        return self.base.query_prefix

    @property
    def document_prefix(self) -> str:
        return self.base.document_prefix

    def store_key(self, kind: Kind) -> str:
        """Documents share the base model's key (they are its vectors); queries add the adapter."""
        key = self.base.store_key(check_kind(kind))
        return key if kind == "document" else f"{key}|adapter={self.digest}"

    def _base_vectors(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        if self.store is not None:
            return self.store.embed(self.base, list(texts), kind, progress=self.progress)
        if kind == "query":
            return self.base.embed_queries(list(texts))
        return self.base.embed_documents(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Base query vectors mapped through the adapter, float32 ``[n, dim]``."""
        _ = self.dim  # checks the adapter against the model once
        vectors = self._base_vectors(texts, "query")
        if len(vectors) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.adapter.transform(vectors)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """The base model's document vectors, untouched."""
        return self._base_vectors(texts, "document")

    def embed_query(self, text: str) -> np.ndarray:
        """One adapted query vector ``[dim]``."""
        return self.embed_queries([text])[0]

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Adapt query vectors that were already embedded with the base model."""
        return self.adapter.transform(vectors)

    # -- integrations ------------------------------------------------------------------------

    def as_llamaindex(self, **kwargs: Any) -> Any:
        """This embedder as a LlamaIndex ``BaseEmbedding`` (needs ``llama-index-core``)."""
        from queryfit.integrations.llamaindex import to_llamaindex

        return to_llamaindex(self, **kwargs)

    def as_langchain(self) -> Any:
        """This embedder as a LangChain ``Embeddings`` (needs ``langchain-core``)."""
        from queryfit.integrations.langchain import to_langchain

        return to_langchain(self)

    def __repr__(self) -> str:
        return (
            f"AdaptedEmbedder(base={self.base.model_id!r}, adapter={self.adapter.type!r}, "
            f"digest={self.digest!r})"
        )
