"""``search``: one question against an index, with and without the adapter, side by side.

The question is embedded once with the adapter's base model; the base vector and the adapted one
go to the index's own search (LanceDB, Chroma, Qdrant, FAISS), exactly as the user's application
would send them, so what changes is what their users would see. Chunk files have no search of
their own and are scanned exactly (cosine), batch by batch; a text-only source has its passages
embedded through the store for that scan.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.adapters import Adapter, as_adapter, check_fits
from queryfit.adapters.model import base_embedder
from queryfit.embedders.base import check_vectors
from queryfit.sources.base import Hit, PassageSource
from queryfit.sources.uri import open_source
from queryfit.store import EmbeddingStore
from queryfit.vectors import unit_rows


@dataclass
class SearchResult:
    """Top ``k`` for one question from one index, without (``base``) and with the adapter."""

    question: str
    index: str
    k: int
    score: str  # what the scores are: the store's own measure, or "cosine similarity"
    base: list[Hit]
    adapted: list[Hit]
    model_id: str
    model_calls: int
    store_search: bool  # the index's own search (True) or an exact scan of a file (False)
    adapter: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["base"] = [hit.__dict__ for hit in self.base]
        out["adapted"] = [hit.__dict__ for hit in self.adapted]
        return out


def exact_search(
    source: PassageSource, queries: np.ndarray, k: int, embed: Any = None
) -> list[list[Hit]]:
    """Exact cosine top ``k`` per query row, in one streaming pass over the source.

    Only the current best ``k`` per query are kept between batches. ``embed(texts)`` makes the
    vectors of a text-only source.
    """
    queries = unit_rows(np.atleast_2d(queries))
    best: list[list[tuple[float, int, str, str]]] = [[] for _ in range(len(queries))]
    for batch in source.batches(vectors=True):
        vectors = batch.vectors if batch.vectors is not None else embed(batch.texts)
        scores = queries @ unit_rows(vectors).T
        take = min(k, scores.shape[1])
        for row, top in enumerate(best):
            idx = np.argpartition(-scores[row], take - 1)[:take]
            candidates = top + [
                (float(scores[row, i]), -(batch.start + int(i)), batch.ids[i], batch.texts[i])
                for i in idx
            ]
            best[row] = heapq.nlargest(k, candidates)  # ties: the earlier passage first
    return [[Hit(pid, text, score) for score, _, pid, text in top] for top in best]


def search(
    index: Any,
    adapter: Adapter | str | Path,
    question: str,
    *,
    k: int = 5,
    model: Any = None,
    store: Any = None,
    force: bool = False,
) -> SearchResult:
    """Search ``index`` for ``question`` with the base model and with ``adapter``.

    The model defaults to the adapter's base model (with its prefixes). ``store`` caches the
    passage vectors of a text-only source. ``force`` uses the adapter with another model.
    """
    from queryfit.errors import SourceError

    if not isinstance(question, str) or not question.strip():
        raise SourceError("search needs a question: pass it as the argument, in quotes")
    if k < 1:
        raise SourceError(f"--top-k must be at least 1, not {k}")
    adapter = as_adapter(adapter, force=force)
    embedder = base_embedder(adapter, model)
    if not force:
        check_fits(adapter, embedder.model_id, embedder.dim)
    source = open_source(index)
    try:
        if source.dim is not None and source.dim != adapter.dim:
            raise source.fail(
                f"its vectors have {source.dim} dimensions, the adapter's model "
                f"{adapter.base_model.id} makes {adapter.dim}",
                "search the index built with the adapter's model",
            )
        query = check_vectors(embedder.embed_queries([question]), 1, None, embedder.model_id)[0]
        adapted = adapter.transform(query)
        native = source.native_search(query, k) if source.dim is not None else None
        calls = 1
        if native is not None:
            base_hits, score = native
            adapted_hits = source.native_search(adapted, k)[0]  # type: ignore[index]
        else:
            db = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
            try:

                def embed(texts: list[str]) -> np.ndarray:
                    return db.embed(embedder, texts, "document", progress=False)

                base_hits, adapted_hits = exact_search(
                    source, np.stack([query, adapted]), k, embed=embed
                )
                calls += db.stats.model_calls
            finally:
                if db is not store:
                    db.close()
            score = "cosine similarity"
    finally:
        if source is not index:
            source.close()
    return SearchResult(
        question=question,
        index=source.uri,
        k=k,
        score=score,
        base=base_hits,
        adapted=adapted_hits,
        model_id=embedder.model_id,
        model_calls=calls,
        store_search=native is not None,
        adapter=dict(adapter.describe()),
    )
