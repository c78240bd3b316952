"""Hard negatives mined from the frozen corpus with the base model, exactly (numpy only).

A hard negative is a passage the *base* model ranks high for a query although it is not
relevant. Two guards keep label noise out: a relevant passage is never a negative, and neither is
a near-duplicate of one (passage-to-passage cosine at or above ``duplicate_threshold``), since a
copy of the answer is more likely an unlabelled positive than a mistake.

Everything here works in blocks whose score matrix stays under :data:`SCORE_BUDGET_BYTES`, and
keeps near-duplicates as one short list of passage rows per query, never an
``[n_queries, n_passages]`` matrix. :mod:`queryfit.training.mining` mines at sizes where exact
search is too slow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from queryfit.vectors import unit_rows

SCORE_BUDGET_BYTES = 256 * 2**20


def positive_rows(rel: dict[int, float]) -> list[int]:
    """A query's relevant passage rows (grade > 0)."""
    return [p for p, g in rel.items() if g > 0]


def near_duplicate_rows(
    docs: np.ndarray,
    relevant: Sequence[dict[int, float]],
    threshold: float,
    *,
    cache: dict[int, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Per query, the sorted passage rows that are near-duplicates of a relevant one (not itself
    relevant): cosine to one of its relevant passages at or above ``threshold``.

    Each distinct relevant passage is compared with the corpus once, in blocks; ``cache`` (passage
    row -> its near-duplicates, filled here) carries that work over to the next call on the same
    corpus. ``threshold >= 1`` disables the guard (every list empty).
    """
    empty = np.empty(0, dtype=np.int64)
    if threshold >= 1.0:
        return [empty] * len(relevant)
    close = cache if cache is not None else {}
    positives = sorted({p for rel in relevant for p in positive_rows(rel)} - close.keys())
    d = unit_rows(docs) if positives else None
    rows = max(1, SCORE_BUDGET_BYTES // (max(len(docs), 1) * 4))
    for start in range(0, len(positives), rows):
        block = positives[start : start + rows]
        hits = d[block] @ d.T >= threshold
        for p, row in zip(block, hits, strict=True):
            close[p] = np.flatnonzero(row)
    out = []
    for rel in relevant:
        pos = positive_rows(rel)
        if not pos:
            out.append(empty)
            continue
        found = np.unique(np.concatenate([close[p] for p in pos]))
        out.append(np.setdiff1d(found, pos, assume_unique=True))
    return out


def near_duplicate_mask(
    docs: np.ndarray, relevant: Sequence[dict[int, float]], threshold: float
) -> np.ndarray:
    """[n_queries, n_docs] True where a passage is a near-duplicate of a relevant one (not itself).

    The dense form of :func:`near_duplicate_rows`, for small data and tests; ``threshold >= 1``
    disables it.
    """
    mask = np.zeros((len(relevant), len(docs)), dtype=bool)
    for i, rows in enumerate(near_duplicate_rows(docs, relevant, threshold)):
        mask[i, rows] = True
    return mask


def mine_hard_negatives(
    queries: np.ndarray,
    docs: np.ndarray,
    relevant: Sequence[dict[int, float]],
    k: int,
    *,
    duplicate_threshold: float = 0.95,
    near_duplicates: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """The ``k`` highest-ranked non-relevant passages per query under the base model, exactly.

    Returns an int array [n_queries, k]; a row has ``-1`` padding when fewer than ``k`` passages
    qualify. Relevant passages (any grade > 0) and their near-duplicates are never returned.
    ``near_duplicates`` is :func:`near_duplicate_rows` when the caller already has it (then
    ``duplicate_threshold`` is not used). Queries are scored in blocks; the cost is one exact
    search, so large data mines with :func:`queryfit.training.mining.mine_negatives` instead.
    """
    if near_duplicates is None:
        near_duplicates = near_duplicate_rows(docs, relevant, duplicate_threshold)
    q, d = unit_rows(queries), unit_rows(docs)
    out = np.full((len(q), k), -1, dtype=np.int64)
    k_eff = min(k, len(d))
    rows = max(1, SCORE_BUDGET_BYTES // (max(len(d), 1) * 4))
    for start in range(0, len(q), rows):
        stop = min(start + rows, len(q))
        scores = q[start:stop] @ d.T
        for i in range(start, stop):
            scores[i - start, near_duplicates[i]] = -np.inf
            scores[i - start, positive_rows(relevant[i])] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k_eff]
        picked = np.take_along_axis(scores, order, axis=1)
        out[start:stop, :k_eff] = np.where(np.isfinite(picked), order, -1)
    return out
