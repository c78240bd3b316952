"""The index path of ``train`` and ``evaluate``: passage vectors from the user's index, as is.

:func:`embed_dataset` embeds a dataset's passages; :func:`index_vectors` reads them from the
index instead, so the adapter learns against exactly the vectors the index serves and no passage
is embedded again. Only the questions go to the model (through the store). The passages of the
dataset come first, in its corpus order (so a dataset trained through its texts and through an
index holding the model's vectors for those texts gives the same arrays, and the same adapter),
then every other passage of the index, as the distractors they are in real searches.

Before that is trusted, a small sample of the index's passages is embedded and compared with the
stored vectors (:func:`check_model`): vectors from another model, a prefix or a different
normalisation would train an adapter for a space the queries never come from.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from queryfit.console import progress_bar
from queryfit.data import QADataset
from queryfit.embedders import Embedder
from queryfit.embedders.base import check_vectors
from queryfit.sources.base import DEFAULT_BATCH_SIZE, PassageSource
from queryfit.sources.uri import open_source
from queryfit.store import EmbeddingStore
from queryfit.vectors import RetrievalVectors, relevance_rows

CHECK_PASSAGES = 8
CHECK_MIN_COSINE = 0.99
SHOWN_IDS = 3


@dataclass
class ModelCheck:
    """Does the model reproduce the index's vectors? Measured on a few of its passages."""

    passages: int
    lowest_cosine: float
    mean_cosine: float
    threshold: float
    passed: bool
    model_calls: int
    texts_embedded: int
    likely_cause: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["lowest_cosine"] = round(self.lowest_cosine, 6)
        out["mean_cosine"] = round(self.mean_cosine, 6)
        return out


@dataclass
class IndexVectors:
    """A dataset's vectors with the passages read from an index, and what reading them cost."""

    vectors: RetrievalVectors
    uri: str
    passages: int  # passages of the index: rows of vectors.docs
    pairs_passages: int  # of which the dataset's corpus (the first rows)
    passage_vectors_from_index: int
    passages_embedded: int  # text-only sources: passage texts the model embedded
    read_seconds: float
    model_calls: int  # everything this step asked of the model: questions, passages, the check
    texts_embedded: int
    texts_from_store: int
    texts_differ: int = 0  # passages whose text in the dataset differs from the index's
    check: ModelCheck | None = None
    index: Any = field(default=None, repr=False)  # what was opened, to read texts again

    @property
    def check_calls(self) -> int:
        """Model calls of the model check: they go to the model directly, not via the store."""
        return self.check.model_calls if self.check is not None else 0

    @property
    def check_texts(self) -> int:
        return self.check.texts_embedded if self.check is not None else 0

    def record(self) -> dict[str, Any]:
        """The facts for adapter.json and the reports (no passage text)."""
        return {
            "uri": self.uri,
            "passages": self.passages,
            "pairs_passages": self.pairs_passages,
            "passage_vectors_from_index": self.passage_vectors_from_index,
            "passages_embedded": self.passages_embedded,
            "read_seconds": round(self.read_seconds, 3),
            "texts_differ": self.texts_differ,
            "model_check": self.check.to_dict() if self.check is not None else None,
        }

    def texts_of(self, dataset: QADataset, rows: Iterable[int]) -> dict[str, str]:
        """Texts of the passages at ``rows`` that the dataset lacks (one more streaming read)."""
        doc_ids = self.vectors.doc_ids or []
        wanted = {doc_ids[r] for r in rows if 0 <= r < len(doc_ids)} - dataset.corpus.keys()
        return passage_texts(self.index, wanted) if wanted else {}


def passage_texts(index: Any, ids: Iterable[str]) -> dict[str, str]:
    """The texts of ``ids`` in an index, read in one streaming pass without its vectors."""
    wanted = set(ids)
    found: dict[str, str] = {}
    source = open_source(index)
    try:
        for batch in source.batches(vectors=False):
            for passage_id, text in zip(batch.ids, batch.texts, strict=True):
                if passage_id in wanted:
                    found[passage_id] = text
            if len(found) == len(wanted):
                break
    finally:
        if source is not index:
            source.close()
    return found


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def likely_cause(stored: np.ndarray, made: np.ndarray, mean_cosine: float) -> str:
    """The usual reason a model does not reproduce an index's vectors, from what was measured."""
    if mean_cosine < 0.8:
        return "another model made the index's vectors"
    stored_norms, made_norms = np.linalg.norm(stored, axis=1), np.linalg.norm(made, axis=1)
    stored_unit, made_unit = (
        bool(np.allclose(stored_norms, 1, atol=1e-3)),
        bool(np.allclose(made_norms, 1, atol=1e-3)),
    )
    if stored_unit != made_unit:  # scaling alone keeps cosines: something else was done too
        return (
            f"a different normalisation (stored vectors have norm {stored_norms.mean():.3g}, the "
            f"model's {made_norms.mean():.3g}: centred, whitened or compressed vectors?)"
        )
    return (
        "a prefix or instruction the index's passages were (or were not) embedded with, or "
        "another version of the model"
    )


def check_model(
    source: PassageSource,
    embedder: Embedder,
    texts: Sequence[str],
    stored: np.ndarray,
    *,
    force: bool = False,
    threshold: float = CHECK_MIN_COSINE,
) -> ModelCheck:
    """Embed ``texts`` (passages of the index) and compare with their ``stored`` vectors.

    Below ``threshold`` (lowest cosine) this refuses with the similarity and the likely cause,
    unless ``force``: then it warns and training goes on. The check goes to the model directly,
    not through the store, so its vectors never stand in for the index's.
    """
    made = check_vectors(
        embedder.embed_documents(list(texts)), len(texts), stored.shape[1], embedder.model_id
    )
    cosines = _cosines(stored, made)
    lowest, mean = float(cosines.min()), float(cosines.mean())
    passed = lowest >= threshold
    check = ModelCheck(
        passages=len(texts),
        lowest_cosine=lowest,
        mean_cosine=mean,
        threshold=threshold,
        passed=passed,
        model_calls=1,
        texts_embedded=len(texts),
        likely_cause=None if passed else likely_cause(stored, made, mean),
    )
    if not passed:
        what = (
            f"{embedder.model_id} does not reproduce its vectors: on {len(texts)} of its "
            f"passages the cosine between the stored vector and the model's is {lowest:.3f} at "
            f"worst ({mean:.3f} on average, {threshold} needed); likely {check.likely_cause}"
        )
        if not force:
            raise source.fail(
                what,
                "pass the model that built the index (with its prefixes) as --model, or --force to "
                "use these vectors anyway",
            )
        warnings.warn(f"index {source.uri}: {what}; going on (--force)", stacklevel=3)
    return check


def index_vectors(
    dataset: QADataset,
    index: Any,
    embedder: Embedder,
    store: EmbeddingStore,
    *,
    check_passages: int = CHECK_PASSAGES,
    force: bool = False,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> IndexVectors:
    """The dataset's query vectors (embedded) and passage vectors (read from ``index``).

    ``index`` is a URI, a :class:`PassageSource` or Python objects (see :func:`open_source`).
    Every passage id of the dataset must be in the index. ``check_passages`` passages are
    checked against the model first (0: no check). A text-only source has its passages embedded
    through the store instead, like :func:`~queryfit.vectors.embed_dataset` would.
    """
    source = open_source(index)
    try:
        result = _index_vectors(
            dataset, source, embedder, store, check_passages, force, seed, batch_size, progress
        )
        result.index = index
        return result
    finally:
        if source is not index:
            source.close()


def _index_vectors(
    dataset: QADataset,
    source: PassageSource,
    embedder: Embedder,
    store: EmbeddingStore,
    check_passages: int,
    force: bool,
    seed: int,
    batch_size: int,
    progress: bool,
) -> IndexVectors:
    stats = store.stats
    before = stats.model_calls, stats.texts_embedded, stats.texts_from_store
    n = source.count()
    if n == 0:
        raise source.fail("it holds no passages", "point --index at a collection with passages")
    dim = int(embedder.dim)
    if source.dim is not None and source.dim != dim:
        raise source.fail(
            f"its vectors have {source.dim} dimensions but {embedder.model_id} makes {dim}: "
            "another model built this index",
            "pass the model that built it with --model",
        )
    corpus_ids = list(dataset.corpus)
    row_of = {passage_id: row for row, passage_id in enumerate(corpus_ids)}
    found = np.zeros(len(corpus_ids), dtype=bool)
    docs = np.empty((max(n, len(corpus_ids)), dim), dtype=np.float32)
    doc_ids = list(corpus_ids)
    check_n = min(check_passages, n) if source.dim is not None else 0
    positions = set(np.random.default_rng(seed).choice(n, size=check_n, replace=False).tolist())
    sample: list[tuple[int, str]] = []
    differ: list[str] = []
    overflow = 0
    started = time.perf_counter()
    bar = progress_bar() if progress else None
    with bar if bar is not None else nullcontext():
        task = bar.add_task(f"reading passages from {source.uri}", total=n) if bar else None
        for batch in source.batches(batch_size, vectors=True):
            rows = np.empty(len(batch), dtype=np.int64)
            for j, (passage_id, text) in enumerate(zip(batch.ids, batch.texts, strict=True)):
                row = row_of.get(passage_id)
                if row is None:
                    row = len(doc_ids)
                    if row >= len(docs):  # pairs' passages missing, or the index grew: below
                        overflow += 1
                        rows[j] = -1
                        continue
                    doc_ids.append(passage_id)
                else:
                    found[row] = True
                    if text != dataset.corpus[passage_id]:
                        differ.append(passage_id)
                rows[j] = row
                if batch.start + j in positions:
                    sample.append((row, text))
            keep = rows >= 0
            if batch.vectors is not None:
                docs[rows[keep]] = batch.vectors[keep]
            elif keep.any():  # text-only: the model makes them, each text once, via the store
                texts = [t for t, k in zip(batch.texts, keep, strict=True) if k]
                docs[rows[keep]] = store.embed(embedder, texts, "document", progress=False)
            if bar is not None:
                bar.advance(task, len(batch))
    read_seconds = time.perf_counter() - started
    if not found.all():
        missing = [corpus_ids[i] for i in np.flatnonzero(~found)[:SHOWN_IDS]]
        raise source.fail(
            f"{int((~found).sum())} of the {len(corpus_ids)} passages of the pairs are not in it "
            f"(e.g. {', '.join(map(repr, missing))})",
            "write the pairs for this index with `queryfit generate --index URI`",
        )
    if overflow:
        raise source.fail(
            f"it holds more than the {n} passages it counted",
            "read it again once writes to it have finished",
        )
    if differ:
        warnings.warn(
            f"index {source.uri}: {len(differ)} passages of the pairs have another text in the "
            f"index (e.g. {differ[0]!r}); training uses the index's vectors: regenerate the "
            "pairs with --index if the index was rebuilt",
            stacklevel=3,
        )
    docs = docs[: len(doc_ids)]
    check = None
    if sample:
        sample.sort()
        check = check_model(
            source,
            embedder,
            [text for _, text in sample],
            docs[[row for row, _ in sample]],
            force=force,
        )
    passages_embedded = stats.texts_embedded - before[1]
    query_ids = list(dataset.queries)
    queries = store.embed(
        embedder,
        [dataset.queries[q] for q in query_ids],
        "query",
        progress=progress,
        description="embedding questions",
    )
    check_calls = check.model_calls if check else 0
    check_texts = check.texts_embedded if check else 0
    return IndexVectors(
        vectors=RetrievalVectors(
            queries=queries,
            docs=docs,
            relevant=relevance_rows(dataset, doc_ids),
            query_ids=query_ids,
            doc_ids=doc_ids,
        ),
        uri=source.uri,
        passages=len(doc_ids),
        pairs_passages=len(corpus_ids),
        passage_vectors_from_index=len(doc_ids) if source.dim is not None else 0,
        passages_embedded=passages_embedded,
        read_seconds=read_seconds,
        model_calls=stats.model_calls - before[0] + check_calls,
        texts_embedded=stats.texts_embedded - before[1] + check_texts,
        texts_from_store=stats.texts_from_store - before[2],
        texts_differ=len(differ),
        check=check,
    )
