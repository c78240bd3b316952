"""Retrieval evaluation: exact search, trec_eval-compatible metrics, paired significance.

Kept free of torch (numpy + scipy only) so that scoring and comparing stored embeddings works
without the training extras installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from queryfit.evaluation.compare import (
    Difference,
    compare,
    comparison_table,
    paired_bootstrap,
)
from queryfit.evaluation.metrics import (
    DEFAULT_METRICS,
    METRIC_KINDS,
    Qrels,
    parse_metric,
    per_query_metrics,
    required_depth,
)
from queryfit.evaluation.retrieval import (
    SIMILARITIES,
    ranks_of_relevant,
    top_k,
    top_k_and_ranks,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_KINDS",
    "SIMILARITIES",
    "Difference",
    "Qrels",
    "RetrievalResult",
    "compare",
    "comparison_table",
    "evaluate_retrieval",
    "paired_bootstrap",
    "parse_metric",
    "per_query_metrics",
    "ranks_of_relevant",
    "required_depth",
    "top_k",
    "top_k_and_ranks",
]


@dataclass
class RetrievalResult:
    """One system's run: what it retrieved and how each query scored."""

    ranked: np.ndarray  # int64 [nq, depth] document indices, best first
    scores: np.ndarray  # float32 [nq, depth]
    metrics: dict[str, np.ndarray]  # metric name -> float64 [nq] per-query values
    # Exact 1-based ranks of the documents asked for with ``rank_docs`` (see ranks_of_relevant).
    doc_ranks: list[np.ndarray] | None = None

    def summary(self) -> dict[str, float]:
        """Mean of each metric over all queries (queries without relevant docs count as 0)."""
        return {name: float(np.mean(v)) if v.size else 0.0 for name, v in self.metrics.items()}


def evaluate_retrieval(
    queries: np.ndarray,
    docs: np.ndarray,
    relevant: Qrels | Sequence[Mapping[int, float]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    similarity: str = "cosine",
    depth: int | None = None,
    rank_docs: Sequence[Sequence[int]] | None = None,
    exclude: np.ndarray | None = None,
) -> RetrievalResult:
    """Search ``docs`` for every query and score the ranking against ``relevant``.

    ``depth`` defaults to the deepest metric cut-off; a larger depth keeps more of the ranking in
    the result (e.g. for inspection) without changing the metrics. ``rank_docs[i]`` lists
    documents whose exact rank for query ``i`` goes into ``doc_ranks`` (as
    :func:`ranks_of_relevant` gives it), taken from the same search. ``exclude`` (bool per
    document) marks documents never to retrieve, as if absent from ``docs``.
    """
    needed = required_depth(metrics)
    if depth is None:
        depth = needed
    elif depth < needed:
        raise ValueError(f"depth {depth} is shallower than the metrics need ({needed})")
    ranked, scores, doc_ranks = top_k_and_ranks(
        queries, docs, depth, rank_docs, similarity=similarity, exclude=exclude
    )
    return RetrievalResult(ranked, scores, per_query_metrics(ranked, relevant, metrics), doc_ranks)
