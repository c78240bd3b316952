"""Quality levers: dev splits and cross-validation, hard negatives, blend, Procrustes, search,
label smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_vectors import distorted_queries

from queryfit.adapters import Adapter
from queryfit.evaluation import evaluate_retrieval
from queryfit.training import TrainConfig, fit_adapter, fit_adapter_cv
from queryfit.training.losses import corpus_softmax_loss
from queryfit.training.modules import build_module
from queryfit.training.negatives import mine_hard_negatives, near_duplicate_mask
from queryfit.training.search import search
from queryfit.training.splits import (
    coverage_of,
    coverage_split,
    dev_parts,
    duplicate_groups,
    kfold_rows,
)
from queryfit.training.trainer import blend_params, procrustes_weight
from queryfit.vectors import RetrievalVectors

DIM = 12


def synthetic(n_docs=40, per_doc=3, noise=0.3, seed=0) -> RetrievalVectors:
    return distorted_queries(DIM, n_docs, per_doc, noise, seed)


def test_coverage_split_keeps_every_dev_passage_in_training():
    v = synthetic(per_doc=2)
    split = coverage_split(v.relevant, 0.2, seed=1)
    assert split.mode == "covered"
    assert len(split.dev_rows) == round(0.2 * len(v.relevant))
    train_rel = [v.relevant[i] for i in split.train_rows]
    dev_rel = [v.relevant[i] for i in split.dev_rows]
    assert coverage_of(train_rel, dev_rel).all()
    assert not set(split.train_rows) & set(split.dev_rows)
    assert coverage_split(v.relevant, 0.2, seed=1) == split  # deterministic


def test_coverage_split_falls_back_with_one_question_per_passage():
    v = synthetic(per_doc=1)
    split = coverage_split(v.relevant, 0.25, seed=0)
    assert split.mode == "query"
    dev_rel = [v.relevant[i] for i in split.dev_rows]
    assert not coverage_of([v.relevant[i] for i in split.train_rows], dev_rel).any()
    assert "training does not cover" in split.describe()


def test_duplicate_questions_stay_on_one_side():
    v = synthetic(per_doc=3)
    queries = v.queries.copy()
    queries[1] = queries[0]  # the same question twice
    groups = duplicate_groups(queries)
    assert groups[0] == groups[1] and groups[2] != groups[0]
    for seed in range(5):
        split = coverage_split(v.relevant, 0.3, seed, duplicate_of=groups)
        assert (0 in split.dev_rows) == (1 in split.dev_rows)


def test_hard_negative_mining_never_picks_a_positive_or_its_near_duplicate():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(30, DIM)).astype(np.float32)
    docs[7] = docs[3] + 1e-3  # near-duplicate of passage 3
    queries = docs[[3, 5, 9, 3]] + 0.05 * rng.normal(size=(4, DIM)).astype(np.float32)
    relevant = [{3: 1.0}, {5: 1.0, 6: 2.0}, {9: 1.0}, {3: 1.0, 11: 1.0}]
    mined = mine_hard_negatives(queries, docs, relevant, k=29, duplicate_threshold=0.95)
    for i, rel in enumerate(relevant):
        picked = set(mined[i][mined[i] >= 0].tolist())
        assert not picked & set(rel)
        assert len(picked) == len(mined[i][mined[i] >= 0])  # no repeats
    assert 7 not in mined[0] and 7 not in mined[3]  # the near-duplicate is left out
    assert (mined[0] == -1).sum() == 1  # 30 docs - positive - duplicate = 28 of 29 asked
    mask = near_duplicate_mask(docs, relevant, 0.95)
    assert mask[0, 7] and not mask[0, 3] and not mask[2].any()
    # Without the guard the duplicate is the hardest negative of query 0.
    assert mine_hard_negatives(queries, docs, relevant, k=1, duplicate_threshold=1.0)[0, 0] == 7


def test_in_batch_with_hard_negatives_trains():
    data = synthetic()
    split = coverage_split(data.relevant, 0.25, 0)
    train, dev = data.select(split.train_rows), data.select(split.dev_rows)
    config = TrainConfig(loss="in_batch", hard_negatives=4, max_epochs=15, lr=3e-3)
    result = fit_adapter(train, config, dev=dev)
    assert result.best_score > result.identity_score


@pytest.mark.parametrize("kind", ["linear", "low_rank", "residual_mlp"])
def test_blend_folds_into_the_adapter_arrays(kind):
    torch.manual_seed(0)
    module = build_module(kind, DIM, bias=True, hidden_dim=5, rank=3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    params = {n: p.detach().numpy().copy() for n, p in module.named_parameters()}
    x = np.random.default_rng(1).normal(size=(4, DIM)).astype(np.float32)
    full = Adapter(type=kind, params=params, dim=DIM, normalize=False).transform(x)
    half = Adapter(type=kind, params=blend_params(kind, params, 0.3), dim=DIM, normalize=False)
    np.testing.assert_allclose(half.transform(x), x + 0.3 * (full - x), rtol=1e-4, atol=1e-5)


def test_procrustes_recovers_a_rotation_and_ships_as_linear():
    rng = np.random.default_rng(2)
    docs = rng.normal(size=(50, DIM)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    queries = (docs @ rotation).astype(np.float32)  # q = Rᵀ d, so R q = d
    v = RetrievalVectors(queries, docs, [{i: 1.0} for i in range(50)])
    np.testing.assert_allclose(procrustes_weight(v), rotation, atol=1e-4)
    result = fit_adapter(
        v.select(range(40)), TrainConfig(adapter_type="procrustes"), dev=v.select(range(40, 50))
    )
    assert result.adapter.type == "linear" and not result.shipped_identity


def test_search_is_deterministic_under_a_seed_and_reports_every_try():
    data = synthetic()
    split = coverage_split(data.relevant, 0.25, 0)
    train, dev = data.select(split.train_rows), data.select(split.dev_rows)
    grid = {"lr": (1e-3, 3e-3), "identity_penalty": (0.01, 0.0)}
    base = TrainConfig(max_epochs=6, seed=3)
    a, b = search(train, dev, base, grid), search(train, dev, base, grid)
    assert len(a.tries) == 4
    assert [t.changes for t in a.tries] == [t.changes for t in b.tries]
    assert [t.dev_score for t in a.tries] == [t.dev_score for t in b.tries]
    assert a.best_config == b.best_config
    best = a.tries[a.best_index]
    assert best.dev_score == max(t.dev_score for t in a.tries)
    assert a.best_config.lr == best.changes["lr"] and a.best_config.seed == 3
    assert "*" in a.table()


def test_dev_parts_score_uncovered_questions_against_uncovered_passages_only():
    v = synthetic(n_docs=10, per_doc=2)  # rows 2d and 2d+1 ask about passage d
    train_rows = [0, 2, 4, 6]  # covers passages 0-3
    parts = dev_parts(v, [1, 3, 8, 9], train_rows)
    covered, uncovered = parts
    np.testing.assert_array_equal(covered.queries, v.queries[[1, 3]])
    assert covered.docs is v.docs and covered.relevant == [{0: 1.0}, {1: 1.0}]
    # rows 8 and 9 ask about passage 4; only passages 4-9 (uncovered) are searched
    np.testing.assert_array_equal(uncovered.docs, v.docs[4:])
    assert uncovered.relevant == [{0: 1.0}, {0: 1.0}]
    assert len(dev_parts(v, [1, 3], train_rows)) == 1  # all covered: one part


def test_kfold_rows_partition_the_queries_and_keep_repeats_together():
    v = synthetic(n_docs=20, per_doc=2)
    v.queries[5] = v.queries[11]  # the same question twice
    folds = kfold_rows(v, 5, seed=3)
    assert sorted(r for f in folds for r in f) == list(range(len(v.queries)))
    assert any(5 in f and 11 in f for f in folds)
    assert max(map(len, folds)) - min(map(len, folds)) <= 2
    assert folds == kfold_rows(v, 5, seed=3) and folds != kfold_rows(v, 5, seed=4)


def test_cross_validation_learns_chooses_an_epoch_and_refits():
    v = synthetic(n_docs=60, per_doc=2, noise=0.6)
    config = TrainConfig(max_epochs=15, lr=3e-3, blend=False)
    result = fit_adapter_cv(v, config, folds=4)
    assert not result.shipped_identity and result.best_epoch >= 1
    assert result.best_score > result.identity_score + 0.05
    assert "4-fold cross-validated" in result.decision and "refit on all 120" in result.decision
    base = evaluate_retrieval(v.queries, v.docs, v.relevant, metrics=["ndcg@10"])
    adapted = evaluate_retrieval(
        result.adapter.transform(v.queries), v.docs, v.relevant, metrics=["ndcg@10"]
    )
    assert adapted.summary()["ndcg@10"] > base.summary()["ndcg@10"] + 0.05
    again = fit_adapter_cv(v, config, folds=4)
    for name in result.adapter.params:
        np.testing.assert_array_equal(result.adapter.params[name], again.adapter.params[name])


def test_cross_validation_ships_identity_when_nothing_carries_over():
    v = distorted_queries(DIM, 60, 2, 0.3, seed=0, learnable=False)
    result = fit_adapter_cv(v, TrainConfig(max_epochs=10, lr=1e-2), folds=4)
    assert result.shipped_identity and result.adapter.type == "identity"
    assert "shipping the identity" in result.decision


def test_label_smoothing_matches_torch_cross_entropy_for_single_positives():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, DIM), dim=-1)
    docs = torch.nn.functional.normalize(torch.randn(9, DIM), dim=-1)
    target = torch.tensor([0, 3, 3, 8, 1, 2])
    positives = torch.nn.functional.one_hot(target, 9).bool()
    ours = corpus_softmax_loss(q, docs, positives, 20.0, label_smoothing=0.1)
    want = torch.nn.functional.cross_entropy(20.0 * q @ docs.T, target, label_smoothing=0.1)
    torch.testing.assert_close(ours, want)
    assert not torch.allclose(ours, corpus_softmax_loss(q, docs, positives, 20.0))


def test_graded_positives_share_the_target_by_grade():
    torch.manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(1, DIM), dim=-1)
    docs = torch.nn.functional.normalize(torch.randn(5, DIM), dim=-1)
    positives = torch.tensor([[True, True, False, False, False]])
    grades = torch.tensor([[2.0, 1.0, 0.0, 0.0, 0.0]])
    s = 20.0 * (q @ docs.T)[0]
    want = torch.logsumexp(s, 0) - torch.log(2 * s[0].exp() + s[1].exp())
    torch.testing.assert_close(corpus_softmax_loss(q, docs, positives, 20.0, grades=grades), want)
    # Equal grades give the ungraded loss plus a constant: the same gradients.
    flat = corpus_softmax_loss(q, docs, positives, 20.0, grades=positives.float() * 3)
    torch.testing.assert_close(flat, corpus_softmax_loss(q, docs, positives, 20.0) - np.log(3))
