"""The array API: train and evaluate on vectors the user already holds (no model, no store).

For users whose passages already sit in a vector index, where a million passages is an ordinary
size: :func:`train_vectors` and :func:`evaluate_vectors` take a query matrix, a passage matrix and
which passages are relevant to which query, and return exactly what :func:`queryfit.train` and
:func:`queryfit.evaluate` return, through the same code (``training.plan.train_adapter``,
``api._compare_systems``).
Memory-mapped ``.npy`` files (``np.load(path, mmap_mode="r")``) are read a block at a time where
the work allows it; training holds one normalised float32 copy of the passages (on the training
device), evaluation none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from queryfit import api
from queryfit.adapters import Adapter, check_fits, load_adapter, save_adapter
from queryfit.adapters.record import DataFacts, EmbeddingCost
from queryfit.errors import AdapterError, DatasetError
from queryfit.evaluation import DEFAULT_METRICS
from queryfit.training.config import TrainConfig
from queryfit.vectors import RetrievalVectors

Relevant = Sequence[Iterable[int] | Mapping[int, float]]
_HASH_BLOCK = 65_536


def _matrix(name: str, x: Any) -> np.ndarray:
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)  # a memmap stays a memmap
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DatasetError(
            f"{name} must be a 2-D numeric array [rows, dim], got {arr.dtype} {arr.shape}"
        )
    return arr


def as_vectors(query_vectors: Any, passage_vectors: Any, relevant: Relevant) -> RetrievalVectors:
    """Check the three inputs and hold them as :class:`RetrievalVectors` (arrays not copied).

    ``relevant[i]`` is query ``i``'s relevant passage rows (0-based rows of ``passage_vectors``),
    as a list of rows (grade 1 each) or a ``{row: grade}`` mapping.
    """
    queries = _matrix("query_vectors", query_vectors)
    docs = _matrix("passage_vectors", passage_vectors)
    if queries.shape[1] != docs.shape[1]:
        raise DatasetError(
            f"query_vectors have dimension {queries.shape[1]} but passage_vectors have "
            f"{docs.shape[1]}; embed both with the same model"
        )
    if len(relevant) != len(queries):
        raise DatasetError(
            f"relevant has {len(relevant)} entries but query_vectors has {len(queries)} rows; "
            "give one list (or {row: grade}) per query"
        )
    rows: list[dict[int, float]] = []
    for i, rel in enumerate(relevant):
        if isinstance(rel, Mapping):
            entry = {int(d): float(g) for d, g in rel.items()}
        elif isinstance(rel, (str, bytes)) or not isinstance(rel, Iterable):
            raise DatasetError(
                f"relevant[{i}] must be a list of passage rows or a {{row: grade}} mapping, "
                f"not {type(rel).__name__}"
            )
        else:
            entry = {int(d): 1.0 for d in rel}
        bad = [d for d in entry if not 0 <= d < len(docs)]
        if bad:
            raise DatasetError(
                f"relevant[{i}] names passage row {bad[0]}, outside the {len(docs)} rows of "
                "passage_vectors (rows are 0-based)"
            )
        rows.append(entry)
    return RetrievalVectors(queries=queries, docs=docs, relevant=rows)


def fingerprint(vectors: RetrievalVectors) -> str:
    """A short hash of the arrays and the relevance, read a block at a time."""
    h = hashlib.blake2b(digest_size=16)
    for arr in (vectors.queries, vectors.docs):
        h.update(f"{arr.shape}{arr.dtype}".encode())
        for start in range(0, len(arr), _HASH_BLOCK):
            h.update(np.ascontiguousarray(arr[start : start + _HASH_BLOCK]).tobytes())
    h.update(repr([sorted(rel.items()) for rel in vectors.relevant]).encode())
    return h.hexdigest()


def train_vectors(
    query_vectors: Any,
    passage_vectors: Any,
    relevant: Relevant,
    *,
    config: Any = None,
    out: str | Path | None = None,
) -> api.TrainResult:
    """Fit a query adapter on vectors you already have; the same report as :func:`queryfit.train`.

    Args:
        query_vectors: [n_queries, dim] training questions, embedded with your model.
        passage_vectors: [n_passages, dim] the passages they search (e.g. your whole index); a
            memory-mapped ``.npy`` works.
        relevant: per query, its relevant passage rows (list) or ``{row: grade}``.
        config: a :class:`queryfit.TrainConfig`; at scale its defaults switch to the sampled
            softmax and one bounded dev split by themselves (the decision says so).
        out: adapter folder to write (``adapter.json`` records no base model: apply the adapter
            to query vectors of the same model).
    """
    from queryfit.training.plan import check_settings, train_adapter  # torch: training only

    config = config or TrainConfig()
    dev_fraction, split_by = 0.2, "coverage"
    check_settings(config, split_by, dev_fraction)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise AdapterError(f"out {out} is a file; an adapter is a folder: pass a folder path")
    vectors = as_vectors(query_vectors, passage_vectors, relevant)
    api.check_size(len(vectors.queries))
    trained = train_adapter(vectors, config, dev_fraction=dev_fraction, split_by=split_by)
    trained.facts.embedding = EmbeddingCost()  # nothing embedded: the vectors were given
    adapter = trained.adapter
    adapter.training = trained.facts
    adapter.data = DataFacts(
        fingerprint=fingerprint(vectors),
        source="vectors",
        queries=len(vectors.queries),
        passages=len(vectors.docs),
    )
    if out is not None:
        save_adapter(adapter, out)
    return api.TrainResult.of(adapter, out)


def evaluate_vectors(
    query_vectors: Any,
    passage_vectors: Any,
    relevant: Relevant,
    adapter: Adapter | str | Path,
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    headline: str = api.HEADLINE_METRIC,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> api.EvaluationResult:
    """Base vs adapted exact retrieval on your vectors; the same report as
    :func:`queryfit.evaluate` (without the per-query details and coverage split, which need
    the texts). The search runs in bounded blocks: a memory-mapped corpus is never loaded whole.
    """
    metrics = api._checked_metrics(metrics, headline, n_resamples)
    if not isinstance(adapter, Adapter):
        adapter = load_adapter(adapter)
    vectors = as_vectors(query_vectors, passage_vectors, relevant)
    check_fits(adapter, None, vectors.dim)
    result, *_ = api._compare_systems(
        vectors,
        adapter,
        metrics=metrics,
        headline=headline,
        rank_docs=None,
        n_resamples=n_resamples,
        seed=seed,
        model_id=adapter.base_model.id or "vectors",
    )
    return result
