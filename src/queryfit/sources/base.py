"""The passage-source contract: a collection read in batches of (id, text, vector, metadata).

A source is whatever holds a user's chunks today (a vector store, a chunk file, Python objects).
queryfit reads it batch by batch into arrays it preallocates, so a collection of a million
passages never exists as a million Python objects; every batch is checked here, once, the same
way for every store: ids present and unique, texts present, vectors of one dimension and finite.
Each store's module only translates its own client's answers into raw batches.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from queryfit.errors import SourceError

#: Passages per batch: ~1.5 MB of 384-d vectors, few enough round trips to any local store.
DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Fields:
    """Names of the id, text and vector fields where stores differ; None takes the default."""

    id: str | None = None
    text: str | None = None
    vector: str | None = None


@dataclass
class PassageBatch:
    """Consecutive passages of a source: ``vectors`` is float32 ``[len(ids), dim]`` or None."""

    start: int  # position of the first passage in the source's reading order
    ids: list[str]
    texts: list[str]
    vectors: np.ndarray | None
    metadata: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Hit:
    """One search result: a passage and the score its store gave it."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawBatch:
    """What a store's module yields: values as its client returned them, unchecked."""

    ids: Sequence[Any]
    texts: Sequence[Any]
    vectors: Any = None  # 2-d array, or a sequence of per-passage sequences (or None)
    metadata: list[dict[str, Any]] | None = None


def require(module: str, extra: str) -> Any:
    """Import a store's library, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SourceError(
            f"reading this index needs the {module} package: pip install 'queryfit[{extra}]'"
        ) from exc


class PassageSource:
    """A collection of passages with an id, a text, optionally a vector, and metadata.

    Subclasses implement :meth:`count`, :meth:`_dim`, :meth:`_read` and optionally
    :meth:`native_search` and :meth:`close`; :meth:`batches` checks what ``_read`` returns.
    ``dim`` is None for a text-only source (its vectors come from the model, through the store).
    """

    scheme = "source"
    #: Which field ``text_field=`` / ``vector_field=`` / ``id_field=`` name in this store.
    fields: Fields = Fields()

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._dim_value: int | None | bool = False  # False: not looked up yet

    # -- what a store implements ----------------------------------------------------------------

    def count(self) -> int:
        """Number of passages in the collection."""
        raise NotImplementedError

    def _dim(self) -> int | None:
        """Vector dimension (from the schema or the first vector), None when there are none."""
        raise NotImplementedError

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        """Raw batches in a stable order (the same on every read of an unchanged collection)."""
        raise NotImplementedError

    def native_search(self, vector: np.ndarray, k: int) -> tuple[list[Hit], str] | None:
        """Top ``k`` by the store's own search and the name of its score; None if it has none."""
        return None

    def close(self) -> None:
        """Release the store's client (Qdrant's local mode locks its folder while open)."""

    # -- shared ---------------------------------------------------------------------------------

    def __enter__(self) -> PassageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    @property
    def dim(self) -> int | None:
        """Vector dimension, or None for a text-only source."""
        if self._dim_value is False:
            self._dim_value = self._dim()
        return self._dim_value  # type: ignore[return-value]

    @property
    def has_vectors(self) -> bool:
        return self.dim is not None

    def fail(self, problem: str, fix: str) -> SourceError:
        """The one-line error every source raises: where, what, and the way out."""
        return SourceError(f"index {self.uri}: {problem}; {fix}")

    def batches(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        vectors: bool = True,
        metadata: bool = False,
    ) -> Iterator[PassageBatch]:
        """Checked batches of passages in the source's order; vectors only when it has them."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        want_vectors = vectors and self.has_vectors
        seen: set[str] = set()
        start = 0
        for raw in self._read(batch_size, want_vectors, metadata):
            n = len(raw.ids)
            if n == 0:
                continue
            ids = self._ids(raw.ids, start, seen)
            texts = self._texts(raw.texts, start, ids)
            matrix = self._matrix(raw.vectors, start, ids) if want_vectors else None
            yield PassageBatch(start, ids, texts, matrix, raw.metadata if metadata else None)
            start += n
        if start == 0:
            raise self.fail(
                "it holds no passages", "point --index at a collection with passages in it"
            )

    def _ids(self, raw: Sequence[Any], start: int, seen: set[str]) -> list[str]:
        ids: list[str] = []
        for i, value in enumerate(raw):
            if value is None or (isinstance(value, str) and not value):
                raise self.fail(
                    f"passage {start + i} has no id in field {self.fields.id!r}",
                    "give every passage an id, or pass id_field= naming the field that holds it",
                )
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            key = value if isinstance(value, str) else str(value)
            if key in seen:
                raise self.fail(
                    f"id {key!r} is used by two passages",
                    "ids must be unique; pass id_field= naming a unique field",
                )
            seen.add(key)
            ids.append(key)
        return ids

    def _texts(self, raw: Sequence[Any], start: int, ids: list[str]) -> list[str]:
        texts = list(raw)
        if len(texts) != len(ids):
            raise self.fail(
                f"{len(ids)} ids but {len(texts)} texts in one batch", "check the text field"
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                what = "no text" if text is None else f"a {type(text).__name__}, not text,"
                raise self.fail(
                    f"passage {ids[i]!r} (row {start + i}) has {what} in field "
                    f"{self.fields.text!r}",
                    "pass text_field= naming the field that holds the passage text",
                )
        return texts

    def _matrix(self, raw: Any, start: int, ids: list[str]) -> np.ndarray:
        """float32 ``[n, dim]`` from a client's vectors, or the error naming the first bad row."""
        dim = self.dim
        assert dim is not None
        if isinstance(raw, np.ndarray) and raw.ndim == 2 and raw.dtype != object:
            matrix = raw
        else:
            rows = list(raw) if raw is not None else [None] * len(ids)
            for i, row in enumerate(rows):
                if row is None:
                    raise self.fail(
                        f"passage {ids[i]!r} (row {start + i}) has no vector in field "
                        f"{self.fields.vector!r}",
                        "embed every passage, or pass vector_field= naming the vector field",
                    )
                if not hasattr(row, "__len__") or isinstance(row, str | bytes | dict):
                    raise self.fail(
                        f"passage {ids[i]!r} (row {start + i}) has a {type(row).__name__} in "
                        f"field {self.fields.vector!r}, not a list of numbers",
                        "pass vector_field= naming the field that holds the embeddings",
                    )
                if len(row) != dim:
                    raise self._mixed(ids[i], start + i, len(row), dim)
            try:
                matrix = np.asarray(rows, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise self.fail(
                    f"the vectors in field {self.fields.vector!r} are not lists of numbers ({exc})",
                    "pass vector_field= naming the field that holds the embeddings",
                ) from exc
        if matrix.shape != (len(ids), dim):
            if matrix.shape[0] == len(ids) and matrix.ndim == 2:
                raise self._mixed(ids[0], start, matrix.shape[1], dim)
            raise self.fail(
                f"{len(ids)} passages but vectors of shape {list(matrix.shape)} in one batch",
                "check vector_field=",
            )
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise self.fail(
                f"the vector of passage {ids[row]!r} (row {start + row}) holds NaN or infinite "
                f"values ({int((~finite).sum())} such vectors in rows "
                f"{start}-{start + len(ids) - 1})",
                "re-embed those passages or remove them from the index",
            )
        return matrix

    def _mixed(self, passage_id: str, row: int, length: int, dim: int) -> SourceError:
        return self.fail(
            f"mixed vector dimensions: passage {passage_id!r} (row {row}) has {length} numbers "
            f"in field {self.fields.vector!r}, the first passage {dim}",
            "keep one model's vectors per index (or pass vector_field= naming a field of one size)",
        )
