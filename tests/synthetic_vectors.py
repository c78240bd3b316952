"""Model-free training data for the trainer tests."""

from __future__ import annotations

import numpy as np

from queryfit.vectors import RetrievalVectors


def distorted_queries(
    dim: int, n_docs: int, per_doc: int, noise: float, seed: int = 0, learnable: bool = True
) -> RetrievalVectors:
    """Queries are a fixed distortion of their passage plus noise: a map that can be learned.

    With ``learnable=False`` each query's label is a random passage, so nothing carries over.
    """
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n_docs, dim)).astype(np.float32)
    distortion = np.eye(dim) + 0.9 * rng.normal(size=(dim, dim)) / np.sqrt(dim)
    rows, relevant = [], []
    for d in range(n_docs):
        for _ in range(per_doc):
            target = d if learnable else int(rng.integers(n_docs))
            rows.append(docs[d] @ distortion.T + noise * rng.normal(size=dim))
            relevant.append({target: 1.0})
    return RetrievalVectors(np.asarray(rows, dtype=np.float32), docs, relevant)
