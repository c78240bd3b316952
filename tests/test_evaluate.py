"""Tests for queryfit.evaluation: exact search, trec_eval-equal metrics, paired bootstrap."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from queryfit.evaluation import (
    DEFAULT_METRICS,
    Difference,
    Qrels,
    RetrievalResult,
    compare,
    comparison_table,
    evaluate_retrieval,
    paired_bootstrap,
    per_query_metrics,
    ranks_of_relevant,
    required_depth,
    top_k,
    top_k_and_ranks,
)

pytrec_eval = pytest.importorskip("pytrec_eval")


# --------------------------------------------------------------------------- retrieval


def _brute_force(queries: np.ndarray, docs: np.ndarray, k: int, similarity: str):
    q = queries.astype(np.float64)
    d = docs.astype(np.float64)
    if similarity == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300)
    s = q @ d.T
    idx = np.arange(d.shape[0])
    order = np.stack([np.lexsort((idx, -row)) for row in s])[:, :k]
    return order, np.take_along_axis(s, order, axis=1), s


@pytest.mark.parametrize("block_size", [None, 1, 3, 7, 1000])
@pytest.mark.parametrize("k", [1, 5, 40, 500])
def test_top_k_dot_equals_argsort(block_size: int | None, k: int) -> None:
    # Small integers make every float32 dot product exact, so ties are real ties and the order is
    # fully determined by (score desc, index asc) whatever the BLAS summation order.
    rng = np.random.default_rng(1)
    queries = rng.integers(-3, 4, size=(23, 6)).astype(np.float32)
    docs = rng.integers(-3, 4, size=(40, 6)).astype(np.float32)
    idx, scores = top_k(queries, docs, k, similarity="dot", block_size=block_size)
    want_idx, want_scores, _ = _brute_force(queries, docs, k, "dot")
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    assert idx.shape == (23, min(k, 40))
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@pytest.mark.parametrize("block_size", [None, 1, 4, 10_000])
def test_top_k_cosine_equals_argsort(block_size: int | None) -> None:
    rng = np.random.default_rng(2)
    queries = rng.normal(size=(30, 16))
    docs = rng.normal(size=(80, 16)) * rng.uniform(0.1, 10, size=(80, 1))
    want_idx, want_scores, full = _brute_force(queries, docs, 10, "cosine")
    # The comparison is only exact if no two scores are within float32 noise of each other.
    gaps = -np.diff(np.sort(full, axis=1)[:, ::-1][:, :11], axis=1)
    assert gaps.min() > 1e-5
    idx, scores = top_k(queries, docs, 10, block_size=block_size)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_cosine_ignores_norms_but_dot_does_not() -> None:
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(5, 8))
    docs = rng.normal(size=(20, 8))
    docs[13] *= 1e3  # huge norm: wins every dot product where it is positive
    cos_idx, _ = top_k(queries, docs, 20)
    scaled_idx, _ = top_k(queries * 7.0, docs * rng.uniform(0.5, 2, size=(20, 1)), 20)
    np.testing.assert_array_equal(cos_idx, scaled_idx)
    dot_idx, dot_scores = top_k(queries, docs, 20, similarity="dot")
    assert not np.array_equal(cos_idx, dot_idx)
    positive = (queries @ docs[13]) > 0
    assert (dot_idx[positive, 0] == 13).all()
    assert (np.abs(top_k(queries, docs, 20)[1]) <= 1 + 1e-6).all()
    np.testing.assert_allclose(dot_scores[positive, 0], (queries @ docs[13])[positive], rtol=1e-5)


def test_top_k_ties_are_broken_by_lower_index() -> None:
    docs = np.zeros((12, 4), dtype=np.float32)
    docs[[9, 2, 5]] = [1, 0, 0, 0]  # three identical best documents
    docs[[11, 0]] = [0.5, 0, 0, 0]  # two identical runners-up
    queries = np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)  # second: zero vector
    # Under cosine all five non-zero docs point the same way, so they tie and sort by index.
    expected = {"dot": [2, 5, 9, 0, 11, 1], "cosine": [0, 2, 5, 9, 11, 1]}
    for block_size in (None, 1):
        for similarity, first_row in expected.items():
            idx, scores = top_k(queries, docs, 6, similarity=similarity, block_size=block_size)
            assert idx[0].tolist() == first_row
            # A zero query scores 0 against everything (no NaN) and keeps index order.
            assert idx[1].tolist() == [0, 1, 2, 3, 4, 5]
            assert np.isfinite(scores).all()
    # Ties straddling the cut-off: only the lowest-indexed tied docs make it in.
    flat = np.ones((50, 3), dtype=np.float32)
    idx, _ = top_k(np.ones((4, 3)), flat, 7, block_size=2)
    np.testing.assert_array_equal(idx, np.tile(np.arange(7), (4, 1)))


def test_top_k_validates_input() -> None:
    with pytest.raises(ValueError, match="dimension 4 .* 5"):
        top_k(np.ones((2, 4)), np.ones((3, 5)), 1)
    with pytest.raises(ValueError, match="similarity"):
        top_k(np.ones((2, 4)), np.ones((3, 4)), 1, similarity="l2")
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.ones((2, 4)), np.ones((3, 4)), 0)
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.full((2, 4), np.nan), np.ones((3, 4)), 1)
    with pytest.raises(ValueError, match="block_size"):
        top_k(np.ones((2, 4)), np.ones((3, 4)), 1, block_size=0)
    idx, scores = top_k(np.ones((2, 4)), np.ones((0, 4)), 5)
    assert idx.shape == scores.shape == (2, 0)


@pytest.mark.parametrize("block_size", [None, 1, 5])
def test_ranks_of_relevant_agrees_with_full_ranking(block_size: int | None) -> None:
    rng = np.random.default_rng(4)
    queries = rng.integers(-2, 3, size=(17, 5)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(60, 5)).astype(np.float32)
    relevant = [rng.choice(60, size=rng.integers(0, 5), replace=False).tolist() for _ in range(17)]
    ranks = ranks_of_relevant(queries, docs, relevant, similarity="dot", block_size=block_size)
    full, _ = top_k(queries, docs, 60, similarity="dot")
    for i, rel in enumerate(relevant):
        position = {int(d): r + 1 for r, d in enumerate(full[i])}
        assert ranks[i].tolist() == [position[d] for d in rel]
    with pytest.raises(ValueError, match="outside"):
        ranks_of_relevant(queries, docs, [[60]] + [[]] * 16)
    with pytest.raises(ValueError, match="entries"):
        ranks_of_relevant(queries, docs, [[0]])


@pytest.mark.parametrize("block_size", [None, 1, 5])
def test_one_search_gives_top_k_and_ranks(block_size: int | None) -> None:
    rng = np.random.default_rng(5)
    queries = rng.integers(-2, 3, size=(17, 5)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(60, 5)).astype(np.float32)
    relevant = [rng.choice(60, size=rng.integers(0, 5), replace=False).tolist() for _ in range(17)]
    exact = {"similarity": "dot", "block_size": block_size}  # integer dot products: no rounding
    idx, scores, ranks = top_k_and_ranks(queries, docs, 10, relevant, **exact)
    want_idx, want_scores = top_k(queries, docs, 10, **exact)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(scores, want_scores)
    want_ranks = ranks_of_relevant(queries, docs, relevant, **exact)
    assert [r.tolist() for r in ranks] == [r.tolist() for r in want_ranks]
    assert evaluate_retrieval(queries, docs, [{}] * 17, similarity="dot").doc_ranks is None
    ranked = evaluate_retrieval(queries, docs, [{}] * 17, similarity="dot", rank_docs=relevant)
    assert [r.tolist() for r in ranked.doc_ranks] == [r.tolist() for r in want_ranks]


# --------------------------------------------------------------------------- metrics

_TREC = {"hit": "success_{k}", "ndcg": "ndcg_cut_{k}", "recall": "recall_{k}"}
_TREC.update({"map": "map_cut_{k}", "precision": "P_{k}", "mrr": "recip_rank"})
_CUTOFFS = (1, 5, 10, 100)


def _random_judged_run(seed: int):
    """Random rankings and graded qrels covering every awkward case trec_eval handles."""
    rng = np.random.default_rng(seed)
    n_q, n_docs, depth = 80, 300, 50
    ranked = np.stack([rng.permutation(n_docs)[:depth] for _ in range(n_q)])
    relevant: list[dict[int, int]] = []
    for i in range(n_q):
        kind = i % 5
        if kind == 0:  # relevant docs exist but none retrieved
            pool = np.setdiff1d(np.arange(n_docs), ranked[i])
            docs = rng.choice(pool, size=rng.integers(1, 4), replace=False)
        elif kind == 1:  # a mix, with more relevant docs than some cut-offs
            docs = np.concatenate(
                [
                    rng.choice(ranked[i], size=rng.integers(1, 12), replace=False),
                    rng.choice(np.setdiff1d(np.arange(n_docs), ranked[i]), size=3, replace=False),
                ]
            )
        else:  # a few relevant docs at random positions of the ranking
            docs = rng.choice(ranked[i, : rng.integers(1, depth)], size=rng.integers(1, 4))
            docs = np.unique(docs)
        relevant.append({int(d): int(rng.integers(1, 4)) for d in docs})
    return ranked, relevant


def _trec_values(ranked: np.ndarray, relevant: list[dict[int, int]], extra_zero_grades: bool):
    qrels = {f"q{i}": {f"d{d}": g for d, g in rel.items()} for i, rel in enumerate(relevant)}
    if extra_zero_grades:  # judged non-relevant docs must not count as relevant
        for i, row in enumerate(ranked):
            qrels[f"q{i}"][f"d{row[-1]}"] = 0
    measures = {f"{m}.{','.join(map(str, _CUTOFFS))}" for m in ("success", "ndcg_cut", "recall")}
    measures |= {f"map_cut.{','.join(map(str, _CUTOFFS))}", f"P.{','.join(map(str, _CUTOFFS))}"}
    depth = ranked.shape[1]
    # Strictly decreasing scores: trec_eval's own tie-breaking never comes into play.
    full_run = {
        f"q{i}": {f"d{d}": float(depth - r) for r, d in enumerate(row)}
        for i, row in enumerate(ranked)
    }
    values = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(full_run)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    for k in _CUTOFFS:  # trec_eval's recip_rank has no cut-off: evaluate the truncated run
        cut = {q: dict(list(docs.items())[:k]) for q, docs in full_run.items()}
        for q, v in rr.evaluate(cut).items():
            values[q][f"recip_rank@{k}"] = v["recip_rank"]
    return values


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_trec_eval(seed: int) -> None:
    ranked, relevant = _random_judged_run(seed)
    names = [f"{kind}@{k}" for kind in _TREC for k in _CUTOFFS]
    ours = per_query_metrics(ranked, relevant, names)
    assert list(ours) == names
    trec = _trec_values(ranked, relevant, extra_zero_grades=seed == 1)
    assert len(trec) == len(relevant)
    checked = 0
    for name in names:
        kind, k = name.split("@")
        key = _TREC[kind].format(k=k) if kind != "mrr" else f"recip_rank@{k}"
        want = np.array([trec[f"q{i}"][key] for i in range(len(relevant))])
        np.testing.assert_allclose(ours[name], want, atol=1e-6, rtol=0, err_msg=name)
        checked += int((want > 0).sum())
    assert checked > 500  # the comparison is not vacuous
    # Some queries have nothing relevant retrieved; they must score 0, not be skipped.
    assert (ours["hit@100"] == 0).sum() >= 16


def test_metrics_with_zero_grades_and_unjudged_queries() -> None:
    ranked = np.array([[3, 1, 2], [0, 1, 2], [2, 0, 1]])
    relevant = [{1: 2.0, 3: 0.0}, {}, {0: -1, 7: 1}]
    m = per_query_metrics(ranked, relevant, ["hit@1", "recall@3", "ndcg@3", "precision@5", "mrr@3"])
    np.testing.assert_allclose(m["hit@1"], [0, 0, 0])
    np.testing.assert_allclose(m["recall@3"], [1, 0, 0])
    np.testing.assert_allclose(m["ndcg@3"], [1 / np.log2(3), 0, 0])
    np.testing.assert_allclose(m["precision@5"], [0.2, 0, 0])  # divides by k, not by 3 retrieved
    np.testing.assert_allclose(m["mrr@3"], [0.5, 0, 0])
    qrels = Qrels.from_mappings(relevant)
    assert qrels.n_relevant().tolist() == [1, 0, 1]
    padded = per_query_metrics(np.array([[-1, 1], [-1, -1], [7, -1]]), qrels, ["mrr@2"])
    np.testing.assert_allclose(padded["mrr@2"], [0.5, 0, 1])


def test_metric_names() -> None:
    assert required_depth(DEFAULT_METRICS) == 10
    assert required_depth(["hit@1", "NDCG@100"]) == 100
    ranked = np.array([[0, 1]])
    m = per_query_metrics(ranked, [{1: 1}], ["MRR@5", "ndcg@2"])
    assert list(m) == ["MRR@5", "ndcg@2"]
    assert m["MRR@5"][0] == 0.5
    for bad in ("foo@3", "hit", "hit@0", "hit@x", "recall@-1"):
        with pytest.raises(ValueError, match="metric"):
            per_query_metrics(ranked, [{1: 1}], [bad])
    with pytest.raises(ValueError, match="queries"):
        per_query_metrics(ranked, [{1: 1}, {0: 1}], ["hit@1"])
    with pytest.raises(ValueError, match="twice"):
        per_query_metrics(np.array([[1, 1]]), [{1: 1}], ["hit@2"])


# --------------------------------------------------------------------------- comparison


def test_identical_systems_are_not_significant() -> None:
    scores = np.random.default_rng(5).random(500)
    assert paired_bootstrap(scores, scores.copy()) == (0.0, 0.0, 0.0)
    (diff,) = compare({"mrr@10": scores}, {"mrr@10": scores.copy()})
    assert (diff.low, diff.high, diff.delta, diff.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not diff.significant
    assert diff.verdict() == "+0.0 mrr@10, 95% CI [+0.0, +0.0]: not significant"


def _better_system(seed: int, n: int = 2000, p: float = 0.25):
    """Hit indicators where adapted fixes a share p of base's misses: true delta 0.6 * p."""
    rng = np.random.default_rng(seed)
    base = (rng.random(n) < 0.4).astype(float)
    adapted = np.maximum(base, (rng.random(n) < p).astype(float))
    return base, adapted, 0.6 * p


def test_clearly_better_system_is_significant() -> None:
    base, adapted, true_delta = _better_system(6)
    delta, low, high = paired_bootstrap(base, adapted, n_resamples=5000)
    assert delta == pytest.approx(np.mean(adapted - base))
    assert low < true_delta < high
    assert 0 < low < delta < high
    # Percentile interval width agrees with normal theory for a mean of 2000 values.
    se = np.std(adapted - base, ddof=1) / np.sqrt(base.size)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.1)
    better, worse = compare(
        {"hit@5": base, "mrr@5": adapted}, {"hit@5": adapted, "mrr@5": base}, n_resamples=5000
    )
    assert better.significant and better.p_value < 1e-6
    assert better.verdict().endswith(": significant")
    assert worse.significant and worse.delta < 0 and worse.high < 0
    assert worse.verdict().endswith(": significantly worse")
    assert (better.low, better.high) == (low, high)


def test_noisy_equal_systems_are_not_significant() -> None:
    rng = np.random.default_rng(7)
    base = (rng.random(300) < 0.5).astype(float)
    adapted = base.copy()
    flip = rng.choice(300, size=20, replace=False)
    adapted[flip[:10]] = 1 - adapted[flip[:10]]  # some wins and some losses
    adapted[flip[10:]] = 1 - adapted[flip[10:]]
    (diff,) = compare({"hit@1": base}, {"hit@1": adapted}, n_resamples=2000)
    assert diff.low <= 0 <= diff.high and not diff.significant
    assert diff.verdict().endswith(": not significant")
    assert diff.p_value > 0.05


def test_bootstrap_is_deterministic_under_seed() -> None:
    rng = np.random.default_rng(8)
    base, adapted = rng.random(400), rng.random(400) + 0.05
    first = paired_bootstrap(base, adapted, n_resamples=2000, seed=3)
    assert paired_bootstrap(base, adapted, n_resamples=2000, seed=3) == first
    assert paired_bootstrap(base, adapted, n_resamples=2000, seed=4) != first
    a = compare({"x": base, "y": adapted}, {"x": adapted, "y": base}, n_resamples=500, seed=1)
    b = compare({"x": base, "y": adapted}, {"x": adapted, "y": base}, n_resamples=500, seed=1)
    assert a == b


def test_t_test_p_value_tracks_sign_flip_permutation() -> None:
    # compare() uses a t-test for speed; with hundreds of queries it should agree with the exact
    # idea of a paired sign-flip permutation test.
    base, adapted, _ = _better_system(9, n=400, p=0.04)
    (diff,) = compare({"m": base}, {"m": adapted}, n_resamples=500)
    # scipy >= 1.15 names the generator `rng`; older releases call it `random_state`.
    params = inspect.signature(stats.permutation_test).parameters
    seeded = {"rng" if "rng" in params else "random_state": np.random.default_rng(0)}
    perm = stats.permutation_test(
        (adapted - base,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=20_000,
        **seeded,
    )
    assert 0.001 < diff.p_value < 0.5
    assert diff.p_value == pytest.approx(perm.pvalue, abs=0.01)


def test_comparison_input_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap(np.array([0.5]), np.array([1.0]))
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="only one system"):
        compare({"hit@1": np.zeros(3)}, {"hit@5": np.zeros(3)})
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.zeros(3), np.ones(3), confidence=95)
    # A constant shift has no spread; the interval collapses onto it and the p-value is exact.
    delta, low, high = paired_bootstrap(np.zeros(10), np.ones(10))
    assert delta == low == high == 1.0
    (diff,) = compare({"m": np.zeros(10)}, {"m": np.ones(10)})
    assert diff.p_value == pytest.approx(2 / 2**10)


def test_verdict_and_table_format() -> None:
    up = Difference("MRR@5", 0.5, 0.521, 0.021, 0.008, 0.034, 0.01)
    assert up.verdict() == "+2.1 MRR@5, 95% CI [+0.8, +3.4]: significant"
    down = Difference("hit@5", 0.6, 0.588, -0.012, -0.02, -0.004, 0.02)
    assert down.verdict() == "-1.2 hit@5, 95% CI [-2.0, -0.4]: significantly worse"
    flat = Difference("ndcg@10", 0.4, 0.403, 0.003, -0.0004, 0.0061, 0.3, confidence=0.9)
    assert flat.verdict() == "+0.3 ndcg@10, 90% CI [+0.0, +0.6]: not significant"
    rows = comparison_table([up, down, flat])
    assert list(rows[0]) == [
        "metric",
        "base",
        "adapted",
        "delta",
        "low",
        "high",
        "p_value",
        "significant",
    ]
    assert [r["significant"] for r in rows] == [True, True, False]
    assert rows[1]["delta"] == -0.012


# --------------------------------------------------------------------------- package


def test_evaluate_retrieval_end_to_end() -> None:
    rng = np.random.default_rng(10)
    docs = rng.normal(size=(200, 32)).astype(np.float32)
    targets = rng.choice(200, size=50, replace=False)
    queries = docs[targets] + 0.05 * rng.normal(size=(50, 32))
    relevant = [{int(t): 1} for t in targets]
    result = evaluate_retrieval(queries, docs, relevant)
    assert isinstance(result, RetrievalResult)
    assert result.ranked.shape == (50, 10)
    assert set(result.metrics) == set(DEFAULT_METRICS)
    assert result.summary()["hit@1"] == 1.0
    assert result.summary()["map@10"] == 1.0
    deeper = evaluate_retrieval(queries, docs, relevant, metrics=["recall@5"], depth=30)
    assert deeper.ranked.shape == (50, 30)
    with pytest.raises(ValueError, match="depth"):
        evaluate_retrieval(queries, docs, relevant, depth=3)
    noisy = evaluate_retrieval(queries + 3 * rng.normal(size=queries.shape), docs, relevant)
    diffs = compare(noisy.metrics, result.metrics, n_resamples=1000)
    assert [d.metric for d in diffs] == list(DEFAULT_METRICS)
    assert all(d.delta >= 0 for d in diffs)


def test_evaluate_does_not_import_torch() -> None:
    code = "import sys, queryfit.evaluation; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
