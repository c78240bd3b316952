"""Hard negatives for the sampled softmax, mined with the base model at any corpus size.

Mining is a search: each training query's top passages under the base model. Exact search costs
``n_queries x n_passages`` scores, fine for thousands of queries over a hundred thousand passages
but 7.7·10¹³ flops for 100,000 queries over 1,000,000 passages (about half an hour on 2 cores,
estimated from the matrix-product rate). Above :data:`EXACT_MINING_MAX_SCORES` the candidates
come from an inverted-file index (FAISS k-means cells, inner product on unit vectors: cosine)
instead, of which each query scans about 0.5% at 1M passages. The approximation only decides
*which* hard negatives are found: the loss still never treats a relevant passage or a
near-duplicate of one as a negative, because every candidate is checked exactly against the
query's relevant passages (:func:`filter_candidates`).
:func:`mining_recall` measures how many of the exact hard negatives the index finds on a sample
of queries (docs/benchmarks.md, "Scale").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from queryfit.errors import TrainingError
from queryfit.evaluation.retrieval import top_k
from queryfit.vectors import unit_rows

#: Above this many query x passage scores, candidates come from FAISS instead of exact search.
EXACT_MINING_MAX_SCORES = 2_000_000_000
#: Extra candidates fetched per query beyond k, to make up for the relevant passages and
#: near-duplicates that the filter removes.
OVERFETCH = 16
#: Passages per IVF cell on average (nlist = n_passages / this, within [16, 4096]); each query
#: scans its NPROBE nearest cells and the cells of its relevant passages.
PASSAGES_PER_CELL = 1024
NPROBE = 4
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
    """An inverted-file index over unit-length passages (``docs`` must be normalised), searched
    cell by cell.

    FAISS clusters the passages (spherical k-means on a sample) and assigns each to its nearest
    centre. A query scans its ``nprobe`` nearest cells *and the cells holding its relevant
    passages*: a query's confusers are mostly its answer's neighbours, which its own nearest
    centres can miss when a cell mixes unrelated topics (on the benchmark's clusters, its own
    8 nearest of 244 cells found a third of the exact hard negatives). Unlike FAISS's own IVF
    search, which scans cells one query at a time (memory-bound: 4.6 ms per query at 1M
    passages, 7.7 minutes for 100,000 queries on 2 busy cores, measured), the scan here is
    cell-major: every query probing a cell is scored against it at once (one matrix product
    and a top-k in torch; 2.5-4x faster than ``faiss.knn`` at these shapes, measured), each cell
    read once per block of queries. Cells hold row numbers into ``docs``; the passages are not
    copied.
    """

    def __init__(self, docs: np.ndarray, seed: int = 0, block: int = 65_536) -> None:
        faiss = _faiss()
        n, dim = docs.shape
        self.docs = docs
        self.nlist = int(min(max(16, n // PASSAGES_PER_CELL), 4096, max(1, n // 39)))
        self.nprobe = int(min(self.nlist, NPROBE))
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 64 * self.nlist), replace=False))
        kmeans = faiss.Kmeans(dim, self.nlist, niter=10, seed=seed, spherical=True)
        kmeans.train(unit_rows(docs[sample]))
        self.quantizer = faiss.IndexFlatIP(dim)
        self.quantizer.add(kmeans.centroids)
        self.cell = np.empty(n, dtype=np.int64)
        for start in range(0, n, block):
            self.cell[start : start + block] = self.quantizer.search(
                unit_rows(docs[start : start + block]), 1
            )[1][:, 0]
        self.rows = np.argsort(self.cell, kind="stable")  # passage rows grouped by cell
        self.offsets = np.searchsorted(self.cell[self.rows], np.arange(self.nlist + 1))

    def candidates(
        self,
        queries: np.ndarray,
        depth: int,
        positives: Sequence[np.ndarray] | None = None,
        block: int = 131_072,
    ) -> np.ndarray:
        """The best ``depth`` passages per query among the cells it scans (-1 pads), best
        first; ``positives`` (relevant rows per query) adds their cells to the scan."""
        import torch

        from queryfit.evaluation.retrieval import _decode, _keys

        width = max((len(p) for p in positives), default=0) if positives is not None else 0
        out = np.empty((len(queries), depth), dtype=np.int64)
        for start in range(0, len(queries), block):
            q = unit_rows(queries[start : start + block])
            probes = self.quantizer.search(q, self.nprobe)[1]  # [m, nprobe]
            if width:
                extra = np.full((len(q), width), -1, dtype=np.int64)
                for i in range(len(q)):
                    rows = positives[start + i]
                    extra[i, : len(rows)] = self.cell[rows]
                probes = _unique_per_row(np.concatenate([probes, extra], axis=1))
            n_probe = probes.shape[1]
            table = np.full((len(q), n_probe * depth), np.iinfo(np.uint64).max, np.uint64)
            flat = np.argsort(probes, axis=None, kind="stable")
            cells = probes.reshape(-1)[flat]
            bounds = np.searchsorted(cells, np.arange(self.nlist + 1))
            for c in np.flatnonzero(bounds[1:] > bounds[:-1]):
                who, slot = np.divmod(flat[bounds[c] : bounds[c + 1]], n_probe)
                members = self.rows[self.offsets[c] : self.offsets[c + 1]]
                kk = min(depth, len(members))
                if kk == 0:
                    continue
                cell_docs = torch.from_numpy(np.ascontiguousarray(self.docs[members], np.float32))
                top = torch.topk(torch.from_numpy(q[who]) @ cell_docs.T, kk, dim=1)
                scores, local = top.values.numpy(), top.indices.numpy()
                columns = slot[:, None] * depth + np.arange(kk)[None, :]
                table[who[:, None], columns] = _keys(scores, members[local])
            best = np.sort(np.partition(table, depth - 1, axis=1)[:, :depth], axis=1)
            out[start : start + len(q)] = _decode(best)[0]
        return out


def _unique_per_row(cells: np.ndarray) -> np.ndarray:
    """Each row's cells with repeats (and the -1 padding) replaced by -1."""
    ordered = np.sort(cells, axis=1)
    repeat = np.zeros_like(ordered, dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return np.where(repeat | (ordered < 0), -1, ordered)


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
                size = stop - start
                c = unit_rows(docs[np.maximum(cand, 0).reshape(-1)]).reshape(size, depth, -1)
                p = unit_rows(docs[np.maximum(pos, 0).reshape(-1)]).reshape(size, width, -1)
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
        cand = (index or IVFIndex(docs)).candidates(queries, depth, positives)
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
