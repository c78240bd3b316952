"""Hard negatives mined from the frozen corpus with the base model (numpy only).

A hard negative is a passage the *base* model ranks high for a query although it is not
relevant. Two guards keep label noise out: a relevant passage is never a negative, and neither is
a near-duplicate of one (passage-to-passage cosine at or above ``duplicate_threshold``), since a
copy of the answer is more likely an unlabelled positive than a mistake.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def near_duplicate_mask(
    docs: np.ndarray, relevant: Sequence[dict[int, float]], threshold: float
) -> np.ndarray:
    """[n_queries, n_docs] True where a passage is a near-duplicate of a relevant one (not itself).

    Used to take such passages out of the negatives; ``threshold >= 1`` disables it.
    """
    d = _unit(docs)
    mask = np.zeros((len(relevant), len(d)), dtype=bool)
    if threshold >= 1.0:
        return mask
    for i, rel in enumerate(relevant):
        pos = [p for p, g in rel.items() if g > 0]
        if pos:
            mask[i] = (d[pos] @ d.T >= threshold).any(axis=0)
            mask[i, pos] = False
    return mask


def mine_hard_negatives(
    queries: np.ndarray,
    docs: np.ndarray,
    relevant: Sequence[dict[int, float]],
    k: int,
    *,
    duplicate_threshold: float = 0.95,
    near_duplicates: np.ndarray | None = None,
) -> np.ndarray:
    """The ``k`` highest-ranked non-relevant passages per query under the base model.

    Returns an int array [n_queries, k]; a row has ``-1`` padding when fewer than ``k`` passages
    qualify. Relevant passages (any grade > 0) and their near-duplicates are never returned.
    ``near_duplicates`` is :func:`near_duplicate_mask` when the caller already has it (then
    ``duplicate_threshold`` is not used).
    """
    scores = _unit(queries) @ _unit(docs).T
    banned = (
        near_duplicate_mask(docs, relevant, duplicate_threshold)
        if near_duplicates is None
        else near_duplicates.copy()
    )
    for i, rel in enumerate(relevant):
        banned[i, [p for p, g in rel.items() if g > 0]] = True
    scores = np.where(banned, -np.inf, scores)
    k_eff = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k_eff]
    out = np.full((len(scores), k), -1, dtype=np.int64)
    picked = np.take_along_axis(scores, order, axis=1)
    out[:, :k_eff] = np.where(np.isfinite(picked), order, -1)
    return out
