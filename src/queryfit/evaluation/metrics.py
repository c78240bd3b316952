"""Per-query retrieval metrics with trec_eval semantics, vectorised over all queries.

Per-query values (not just means) are returned because the base-vs-adapted comparison is paired:
the bootstrap in :mod:`queryfit.evaluation.compare` resamples queries. Formulas follow trec_eval so
numbers can be quoted next to published results:

==============  ===================  ==========================================================
name            trec_eval measure    value for one query
==============  ===================  ==========================================================
``hit@k``       ``success_k``        1 if any relevant doc is in the top k, else 0
``mrr@k``       ``recip_rank`` (*)   1 / rank of the first relevant doc within k, else 0
``ndcg@k``      ``ndcg_cut_k``       DCG@k / ideal DCG@k; gain = grade, discount log2(rank + 1),
                                     ideal from all judged relevant docs
``recall@k``    ``recall_k``         relevant docs in the top k / all relevant docs
``map@k``       ``map_cut_k``        sum of precision at each relevant doc within k / all
                                     relevant docs
``precision@k`` ``P_k``              relevant docs in the top k / k (even if fewer retrieved)
==============  ===================  ==========================================================

(*) trec_eval has no cut-off for recip_rank; ``mrr@k`` equals it on the run truncated to k.

A document is relevant when its grade is > 0. Queries with no relevant document score 0 on every
metric (trec_eval leaves them out of its averages instead); drop them before averaging if needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METRIC_KINDS = ("hit", "mrr", "ndcg", "recall", "map", "precision")
DEFAULT_METRICS = ("hit@1", "hit@5", "hit@10", "mrr@5", "mrr@10", "ndcg@10", "recall@10", "map@10")

_NAME = re.compile(r"^\s*([A-Za-z]+)\s*@\s*(\d+)\s*$")


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``; case-insensitive so ``"MRR@5"`` also works."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"cannot parse metric {name!r}: expected '<name>@<k>' with name one of "
            f"{', '.join(METRIC_KINDS)} (e.g. 'ndcg@10')"
        )
    kind, k = match.group(1).lower(), int(match.group(2))
    if kind not in METRIC_KINDS:
        raise ValueError(
            f"unknown metric {name!r}: {kind!r} is not one of {', '.join(METRIC_KINDS)}"
        )
    if k < 1:
        raise ValueError(f"metric {name!r} needs a cut-off k >= 1")
    return kind, k


def required_depth(metrics: Sequence[str]) -> int:
    """Deepest cut-off among ``metrics``: how many documents retrieval must return per query."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not metrics:
        raise ValueError("no metrics given")
    return max(parse_metric(m)[1] for m in metrics)


@dataclass(frozen=True)
class Qrels:
    """Relevance judgments for queries ``0..n_queries-1`` as flat sorted arrays.

    The flat ``(query, doc)``-sorted layout lets the grades of every ranked document be looked up
    with a single ``searchsorted`` instead of a Python loop over 100k dictionaries. Only grades
    > 0 are kept.
    """

    query: np.ndarray  # int64 [n_judgments], sorted together with doc
    doc: np.ndarray  # int64 [n_judgments]
    grade: np.ndarray  # float64 [n_judgments], all > 0
    n_queries: int

    @classmethod
    def from_mappings(cls, relevant: Sequence[Mapping[int, float]]) -> Qrels:
        """Build from ``relevant[i] = {doc index: grade}``; non-positive grades are dropped."""
        sizes = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=len(relevant))
        total = int(sizes.sum())
        query = np.repeat(np.arange(len(relevant), dtype=np.int64), sizes)
        doc = np.fromiter((int(j) for r in relevant for j in r), dtype=np.int64, count=total)
        grade = np.fromiter(
            (float(g) for r in relevant for g in r.values()), dtype=np.float64, count=total
        )
        return cls.from_arrays(query, doc, grade, len(relevant))

    @classmethod
    def from_arrays(
        cls, query: np.ndarray, doc: np.ndarray, grade: np.ndarray, n_queries: int
    ) -> Qrels:
        """Build from parallel arrays in any order; non-positive grades are dropped."""
        query = np.asarray(query, dtype=np.int64).reshape(-1)
        doc = np.asarray(doc, dtype=np.int64).reshape(-1)
        grade = np.asarray(grade, dtype=np.float64).reshape(-1)
        if not (query.size == doc.size == grade.size):
            raise ValueError("query, doc and grade must have the same length")
        if not np.isfinite(grade).all():
            raise ValueError("relevance grades must be finite")
        keep = grade > 0
        query, doc, grade = query[keep], doc[keep], grade[keep]
        order = np.lexsort((doc, query))
        return cls(query[order], doc[order], grade[order], int(n_queries))

    def __post_init__(self) -> None:
        if self.n_queries < 0:
            raise ValueError("n_queries must be >= 0")
        if self.query.size and (self.query.min() < 0 or self.query.max() >= self.n_queries):
            raise ValueError(f"a judgment names a query outside [0, {self.n_queries})")
        if self.doc.size and self.doc.min() < 0:
            raise ValueError("document indices in judgments must be >= 0")
        if (self.grade <= 0).any():
            raise ValueError("Qrels holds only positive grades; use Qrels.from_arrays to filter")
        same = (self.query[1:] == self.query[:-1]) & (self.doc[1:] == self.doc[:-1])
        if same.any():
            raise ValueError("a (query, doc) pair is judged more than once")
        ordered = (self.query[1:] > self.query[:-1]) | (
            (self.query[1:] == self.query[:-1]) & (self.doc[1:] > self.doc[:-1])
        )
        if not ordered.all():
            raise ValueError("Qrels arrays must be sorted by (query, doc); use from_arrays")

    def __len__(self) -> int:
        return self.n_queries

    def n_relevant(self) -> np.ndarray:
        """Number of relevant documents per query, int64 [n_queries]."""
        return np.bincount(self.query, minlength=self.n_queries).astype(np.int64)

    def grades_of(self, ranked: np.ndarray) -> np.ndarray:
        """Grade of every ranked document (0 for unjudged or padding < 0), float64 like ranked."""
        ranked = np.asarray(ranked, dtype=np.int64)
        out = np.zeros(ranked.shape, dtype=np.float64)
        if self.doc.size == 0 or ranked.size == 0:
            return out
        stride = int(max(self.doc.max(), ranked.max())) + 1
        keys = self.query * stride + self.doc
        wanted = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * stride + ranked
        pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
        hit = (keys[pos] == wanted) & (ranked >= 0)
        out[hit] = self.grade[pos[hit]]
        return out

    def ideal_dcg(self, k: int) -> np.ndarray:
        """DCG of the best possible top-k per query: judged grades sorted descending."""
        order = np.lexsort((-self.grade, self.query))
        q, g = self.query[order], self.grade[order]
        starts = np.searchsorted(q, np.arange(self.n_queries))
        pos = np.arange(q.size) - starts[q]
        keep = pos < k
        gains = g[keep] / np.log2(pos[keep] + 2.0)
        return np.bincount(q[keep], weights=gains, minlength=self.n_queries)


def per_query_metrics(
    ranked: np.ndarray,
    relevant: Qrels | Sequence[Mapping[int, float]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, np.ndarray]:
    """Every metric for every query: ``{name as given: float64 [nq]}``.

    ``ranked`` is the ``[nq, depth]`` document-index array from :func:`top_k` (negative entries
    are treated as empty slots); ``relevant[i]`` maps document index to grade.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed = {m: parse_metric(m) for m in metrics}
    if not parsed:
        raise ValueError("no metrics given")
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(
            f"ranked must be a 2-D integer array [n_queries, depth], got {ranked.dtype} "
            f"{ranked.shape}"
        )
    qrels = relevant if isinstance(relevant, Qrels) else Qrels.from_mappings(relevant)
    n_q = ranked.shape[0]
    if qrels.n_queries != n_q:
        raise ValueError(f"ranked has {n_q} queries but relevance is given for {qrels.n_queries}")

    depth = min(ranked.shape[1], max(k for _, k in parsed.values()))
    ranked = ranked[:, :depth].astype(np.int64, copy=False)
    srt = np.sort(ranked, axis=1)
    if ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        raise ValueError("ranked lists a document twice for the same query")

    gains = qrels.grades_of(ranked)
    rel = gains > 0
    n_rel = qrels.n_relevant().astype(np.float64)
    safe_n_rel = np.maximum(n_rel, 1.0)  # queries without relevant docs get 0, not NaN
    ranks = np.arange(1, depth + 1, dtype=np.float64)
    # Cumulative sums along the ranking answer every cut-off with one column lookup.
    cum_rel = np.cumsum(rel, axis=1, dtype=np.float64)
    cum_dcg = np.cumsum(gains / np.log2(ranks + 1.0), axis=1)
    cum_ap = np.cumsum(np.where(rel, cum_rel / ranks, 0.0), axis=1)
    # 0-based rank of the first relevant doc; "never" must exceed every cut-off, not just depth.
    first = np.full(n_q, np.iinfo(np.int64).max, dtype=np.int64)
    if depth:
        has_rel = rel.any(axis=1)
        first[has_rel] = rel.argmax(axis=1)[has_rel]
    ideal: dict[int, np.ndarray] = {}

    def at(cum: np.ndarray, k: int) -> np.ndarray:
        return cum[:, min(k, depth) - 1] if depth else np.zeros(n_q)

    out: dict[str, np.ndarray] = {}
    for name, (kind, k) in parsed.items():
        if kind == "hit":
            value = (first < k).astype(np.float64)
        elif kind == "mrr":
            value = np.where(first < k, 1.0 / (first + 1.0), 0.0)
        elif kind == "precision":
            value = at(cum_rel, k) / k
        elif kind == "recall":
            value = at(cum_rel, k) / safe_n_rel
        elif kind == "map":
            value = at(cum_ap, k) / safe_n_rel
        else:  # ndcg
            if k not in ideal:
                ideal[k] = qrels.ideal_dcg(k)
            idcg = ideal[k]
            value = np.divide(at(cum_dcg, k), idcg, out=np.zeros(n_q), where=idcg > 0)
        out[name] = value
    return out
