"""Embedding objects from other frameworks, and plain callables, as queryfit embedders.

``get_embedder`` accepts a LlamaIndex ``BaseEmbedding``, a LangChain ``Embeddings`` or a plain
function and wraps it here, so whatever model a user already runs can be cached, trained for and
evaluated. Recognition is by duck typing: neither framework is imported by queryfit.

The framework's own query handling is kept: LlamaIndex's ``get_query_embedding`` and LangChain's
``embed_query`` may add a query instruction, so query and document vectors always live under
separate store keys here.

Example::

    from llama_index.embeddings.openai import OpenAIEmbedding
    emb = get_embedder(OpenAIEmbedding(model="text-embedding-3-small"))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from queryfit.embedders.base import BaseEmbedder, CallableEmbedder, Kind, check_kind, check_vectors
from queryfit.errors import EmbedderError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+-]+")


def _clean(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-")


def is_llamaindex_embedding(obj: object) -> bool:
    """True for a LlamaIndex ``BaseEmbedding`` (checked by its methods, without importing it)."""
    return callable(getattr(obj, "get_text_embedding_batch", None)) and callable(
        getattr(obj, "get_query_embedding", None)
    )


def is_langchain_embeddings(obj: object) -> bool:
    """True for a LangChain ``Embeddings`` (checked by its methods, without importing it)."""
    return callable(getattr(obj, "embed_documents", None)) and callable(
        getattr(obj, "embed_query", None)
    )


def _model_name(obj: object) -> str | None:
    for attr in ("model_name", "model", "model_id", "deployment"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class _FrameworkEmbedder(BaseEmbedder):
    """Common part: lazily discovered ``dim``, a kind-aware store key, a stable ``model_id``."""

    framework = "framework"

    def __init__(
        self,
        obj: Any,
        *,
        model_id: str | None = None,
        dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 64,
    ) -> None:
        if batch_size <= 0:
            raise EmbedderError(f"batch_size must be positive, not {batch_size}")
        if dim is not None and (not isinstance(dim, int) or dim <= 0):
            raise EmbedderError(f"dim must be a positive integer, not {dim!r}")
        self.obj = obj
        if model_id is None:
            name = _model_name(obj)
            if name is None:
                raise EmbedderError(
                    f"cannot tell which model this {type(obj).__name__} uses (it has no "
                    "model_name/model attribute); pass model_id='...' so stored vectors and "
                    "adapters are tied to the right model"
                )
            model_id = f"{self.framework}:{type(obj).__name__}:{_clean(name)}"
        self.model_id = model_id
        self._dim = dim
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.max_batch_size = batch_size

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Vector size; one probe document the first time, unless given."""
        if self._dim is None:
            out = check_vectors(self._documents(["dimension probe"]), 1, None, self.model_id)
            self._dim = int(out.shape[1])
        return self._dim

    def store_key(self, kind: Kind) -> str:
        """Like the base key, plus the kind: the framework may treat queries differently."""
        return f"{super().store_key(kind)}|kind={check_kind(kind)}"

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        out = self._queries(texts) if kind == "query" else self._documents(texts)
        return check_vectors(out, len(texts), self._dim, self.model_id)

    def _queries(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def _documents(self, texts: list[str]) -> Any:
        raise NotImplementedError


class LlamaIndexEmbedder(_FrameworkEmbedder):
    """A LlamaIndex ``BaseEmbedding``: queries via ``get_query_embedding`` (with its instruction),
    documents via ``get_text_embedding_batch``."""

    framework = "llamaindex"

    def _queries(self, texts: list[str]) -> Any:
        return [self.obj.get_query_embedding(t) for t in texts]

    def _documents(self, texts: list[str]) -> Any:
        return self.obj.get_text_embedding_batch(list(texts))


class LangChainEmbedder(_FrameworkEmbedder):
    """A LangChain ``Embeddings``: queries via ``embed_query``, documents ``embed_documents``."""

    framework = "langchain"

    def _queries(self, texts: list[str]) -> Any:
        return [self.obj.embed_query(t) for t in texts]

    def _documents(self, texts: list[str]) -> Any:
        return self.obj.embed_documents(list(texts))


def callable_embedder(fn: Callable[[list[str]], Any], options: dict[str, Any]) -> CallableEmbedder:
    """A plain function ``list[str] -> [n, dim]``; named after the function unless ``model_id``."""
    options = dict(options)
    model_id = options.pop("model_id", None)
    if model_id is None:
        name = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", "")
        module = getattr(fn, "__module__", None) or ""
        if not name or "<lambda>" in name or "<locals>" in name:
            raise EmbedderError(
                "cannot name this function's model (a lambda or nested function has no stable "
                "name); pass model_id='my-model-v1' so stored vectors and adapters are tied to it"
            )
        model_id = f"callable:{module}.{name}" if module else f"callable:{name}"
    batch_size = options.pop("batch_size", options.pop("max_batch_size", 64))
    return CallableEmbedder(fn, model_id, max_batch_size=batch_size, **options)


def wrap_object(obj: object, options: dict[str, Any]) -> Any:
    """The embedder for a framework object or callable, or None when ``obj`` is none of them."""
    if is_llamaindex_embedding(obj):
        return LlamaIndexEmbedder(obj, **options)
    if is_langchain_embeddings(obj):
        return LangChainEmbedder(obj, **options)
    if callable(obj) and not isinstance(obj, type):
        return callable_embedder(obj, options)  # type: ignore[arg-type]
    return None
