"""Hard negatives for the sampled softmax, mined with the base model at any corpus size.

Mining is a search: each training query's top passages under the base model. Exact search costs
``n_queries x n_passages`` scores, fine for thousands of queries over a hundred thousand passages
but about 40 minutes for 100,000 queries over 1,000,000 passages on 2 cores. Above
:data:`EXACT_MINING_MAX_SCORES` the candidates come from a FAISS inverted-file index (IVF, inner
product on normalised vectors: cosine) instead, which scans a few percent of the corpus per
query. The approximation only decides *which* hard negatives are found: the loss still never
treats a relevant passage or a near-duplicate of one as a negative, because every candidate is
checked exactly against the query's relevant passages (:func:`filter_candidates`).
:func:`mining_recall` measures how many of the exact hard negatives the index finds on a sample
of queries (docs/benchmarks.md, "Scale").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from queryfit.errors import TrainingError
from queryfit.evaluation.retrieval import top_k

#: Above this many query x passage scores, candidates come from FAISS instead of exact search.
EXACT_MINING_MAX_SCORES = 2_000_000_000
#: Extra candidates fetched per query beyond k, to make up for the relevant passages and
#: near-duplicates that the filter removes.
OVERFETCH = 16
#: Passages per IVF cell on average (nlist = n_passages / this, within the bounds below), and the
#: share of cells each query scans (nprobe = nlist * this, at least MIN_NPROBE).
PASSAGES_PER_CELL = 1024
PROBE_SHARE = 1 / 32
MIN_NPROBE = 8
_INSTALL_HINT = "pip install 'queryfit[scale]'"


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise TrainingError(
            "mining hard negatives over this many passages needs FAISS; install it with "
            f"`{_INSTALL_HINT}` (or set hard_negatives=0)"
        ) from exc
    return faiss


def exact_candidates(queries: np.ndarray, docs: np.ndarray, depth: int) -> np.ndarray:
    """The base model's exact top ``depth`` passages per query (blocked exact search)."""
    return top_k(queries, docs, depth)[0]


class IVFIndex:
    """A FAISS IVF-Flat index over normalised passages, for cosine candidates at scale."""

    def __init__(self, docs: np.ndarray, seed: int = 0, block: int = 65_536) -> None:
        faiss = _faiss()
        n, dim = docs.shape
        self.nlist = int(min(max(16, n // PASSAGES_PER_CELL), 16_384))
        self.nprobe = int(min(self.nlist, max(MIN_NPROBE, round(self.nlist * PROBE_SHARE))))
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        # k-means on a sample: 64 points per cell is plenty for the cell centres (FAISS's own
        # default caps at 256) and keeps training to seconds.
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 64 * self.nlist), replace=False))
        self.index.train(_unit32(docs[sample]))
        for start in range(0, n, block):
            self.index.add(_unit32(docs[start : start + block]))
        self.index.nprobe = self.nprobe

    def candidates(self, queries: np.ndarray, depth: int, block: int = 8192) -> np.ndarray:
        out = np.empty((len(queries), depth), dtype=np.int64)
        for start in range(0, len(queries), block):
            out[start : start + block] = self.index.search(
                _unit32(queries[start : start + block]), depth
            )[1]
        return out


def _unit32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def filter_candidates(
    candidates: np.ndarray,
    docs: np.ndarray,
    positives: Sequence[np.ndarray],
    k: int,
    duplicate_threshold: float,
    block: int = 1024,
) -> np.ndarray:
    """The first ``k`` candidates per query that are neither relevant nor a near-duplicate of a
    relevant passage (cosine >= ``duplicate_threshold``, checked exactly); -1 pads.

    ``candidates`` [n, depth] are passage rows best first (-1 for none).
    """
    n, depth = candidates.shape
    out = np.full((n, k), -1, dtype=np.int64)
    width = max((len(p) for p in positives), default=0)
    for start in range(0, n, block):
        stop = min(start + block, n)
        cand = candidates[start:stop]
        ok = cand >= 0
        if width:
            pos = np.full((stop - start, width), -1, dtype=np.int64)
            for i in range(start, stop):
                pos[i - start, : len(positives[i])] = positives[i]
            has = pos >= 0
            ok &= ~(cand[:, :, None] == pos[:, None, :]).any(axis=2)
            if duplicate_threshold < 1.0:
                c = _unit32(docs[np.maximum(cand, 0).reshape(-1)]).reshape(stop - start, depth, -1)
                p = _unit32(docs[np.maximum(pos, 0).reshape(-1)]).reshape(stop - start, width, -1)
                sims = np.einsum("nkd,npd->nkp", c, p)
                ok &= ~((sims >= duplicate_threshold) & has[:, None, :]).any(axis=2)
        # Stable: keep the base model's order among the candidates that pass.
        order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
        picked = np.take_along_axis(cand, order, axis=1)
        passed = np.take_along_axis(ok, order, axis=1)
        out[start:stop, : picked.shape[1]] = np.where(passed, picked, -1)
    return out


def mine_negatives(
    queries: np.ndarray,
    docs: np.ndarray,
    positives: Sequence[np.ndarray],
    k: int,
    duplicate_threshold: float,
    *,
    method: str = "auto",
    index: IVFIndex | None = None,
) -> np.ndarray:
    """``k`` hard negatives per query [n, k] (-1 pads), from exact search or a FAISS index.

    ``method`` is ``"exact"``, ``"faiss"`` or ``"auto"`` (exact up to
    :data:`EXACT_MINING_MAX_SCORES` query x passage scores). ``index`` reuses a built index.
    """
    if k == 0 or len(queries) == 0:
        return np.full((len(queries), k), -1, dtype=np.int64)
    width = max((len(p) for p in positives), default=0)
    depth = min(len(docs), k + width + OVERFETCH)
    if method == "auto":
        method = "exact" if len(queries) * len(docs) <= EXACT_MINING_MAX_SCORES else "faiss"
    if method == "exact":
        cand = exact_candidates(queries, docs, depth)
    else:
        cand = (index or IVFIndex(docs)).candidates(queries, depth)
    return filter_candidates(cand, docs, positives, k, duplicate_threshold)


def mining_recall(
    queries: np.ndarray,
    docs: np.ndarray,
    positives: Sequence[np.ndarray],
    k: int,
    duplicate_threshold: float,
    *,
    index: IVFIndex | None = None,
    sample: int = 500,
    seed: int = 0,
) -> float:
    """Share of the exact hard negatives that FAISS mining finds, on a sample of queries.

    Both sides apply the same filter; recall is ``|faiss & exact| / |exact|`` pooled over the
    sample. How the benchmark checks the approximation (docs/benchmarks.md, "Scale").
    """
    rows = np.sort(
        np.random.default_rng(seed).choice(len(queries), min(sample, len(queries)), replace=False)
    )
    sub_q, sub_p = queries[rows], [positives[r] for r in rows]
    exact = mine_negatives(sub_q, docs, sub_p, k, duplicate_threshold, method="exact")
    approx = mine_negatives(sub_q, docs, sub_p, k, duplicate_threshold, method="faiss", index=index)
    found = sum(
        len(np.intersect1d(a[a >= 0], e[e >= 0])) for a, e in zip(approx, exact, strict=True)
    )
    total = int((exact >= 0).sum())
    return found / total if total else 1.0
