"""The embedder contract every model provider implements.

queryfit never cares *how* a vector is made, only that the same text under the same settings gives
the same vector: that is what lets the embedding store cache each text once and lets an adapter
trained today be applied to query vectors made tomorrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from queryfit.errors import EmbedderError

Kind = Literal["query", "document"]
KINDS: tuple[Kind, ...] = ("query", "document")


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into float32 vectors of a fixed size."""

    model_id: str
    dim: int
    query_prefix: str
    document_prefix: str

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Return float32 ``[len(texts), dim]``; applies ``query_prefix``."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Return float32 ``[len(texts), dim]``; applies ``document_prefix``."""
        ...

    def store_key(self, kind: Kind) -> str:
        """Namespace in the embedding store: everything that changes a vector of this kind."""
        ...


def check_kind(kind: str) -> Kind:
    """Reject a typo early: a wrong kind would silently pick the wrong prefix."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
    return kind  # type: ignore[return-value]


def check_vectors(vectors: Any, n: int, dim: int | None, model_id: str) -> np.ndarray:
    """Coerce a model's output to float32 ``[n, dim]`` or explain what is wrong with it.

    A model that returns the wrong shape or NaNs would otherwise poison the store for good, so the
    output is checked once here, before anything is cached.
    """
    try:
        arr = np.asarray(vectors)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the model's fault
        raise EmbedderError(
            f"embedder {model_id} returned something that is not an array: {exc}"
        ) from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise EmbedderError(
            f"embedder {model_id} returned vectors of type {arr.dtype}; expected real numbers"
        )
    if arr.ndim != 2 or arr.shape[0] != n or (dim is not None and arr.shape[1] != dim):
        want = f"[{n}, {dim if dim is not None else 'dim'}]"
        raise EmbedderError(
            f"embedder {model_id} returned an array of shape {list(arr.shape)} for {n} texts; "
            f"expected {want}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise EmbedderError(
            f"embedder {model_id} returned non-finite values (NaN or inf) for {bad} of {n} texts"
        )
    return arr


class BaseEmbedder:
    """Convenience base: prefixes, validation and the store key, around one ``_embed`` method.

    Subclasses set ``model_id``, ``query_prefix``, ``document_prefix`` and provide ``dim`` (an
    attribute or property) and ``_embed``.
    """

    model_id: str
    dim: int
    query_prefix: str = ""
    document_prefix: str = ""
    #: How many texts the store sends per call; each call is committed on its own.
    max_batch_size: int = 64

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Embed already-prefixed texts; returns an array-like ``[len(texts), dim]``."""
        raise NotImplementedError

    def _key_options(self) -> list[str]:
        """Extra settings that change vectors (e.g. normalisation); part of the store key."""
        return []

    def _kind_options(self, kind: Kind) -> list[str]:
        """Settings that depend on the kind (e.g. an API's input_type); part of the store key."""
        return []

    def prefix_for(self, kind: Kind) -> str:
        """The prefix applied to texts of this kind."""
        return self.query_prefix if check_kind(kind) == "query" else self.document_prefix

    def _key_parts(self, kind: Kind, dim: int | None) -> list[str]:
        """The parts of the store key; ``dim`` None leaves the size out (see ``setting_key``)."""
        return [
            self.model_id,
            *([f"dim={dim}"] if dim is not None else []),
            *self._key_options(),
            *self._kind_options(kind),
            f"prefix={self.prefix_for(kind)!r}",
        ]

    def store_key(self, kind: Kind) -> str:
        """Deterministic namespace for the store.

        The kind itself is left out on purpose: a symmetric model with equal prefixes makes the same
        vector for a text whether it is a query or a document, so both share one cache entry.
        """
        check_kind(kind)  # before ``dim``, which may load a model or send a probe request
        return "|".join(self._key_parts(kind, self.dim))

    def setting_key(self, kind: Kind) -> str:
        """The store key without the vector size, which it never needs to learn.

        Under it the store remembers the size it saw, so that an embedder that would have to
        probe for its size (see :class:`ProbedDim`) can be told instead.
        """
        return "|".join(self._key_parts(check_kind(kind), None))

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        """Embed texts of the given kind, applying its prefix."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        prefix = self.prefix_for(kind)
        prefixed = [prefix + t for t in texts]
        if not prefixed:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._embed(prefixed, kind)
        return check_vectors(out, len(prefixed), self.dim, self.model_id)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (``query_prefix`` applied)."""
        return self.embed(texts, "query")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents (``document_prefix`` applied)."""
        return self.embed(texts, "document")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, "
            f"query_prefix={self.query_prefix!r}, document_prefix={self.document_prefix!r})"
        )


class ProbedDim:
    """For embedders whose vector size may only be learnt by embedding one text.

    An API model of unknown size costs one probe request per process to learn it. The store
    remembers the size it saw for the same setting and hands it over with :meth:`adopt_dim`, so a
    warm run sends no request at all; a size that no longer holds is caught by the first real
    call (:func:`check_vectors` against ``dim``).
    """

    #: Text sent once to discover ``dim`` when it is asked for before any embedding.
    probe_text = "dimension probe"
    _dim: int | None = None

    def _probe_dim(self) -> int:
        """Embed :attr:`probe_text` once and return the vector size."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Vector size: given, known, told by the store, or learnt from one probe."""
        if self._dim is None:
            self._dim = int(self._probe_dim())
        return self._dim

    @property
    def dim_known(self) -> bool:
        """Whether ``dim`` can be answered without a probe."""
        return self._dim is not None

    def adopt_dim(self, dim: int) -> None:
        """Take a size learnt elsewhere (the store's memory) instead of probing for it."""
        if self._dim is None:
            self._dim = int(dim)


class CallableEmbedder(ProbedDim, BaseEmbedder):
    """Wrap a plain function ``list[str] -> array-like`` as an embedder.

    Handy for tests and for users whose model lives behind their own code. ``dim`` is discovered by
    the first call when not given, so nothing is computed until needed.
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        model_id: str,
        dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        *,
        max_batch_size: int = 64,
    ) -> None:
        if not callable(fn):
            raise TypeError("fn must be callable: list[str] -> array-like [n, dim]")
        if not model_id or not isinstance(model_id, str):
            raise EmbedderError("CallableEmbedder needs a non-empty model_id string")
        if dim is not None and (not isinstance(dim, int) or dim <= 0):
            raise EmbedderError(f"dim must be a positive integer, not {dim!r}")
        if max_batch_size <= 0:
            raise EmbedderError(f"max_batch_size must be positive, not {max_batch_size}")
        self.fn = fn
        self.model_id = model_id
        self._dim = dim
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.max_batch_size = max_batch_size

    def _probe_dim(self) -> int:
        return int(check_vectors(self.fn([self.probe_text]), 1, None, self.model_id).shape[1])

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        out = check_vectors(self.fn(list(texts)), len(texts), self._dim, self.model_id)
        if self._dim is None:
            self._dim = int(out.shape[1])
        return out
