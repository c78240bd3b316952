"""Exact search over passage blocks: the merged top k and ranks equal one search over all."""

from __future__ import annotations

import numpy as np
import pytest

from queryfit.evaluation import (
    evaluate_retrieval,
    ranks_of_relevant,
    retrieval,
    top_k,
    top_k_and_ranks,
)


def _brute(queries: np.ndarray, docs: np.ndarray, exclude: np.ndarray | None = None):
    s = queries.astype(np.float64) @ docs.astype(np.float64).T
    if exclude is not None:
        s[:, exclude] = -np.inf
    idx = np.arange(docs.shape[0])
    return np.stack([np.lexsort((idx, -row)) for row in s]), s


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch):
    """Blocks small enough that a 300-passage corpus takes every merge path."""
    monkeypatch.setattr(retrieval, "DOC_BLOCK_ROWS", 64)
    monkeypatch.setattr(retrieval, "_SAMPLE_FROM", 16)
    monkeypatch.setattr(retrieval, "_SAMPLE_SIZE", 8)
    monkeypatch.setattr(retrieval, "_MAX_CANDIDATES", 12)


@pytest.mark.parametrize("k", [1, 5, 10, 70, 300])
@pytest.mark.parametrize("block_size", [None, 3])
def test_blocked_top_k_equals_full_sort_with_ties(small_blocks, k, block_size):
    rng = np.random.default_rng(k)
    # Small integers: every dot product is exact, so ties are real and the order is decided by
    # (score desc, index asc) alone, whatever the block boundaries.
    queries = rng.integers(-2, 3, size=(29, 6)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(300, 6)).astype(np.float32)
    docs[150:] = np.sort(docs[150:], axis=0)  # an ordered stretch: many late candidates
    idx, scores = top_k(queries, docs, k, similarity="dot", block_size=block_size)
    order, s = _brute(queries, docs)
    np.testing.assert_array_equal(idx, order[:, :k])
    np.testing.assert_array_equal(scores, np.take_along_axis(s, order[:, :k], 1))


def test_blocked_top_k_on_all_equal_scores(small_blocks):
    idx, _ = top_k(np.ones((4, 3)), np.ones((300, 3)), 10)
    np.testing.assert_array_equal(idx, np.tile(np.arange(10), (4, 1)))


@pytest.mark.parametrize("block_size", [None, 4])
def test_blocked_ranks_equal_full_ranking(small_blocks, block_size):
    rng = np.random.default_rng(7)
    queries = rng.integers(-2, 3, size=(17, 5)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(300, 5)).astype(np.float32)
    relevant = [rng.choice(300, size=rng.integers(0, 5), replace=False).tolist() for _ in range(17)]
    idx, _, ranks = top_k_and_ranks(
        queries, docs, 10, relevant, similarity="dot", block_size=block_size
    )
    order, _ = _brute(queries, docs)
    np.testing.assert_array_equal(idx, order[:, :10])
    for i, rel in enumerate(relevant):
        position = {int(d): r + 1 for r, d in enumerate(order[i])}
        assert ranks[i].tolist() == [position[d] for d in rel]
    alone = ranks_of_relevant(queries, docs, relevant, similarity="dot", block_size=block_size)
    assert [r.tolist() for r in alone] == [r.tolist() for r in ranks]


def test_excluded_passages_are_never_returned(small_blocks):
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(11, 8)).astype(np.float32)
    docs = rng.normal(size=(300, 8)).astype(np.float32)
    exclude = rng.random(300) < 0.7
    idx, _ = top_k(queries, docs, 10, similarity="dot", exclude=exclude)
    order, _ = _brute(queries, docs, np.flatnonzero(exclude))
    np.testing.assert_array_equal(idx, order[:, :10])
    assert not exclude[idx].any()
    # Fewer passages left than asked: the rest of the slots are empty (-1).
    only_two = np.ones(300, dtype=bool)
    only_two[[5, 250]] = False
    idx, _ = top_k(queries, docs, 4, similarity="dot", exclude=only_two)
    assert set(idx[:, :2].ravel()) <= {5, 250} and (idx[:, 2:] == -1).all()


def test_memory_mapped_corpus_is_searched_in_place(small_blocks, tmp_path):
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "docs.npy", docs)
    mapped = np.load(tmp_path / "docs.npy", mmap_mode="r")
    queries = rng.normal(size=(9, 8)).astype(np.float32)
    relevant = [{int(i): 1.0} for i in rng.integers(300, size=9)]
    a = evaluate_retrieval(queries, mapped, relevant)
    b = evaluate_retrieval(queries, docs, relevant)
    np.testing.assert_array_equal(a.ranked, b.ranked)
    with pytest.raises(ValueError, match="docs contains NaN"):
        bad = docs.copy()
        bad[200, 3] = np.nan
        top_k(queries, bad, 3)
