"""Exact nearest-neighbour search over in-memory embeddings.

Evaluation compares a base and an adapted query encoder against the *same* frozen passage vectors,
so the search must be exact and deterministic: any approximation or tie-order noise would show up
as a spurious difference between the two systems. Scores are computed block by block so that a
large query set never materialises the full query x document matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIMILARITIES = ("cosine", "dot")

# Bytes allowed for one block's float32 score matrix. Peak use is a little over twice this: the
# scores, a partitioned copy of them, and a boolean mask.
SCORE_BUDGET_BYTES = 256 * 2**20


def _as_matrix(name: str, x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, dim], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        # NaN scores have no order, so ranks would silently be meaningless.
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _normalise(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows; zero rows stay zero (score 0 against everything) instead of NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


def _prepare(
    queries: np.ndarray, docs: np.ndarray, similarity: str
) -> tuple[np.ndarray, np.ndarray]:
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
    q = _as_matrix("queries", queries)
    d = _as_matrix("docs", docs)
    if q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query vectors have dimension {q.shape[1]} but document vectors have "
            f"{d.shape[1]}; both must come from the same embedding model"
        )
    if similarity == "cosine":
        q, d = _normalise(q), _normalise(d)
    return q, d


def _block_rows(n_docs: int, block_size: int | None) -> int:
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
            raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        return int(block_size)
    return max(1, SCORE_BUDGET_BYTES // (max(n_docs, 1) * 4))


def _sorted_top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row: descending score, ties to the lower index.

    Partitions the *values* to find each row's k-th best score, then keeps the documents at or
    above it. Measured ~3x faster than ``np.argpartition`` on 100k-document rows and it needs no
    int64 index per entry; it also makes tie handling explicit instead of partition-dependent.
    """
    n_rows, n_docs = scores.shape
    if k < n_docs:
        kth = np.partition(scores, n_docs - k, axis=1)[:, n_docs - k]
        keep = scores >= kth[:, None]
        tied = np.flatnonzero(np.count_nonzero(keep, axis=1) > k)
        if tied.size:
            # More than k docs reach the k-th score: keep every strictly better doc and only the
            # lowest-indexed docs among those equal to it.
            sub, t = scores[tied], kth[tied, None]
            equal = sub == t
            need = k - np.count_nonzero(sub > t, axis=1)
            keep[tied] = (sub > t) | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))
        # Exactly k per row now, and np.nonzero walks rows in order with ascending columns.
        cand = np.nonzero(keep)[1].reshape(n_rows, k)
        cand_scores = np.take_along_axis(scores, cand, axis=1)
    else:
        cand = np.broadcast_to(np.arange(n_docs, dtype=np.int64), (n_rows, n_docs))
        cand_scores = scores
    order = np.lexsort((cand, -cand_scores), axis=1)
    return (
        np.take_along_axis(cand, order, axis=1).astype(np.int64, copy=False),
        np.take_along_axis(cand_scores, order, axis=1),
    )


def top_k(
    queries: np.ndarray,
    docs: np.ndarray,
    k: int,
    *,
    similarity: str = "cosine",
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k documents per query.

    Returns ``(indices int64 [nq, k'], scores float32 [nq, k'])`` with ``k' = min(k, n_docs)``,
    sorted by descending score; equal scores are ordered by lower document index so runs are
    reproducible. ``similarity`` is ``"cosine"`` (both sides L2-normalised, zero vectors score 0)
    or ``"dot"``. ``block_size`` is the number of query rows scored at once; by default it keeps
    one block's score matrix under ``SCORE_BUDGET_BYTES``.
    """
    indices, scores, _ = top_k_and_ranks(
        queries, docs, k, None, similarity=similarity, block_size=block_size
    )
    return indices, scores


def ranks_of_relevant(
    queries: np.ndarray,
    docs: np.ndarray,
    relevant: Sequence[Sequence[int]],
    *,
    similarity: str = "cosine",
    block_size: int | None = None,
) -> list[np.ndarray]:
    """Exact 1-based rank of each listed relevant document, however deep it sits.

    Lets a report say where a relevant passage moved ("rank 37 -> 2") even when it falls outside
    the evaluated cut-off. The rank uses the same order as :func:`top_k`: documents with a strictly
    higher score, plus tied documents with a lower index, plus one. Returns one int64 array per
    query, aligned with ``relevant[i]``.
    """
    q, d = _prepare(queries, docs, similarity)
    rel = _relevant_rows(relevant, q.shape[0], d.shape[0])
    rows = _block_rows(d.shape[0], block_size)
    return _scan(q, d, 0, rel, rows)[2]


def top_k_and_ranks(
    queries: np.ndarray,
    docs: np.ndarray,
    k: int,
    relevant: Sequence[Sequence[int]] | None,
    *,
    similarity: str = "cosine",
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """:func:`top_k` and, when ``relevant`` is given, :func:`ranks_of_relevant` from one search.

    Each block of query-document scores is computed once and serves both answers, so a caller
    that needs the top k and the exact ranks (the report) pays for one search, not two.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    q, d = _prepare(queries, docs, similarity)
    n_q, n_docs = q.shape[0], d.shape[0]
    rel = _relevant_rows(relevant, n_q, n_docs) if relevant is not None else None
    kk = min(int(k), n_docs)
    if n_q == 0 or kk == 0:
        empty = [np.empty(r.size, dtype=np.int64) for r in rel] if rel is not None else None
        return np.empty((n_q, kk), dtype=np.int64), np.empty((n_q, kk), dtype=np.float32), empty
    return _scan(q, d, kk, rel, _block_rows(n_docs, block_size))


def _relevant_rows(relevant: Sequence[Sequence[int]], n_q: int, n_docs: int) -> list[np.ndarray]:
    if len(relevant) != n_q:
        raise ValueError(f"relevant has {len(relevant)} entries but there are {n_q} queries")
    rel = [np.asarray(r, dtype=np.int64).reshape(-1) for r in relevant]
    for i, r in enumerate(rel):
        if r.size and (r.min() < 0 or r.max() >= n_docs):
            raise ValueError(
                f"relevant[{i}] holds a document index outside [0, {n_docs}): {r.tolist()}"
            )
    return rel


def _scan(
    q: np.ndarray, d: np.ndarray, kk: int, rel: list[np.ndarray] | None, rows: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """One pass over blocks of ``rows`` queries: the top ``kk`` (if > 0) and the ranks of ``rel``.

    Inputs are already prepared (see :func:`_prepare`) and validated.
    """
    n_q, n_docs = q.shape[0], d.shape[0]
    indices = np.empty((n_q, kk), dtype=np.int64)
    scores = np.empty((n_q, kk), dtype=np.float32)
    out = [np.empty(r.size, dtype=np.int64) for r in rel] if rel is not None else None
    # Comparing one relevant doc against every score costs ~5 bytes per document (gathered float32
    # row plus a bool mask); bound how many such comparisons are made at once.
    pairs_per_chunk = max(1, SCORE_BUDGET_BYTES // (max(n_docs, 1) * 5))
    doc_ids = np.arange(n_docs, dtype=np.int64)
    d_t = d.T
    for start in range(0, n_q, rows):
        stop = min(start + rows, n_q)
        sizes = (
            np.array([rel[i].size for i in range(start, stop)], dtype=np.int64)
            if rel is not None
            else None
        )
        want_ranks = sizes is not None and sizes.any()
        if not kk and not want_ranks:
            continue
        block = q[start:stop] @ d_t
        if kk:
            indices[start:stop], scores[start:stop] = _sorted_top(block, kk)
        if not want_ranks:
            continue
        pair_row = np.repeat(np.arange(stop - start), sizes)
        pair_doc = np.concatenate([rel[i] for i in range(start, stop)])
        ranks = np.empty(pair_doc.size, dtype=np.int64)
        for c in range(0, pair_doc.size, pairs_per_chunk):
            pr, pd = pair_row[c : c + pairs_per_chunk], pair_doc[c : c + pairs_per_chunk]
            row_scores = block[pr]
            own = row_scores[np.arange(pr.size), pd][:, None]
            ahead = (row_scores > own) | ((row_scores == own) & (doc_ids < pd[:, None]))
            ranks[c : c + pairs_per_chunk] = ahead.sum(axis=1) + 1
        for i, part in zip(range(start, stop), np.split(ranks, np.cumsum(sizes)[:-1]), strict=True):
            out[i] = part
    return indices, scores, out
