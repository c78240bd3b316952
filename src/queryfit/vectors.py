"""The vectors stage: a dataset's queries and passages as matrices, each text embedded once.

Everything after this stage (training, evaluation) works on these arrays alone, so a user who
already holds vectors in their own store can enter here without any model at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from queryfit.data import QADataset
from queryfit.embedders import Embedder
from queryfit.store import EmbeddingStore, Runner


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (cosine by inner product); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class RetrievalVectors:
    """Query vectors, the passage vectors they search, and which passages are relevant to which.

    ``relevant[i]`` maps a row of ``docs`` to a grade > 0 for query row ``i``.
    """

    queries: np.ndarray
    docs: np.ndarray
    relevant: list[dict[int, float]]
    query_ids: list[str] | None = None
    doc_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.queries.ndim != 2 or self.docs.ndim != 2:
            raise ValueError("queries and docs must be 2-d arrays")
        if self.queries.shape[1] != self.docs.shape[1]:
            raise ValueError(
                f"query dim {self.queries.shape[1]} != passage dim {self.docs.shape[1]}"
            )
        if len(self.relevant) != len(self.queries):
            raise ValueError("relevant must hold one entry per query row")

    @property
    def dim(self) -> int:
        return int(self.queries.shape[1])

    def select(self, rows: Sequence[int]) -> RetrievalVectors:
        """The same corpus searched by a subset of the queries."""
        rows = list(rows)
        return RetrievalVectors(
            queries=self.queries[rows],
            docs=self.docs,
            relevant=[self.relevant[i] for i in rows],
            query_ids=[self.query_ids[i] for i in rows] if self.query_ids else None,
            doc_ids=self.doc_ids,
        )


def relevance_rows(dataset: QADataset, doc_ids: Sequence[str]) -> list[dict[int, float]]:
    """Translate a dataset's relevant doc ids into row indices of ``doc_ids``."""
    row_of = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    return [
        {row_of[d]: 1.0 for d in dataset.relevant_docs[qid] if d in row_of}
        for qid in dataset.queries
    ]


def embed_dataset(
    dataset: QADataset,
    embedder: Embedder,
    store: EmbeddingStore,
    *,
    progress: bool = True,
    runner: Runner | None = None,
) -> RetrievalVectors:
    """Embed a dataset's queries and passages through the store (cached texts cost nothing).

    ``runner`` embeds the texts the store lacks elsewhere (see :meth:`EmbeddingStore.embed`).
    """
    query_ids, doc_ids = list(dataset.queries), list(dataset.corpus)
    docs = store.embed(
        embedder,
        [dataset.corpus[i] for i in doc_ids],
        "document",
        progress=progress,
        description="embedding passages",
        runner=runner,
    )
    queries = store.embed(
        embedder,
        [dataset.queries[i] for i in query_ids],
        "query",
        progress=progress,
        description="embedding queries",
        runner=runner,
    )
    return RetrievalVectors(
        queries=queries,
        docs=docs,
        relevant=relevance_rows(dataset, doc_ids),
        query_ids=query_ids,
        doc_ids=doc_ids,
    )


def restrict(vectors: RetrievalVectors, part: QADataset) -> RetrievalVectors:
    """The rows of ``vectors`` (embedded from a whole dataset) that belong to a split ``part``."""
    if vectors.query_ids is None or vectors.doc_ids is None:
        raise ValueError("restrict needs vectors that carry their query and passage ids")
    query_row = {qid: i for i, qid in enumerate(vectors.query_ids)}
    doc_row = {did: i for i, did in enumerate(vectors.doc_ids)}
    query_ids, doc_ids = list(part.queries), list(part.corpus)
    return RetrievalVectors(
        queries=vectors.queries[[query_row[q] for q in query_ids]],
        docs=vectors.docs[[doc_row[d] for d in doc_ids]],
        relevant=relevance_rows(part, doc_ids),
        query_ids=query_ids,
        doc_ids=doc_ids,
    )
