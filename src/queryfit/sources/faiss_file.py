"""A FAISS index file plus the passages it indexes: ``faiss:INDEX?docs=FILE.jsonl``.

A FAISS index holds vectors only, so the ids and texts come from a JSON Lines file whose line
``i`` describes the ``i``-th vector added (``{"id": ..., "text": ..., ...metadata}``). Vectors
are read back with ``reconstruct_n`` in batches; an ``IndexIDMap`` is unwrapped to the index it
maps, and an IVF index gets the direct map reconstruction needs. Index types that cannot give
their vectors back (LSH, some compressed forms) are refused with a clear line, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.sources.base import Fields, Hit, PassageSource, RawBatch, require
from queryfit.sources.lines import count_lines, json_objects, line_field


class FaissSource(PassageSource):
    scheme = "faiss"

    def __init__(self, uri: str, path: str, docs: str, fields: Fields) -> None:
        super().__init__(uri)
        self.faiss = require("faiss", "faiss")
        if fields.vector:
            raise self.fail("a FAISS index holds one vector per entry", "leave vector_field= out")
        index_path, self.docs_path = Path(path), Path(docs)
        if not index_path.is_file():
            raise self.fail(
                f"no FAISS index file at {index_path}", "pass faiss:INDEX_FILE?docs=..."
            )
        if not self.docs_path.is_file():
            raise self.fail(
                f"no passages file at {self.docs_path}",
                'pass ?docs=FILE.jsonl with one {"id", "text"} line per vector, in index order',
            )
        try:
            self.index = self.faiss.read_index(str(index_path))
        except RuntimeError as exc:
            raise self.fail(
                f"{index_path} is not a FAISS index file", "write it with faiss.write_index"
            ) from exc
        self.fields = Fields(id=fields.id or "id", text=fields.text or "text", vector="vector")
        self._labels: np.ndarray | None = None
        self._store = self._vector_store()
        self._lines = count_lines(self.docs_path)
        if self._lines != self.index.ntotal:
            raise self.fail(
                f"{self.docs_path} has {self._lines} passages but the index holds "
                f"{self.index.ntotal} vectors",
                "write one line per vector, in the order the vectors were added",
            )

    def _vector_store(self) -> Any:
        """The index whose ``reconstruct_n(i, n)`` gives the vectors in the order of adding."""
        faiss = self.faiss
        index = faiss.downcast_index(self.index)
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
            self._labels = faiss.vector_to_array(index.id_map)
            index = faiss.downcast_index(index.index)
        if index.ntotal == 0:
            return index
        try:
            index.reconstruct(0)  # a single call raises; reconstruct_n of some types aborts
        except RuntimeError:
            if not hasattr(index, "make_direct_map"):
                raise self._cannot(index) from None
            try:
                index.make_direct_map()
                index.reconstruct(0)
            except RuntimeError:
                raise self._cannot(index) from None
        return index

    def _cannot(self, index: Any) -> Exception:
        return self.fail(
            f"the index ({type(index).__name__}) cannot give back the vectors it holds",
            "export the vectors to Parquet (parquet:FILE with a vector column) or use a flat, "
            "HNSW-flat or IVF-flat index",
        )

    def count(self) -> int:
        return int(self.index.ntotal)

    def _dim(self) -> int | None:
        return int(self.index.d)

    def _docs(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return json_objects(self.docs_path, self.fail, f" of {self.docs_path}")

    def _row_value(self, number: int, row: dict[str, Any], key: str, role: str) -> Any:
        return line_field(self.fail, number, row, key, role, f" of {self.docs_path}")

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        id_key, text_key = self.fields.id or "id", self.fields.text or "text"
        pending: list[tuple[int, dict[str, Any]]] = []
        start = 0

        def flush() -> RawBatch:
            nonlocal start
            rows = [row for _, row in pending]
            ids = [self._row_value(n, row, id_key, "id") for n, row in pending]
            texts = [self._row_value(n, row, text_key, "text") for n, row in pending]
            vecs = self._store.reconstruct_n(start, len(rows)) if vectors else None
            meta = None
            if metadata:
                meta = [{k: v for k, v in r.items() if k not in (id_key, text_key)} for r in rows]
            start += len(rows)
            pending.clear()
            return RawBatch(ids=ids, texts=texts, vectors=vecs, metadata=meta)

        for item in self._docs():
            pending.append(item)
            if len(pending) == batch_size:
                yield flush()
        if pending:
            yield flush()

    def native_search(self, vector: np.ndarray, k: int) -> tuple[list[Hit], str]:
        scores, labels = self.index.search(vector.astype(np.float32)[None, :], k)
        rows: list[int] = []
        kept: list[float] = []
        for label, score in zip(labels[0], scores[0], strict=True):
            if label < 0:  # fewer than k vectors
                continue
            if self._labels is not None:
                label = int(np.flatnonzero(self._labels == label)[0])
            rows.append(int(label))
            kept.append(float(score))
        wanted = set(rows)
        found: dict[int, tuple[str, str]] = {}
        id_key, text_key = self.fields.id or "id", self.fields.text or "text"
        for row, (number, doc) in enumerate(self._docs()):
            if row in wanted:
                found[row] = (
                    str(self._row_value(number, doc, id_key, "id")),
                    str(self._row_value(number, doc, text_key, "text")),
                )
                if len(found) == len(wanted):
                    break
        hits = [Hit(*found[row], score) for row, score in zip(rows, kept, strict=True)]
        metric = (
            "inner product"
            if self.index.metric_type == self.faiss.METRIC_INNER_PRODUCT
            else ("l2 distance (squared)")
        )
        return hits, metric
