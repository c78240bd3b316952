"""Per-query analysis for the report: exact ranks before and after, hit@k / recall@k curves,
and the passages each system put on top (an excerpt of each, and its source when known).

:func:`query_details` collects it from one evaluation's vectors and rankings (no search is
repeated when the evaluation already gave the ranks); :mod:`queryfit.report.html` shows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from queryfit.adapters import Adapter
from queryfit.adapters.record import DataFacts, TrainingFacts
from queryfit.data import QADataset
from queryfit.evaluation.retrieval import ranks_of_relevant
from queryfit.vectors import RetrievalVectors

CURVE_MAX_K = 100
TOP_PASSAGES = 3
OPENING_CHARS = 120
# Runs of 3+ of one decoration character (underlines, rules) and Markdown heading marks.
_DECORATION = re.compile(r"([*=#~^_`+-])\1{2,}|^#{1,6}(?=\s)", re.MULTILINE)


@dataclass
class QueryDetails:
    """Per-query material for the report, aligned with the dataset's query order.

    ``rank_base[i]`` / ``rank_adapted[i]`` is the exact 1-based rank of the best-placed relevant
    passage of query ``i`` among all passages (0 when the query has no relevant passage in the
    corpus). ``curves[name][system]`` holds ``name`` (``"hit@k"`` or ``"recall@k"``) for
    k = 1..len, trec_eval semantics, averaged over all queries like the metrics.

    ``passages`` holds an excerpt (:func:`opening`) of every passage named above; ``sources``
    where the caller knew it (a document path and page), since a dataset maps ids to text only.
    ``data_source`` is the file the data came from, ``data_label`` what it is in words (e.g. the
    held-out test split of ``queryfit run``).
    """

    query_ids: list[str]
    queries: list[str]
    relevant: list[list[str]]
    rank_base: np.ndarray
    rank_adapted: np.ndarray
    top_base: list[list[str]]
    top_adapted: list[list[str]]
    passages: dict[str, str]
    curves: dict[str, dict[str, list[float]]]
    data_fingerprint: str = ""
    data_source: str | None = None
    data_label: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    training: TrainingFacts | None = None  # how the adapter was made (adapter.json)
    data: DataFacts | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def one_relevant_each(self) -> bool:
        """Whether no query has more than one relevant passage: then recall@k is hit@k."""
        return all(len(rel) <= 1 for rel in self.relevant)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (ranks as lists)."""
        out = dict(self.__dict__)
        out["rank_base"] = self.rank_base.tolist()
        out["rank_adapted"] = self.rank_adapted.tolist()
        return out


def opening(text: str, limit: int = OPENING_CHARS) -> str:
    """The start of a passage as one line, cut at a word boundary near ``limit``.

    Whitespace is collapsed across lines (a short heading runs on into its text, which says more
    than the heading alone) and decoration is dropped: reST / Markdown underlines and rules
    (``*****``, ``=====``, ``-----``) and heading marks.
    """
    text = _DECORATION.sub(" ", text)
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


def _curves(ranks: Sequence[np.ndarray], max_k: int) -> dict[str, list[float]]:
    """hit@k and recall@k for k = 1..max_k from exact ranks of every relevant passage."""
    n_q = len(ranks)
    if n_q == 0:
        return {"hit@k": [0.0] * max_k, "recall@k": [0.0] * max_k}
    sizes = np.array([r.size for r in ranks], dtype=np.int64)
    over = max_k + 1  # every rank past max_k lands in one bucket
    best = np.array([int(r.min()) if r.size else over for r in ranks], dtype=np.int64)
    hit = np.cumsum(np.bincount(np.minimum(best, over), minlength=over + 1))[1:over] / n_q
    flat = np.concatenate([r for r in ranks if r.size]) if sizes.any() else np.zeros(0, np.int64)
    weights = np.repeat(1.0 / np.maximum(sizes, 1), sizes)
    found = np.bincount(np.minimum(flat, over), weights=weights, minlength=over + 1)
    recall = np.cumsum(found)[1:over] / n_q
    return {"hit@k": hit.tolist(), "recall@k": recall.tolist()}


def relevant_rows(vectors: RetrievalVectors) -> list[list[int]]:
    """Per query, its relevant passage rows in ascending order: what the report ranks."""
    return [sorted(r) for r in vectors.relevant]


def top_rows(*ranked: np.ndarray, top: int = TOP_PASSAGES) -> set[int]:
    """Passage rows that some query's top ``top`` names, in any of the rankings."""
    rows: set[int] = set()
    for ranking in ranked:
        if ranking.ndim == 2 and ranking.size:
            rows.update(int(r) for r in np.unique(ranking[:, :top]) if r >= 0)
    return rows


def query_details(
    dataset: QADataset,
    vectors: RetrievalVectors,
    adapted_queries: np.ndarray,
    base_ranked: np.ndarray,
    adapted_ranked: np.ndarray,
    *,
    adapter: Adapter | None = None,
    data_source: str | None = None,
    data_label: str | None = None,
    sources: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    max_k: int = CURVE_MAX_K,
    top: int = TOP_PASSAGES,
    ranks_base: list[np.ndarray] | None = None,
    ranks_adapted: list[np.ndarray] | None = None,
    texts: Mapping[str, str] | None = None,
) -> QueryDetails:
    """Collect what the report shows per query, from one evaluation's vectors and rankings.

    Needs the exact rank of every relevant passage (``relevant_rows(vectors)``) per system, so a
    relevant passage's rank is known however deep it sits, not only within the metrics' cut-off.
    Pass them as ``ranks_base`` / ``ranks_adapted`` when the evaluation's search already gave
    them (``evaluate_retrieval(..., rank_docs=...)``); otherwise each costs one more exact search
    (:func:`ranks_of_relevant`). ``sources`` maps passage ids to where they came from (e.g.
    ``"manual.pdf, page 3"``); only the passages the report names are kept. ``texts`` holds the
    texts of passages searched beyond the dataset's corpus (an index's other passages).
    """
    doc_ids = vectors.doc_ids or list(dataset.corpus)
    query_ids = vectors.query_ids or list(dataset.queries)
    rel_rows = relevant_rows(vectors)
    if ranks_base is None:
        ranks_base = ranks_of_relevant(vectors.queries, vectors.docs, rel_rows)
    if ranks_adapted is None:
        ranks_adapted = ranks_of_relevant(adapted_queries, vectors.docs, rel_rows)

    def best(ranks: list[np.ndarray]) -> np.ndarray:
        return np.array([int(r.min()) if r.size else 0 for r in ranks], dtype=np.int64)

    depth = min(top, base_ranked.shape[1] if base_ranked.ndim == 2 else 0)
    top_base = [[doc_ids[j] for j in row[:depth] if j >= 0] for row in base_ranked]
    top_adapted = [[doc_ids[j] for j in row[:depth] if j >= 0] for row in adapted_ranked]
    relevant = [[doc_ids[j] for j in rows] for rows in rel_rows]
    named = {d for group in (top_base, top_adapted, relevant) for ids in group for d in ids}
    base_curves, adapted_curves = _curves(ranks_base, max_k), _curves(ranks_adapted, max_k)
    return QueryDetails(
        query_ids=list(query_ids),
        queries=[dataset.queries[q] for q in query_ids],
        relevant=relevant,
        rank_base=best(ranks_base),
        rank_adapted=best(ranks_adapted),
        top_base=top_base,
        top_adapted=top_adapted,
        passages={
            d: opening(dataset.corpus[d] if d in dataset.corpus else (texts or {}).get(d, ""))
            for d in sorted(named)
        },
        curves={
            name: {"base": base_curves[name], "adapted": adapted_curves[name]}
            for name in ("hit@k", "recall@k")
        },
        data_fingerprint=dataset.fingerprint(),
        data_source=data_source,
        data_label=data_label,
        sources={d: str(sources[d]) for d in sorted(named) if sources and d in sources},
        training=adapter.training if adapter else None,
        data=adapter.data if adapter else None,
        settings=dict(settings or {}),
    )
