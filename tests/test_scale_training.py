"""Training at scale: the sampled softmax, mining, the automatic switches, blocked dev scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic_vectors import distorted_queries

from queryfit.errors import TrainingError
from queryfit.training import (
    TrainConfig,
    fit_adapter,
    fit_adapter_cv,
    mining,
    negatives,
    splits,
    trainer,
)
from queryfit.training.losses import corpus_softmax_loss, sampled_softmax_loss
from queryfit.training.scale import cross_validation_refusal, resolve_loss
from queryfit.training.splits import ExcludingVectors, coverage_split, dev_parts
from queryfit.vectors import RetrievalVectors, unit_rows

DIM = 16


def synthetic(n_docs=80, per_doc=3, noise=0.4, seed=0) -> RetrievalVectors:
    return distorted_queries(DIM, n_docs, per_doc, noise, seed)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("graded", [False, True])
def test_sampled_softmax_over_every_passage_once_is_the_corpus_softmax(smoothing, graded):
    gen = torch.Generator().manual_seed(0)
    n_docs, batch = 30, 4
    docs = _unit(torch.randn(n_docs, 8, generator=gen))
    q = _unit(torch.randn(batch, 8, generator=gen))
    positives = torch.zeros(batch, n_docs, dtype=torch.bool)
    pos_rows = torch.tensor([[1, 2], [5, 0], [9, 0], [3, 4]])
    pos_valid = torch.tensor([[True, True], [True, False], [True, False], [True, True]])
    grades = torch.ones(batch, n_docs)
    pos_grades = torch.where(pos_valid, torch.tensor([[1.0, 2.0], [1, 1], [1, 1], [3, 1]]), 1.0)
    for i in range(batch):
        for p, ok, g in zip(pos_rows[i], pos_valid[i], pos_grades[i], strict=True):
            if ok:
                positives[i, p] = True
                grades[i, p] = g
    hard = torch.tensor([[7, 8], [6, 11], [12, 13], [14, 0]])
    hard_valid = torch.tensor([[True, True], [True, True], [True, False], [True, False]])
    ignore = torch.zeros(batch, n_docs, dtype=torch.bool)
    ignore[0, 20] = ignore[2, 21] = True  # near-duplicates: out of the softmax
    # "Drawing" every passage once: n_docs / S = 1, no correction; a drawn passage already
    # counted (relevant, hard) or a near-duplicate is masked for that query.
    drawn = torch.arange(n_docs)
    taken = (drawn[None, None] == pos_rows[:, :, None]) & pos_valid[:, :, None]
    taken |= (drawn[None, None] == hard[:, :, None]) & hard_valid[:, :, None]
    random_valid = ~taken.any(1) & ~ignore
    sampled = sampled_softmax_loss(
        q,
        docs[pos_rows],
        pos_valid,
        docs[hard],
        hard_valid,
        docs,
        random_valid,
        n_docs,
        20.0,
        smoothing,
        pos_grades.log() if graded else None,
    )
    exact = corpus_softmax_loss(
        q, docs, positives, 20.0, ignore, smoothing, grades if graded else None
    )
    assert sampled.item() == pytest.approx(exact.item(), rel=1e-5)


def test_sampled_softmax_weights_drawn_passages_by_n_over_s():
    q = _unit(torch.tensor([[1.0, 0.0]]))
    pos = _unit(torch.tensor([[[1.0, 0.0]]]))
    drawn = _unit(torch.tensor([[0.0, 1.0]] * 4))
    args = (q, pos, torch.tensor([[True]]), torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=bool))
    loss = sampled_softmax_loss(*args, drawn, torch.ones(1, 4, dtype=bool), 1001, 1.0)
    # log(e^1 + (1001/4) * 4 e^0) - 1: each of the 4 draws stands for 1001/4 passages.
    assert loss.item() == pytest.approx(math.log(math.e + 1001) - 1, rel=1e-6)


def test_filter_never_keeps_a_positive_or_a_near_duplicate():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(40, DIM)).astype(np.float32)
    docs[7] = docs[3] + 1e-3  # near-duplicate of passage 3
    candidates = np.array([[3, 7, 5, 6, 9, -1], [0, 1, 2, 3, 4, 5]])
    kept = mining.filter_candidates(candidates, docs, [np.array([3]), np.array([1, 4])], 3, 0.95)
    assert kept[0].tolist() == [5, 6, 9]
    assert kept[1].tolist() == [0, 2, 3]
    short = mining.filter_candidates(candidates[:1], docs, [np.array([3])], 5, 0.95)
    assert short[0].tolist() == [5, 6, 9, -1, -1]


def test_faiss_mining_finds_most_exact_hard_negatives():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, DIM))
    docs = (centres[rng.integers(40, size=4000)] + 0.4 * rng.normal(size=(4000, DIM))).astype(
        np.float32
    )
    queries = (docs[:300] + 0.3 * rng.normal(size=(300, DIM))).astype(np.float32)
    positives = [np.array([i]) for i in range(300)]
    index = mining.IVFIndex(unit_rows(docs))
    assert index.nlist >= 2 and index.nprobe >= 1
    recall = mining.mining_recall(queries, docs, positives, 8, 0.95, index=index, sample=200)
    assert recall >= 0.9
    mined = mining.mine_negatives(queries, docs, positives, 8, 0.95, method="faiss")
    assert not (mined == np.arange(300)[:, None]).any()


def test_near_duplicate_rows_match_the_dense_mask_and_block():
    rng = np.random.default_rng(2)
    docs = rng.normal(size=(50, DIM)).astype(np.float32)
    docs[10] = docs[4] + 1e-3
    docs[11] = docs[4] - 1e-3
    relevant = [{4: 1.0}, {10: 1.0, 11: 2.0}, {0: 1.0}, {4: 0.0, 5: 1.0}]
    rows = negatives.near_duplicate_rows(docs, relevant, 0.95)
    assert [r.tolist() for r in rows] == [[10, 11], [4], [], []]
    cache: dict[int, np.ndarray] = {}
    again = negatives.near_duplicate_rows(docs, relevant, 0.95, cache=cache)
    assert cache and [r.tolist() for r in again] == [r.tolist() for r in rows]
    mask = negatives.near_duplicate_mask(docs, relevant, 0.95)
    assert mask.sum() == 3 and mask[0, 10] and mask[1, 4]


def test_blocked_hard_negative_mining_equals_one_block(monkeypatch):
    v = synthetic()
    whole = negatives.mine_hard_negatives(v.queries, v.docs, v.relevant, 5)
    monkeypatch.setattr(negatives, "SCORE_BUDGET_BYTES", 4 * len(v.docs) * 7)  # 7 rows a block
    np.testing.assert_array_equal(
        negatives.mine_hard_negatives(v.queries, v.docs, v.relevant, 5), whole
    )


def test_auto_loss_switches_at_corpus_softmax_max():
    config = TrainConfig(corpus_softmax_max=1000)
    assert resolve_loss(config, 10, 100) == "corpus"
    assert resolve_loss(config, 11, 100) == "sampled"
    assert resolve_loss(TrainConfig(loss="corpus", corpus_softmax_max=1), 10, 100) == "corpus"
    assert TrainConfig().hard_negatives_for("sampled") == 32
    assert TrainConfig().hard_negatives_for("in_batch") == 0
    assert "has 4,000" in cross_validation_refusal(TrainConfig(cv_max_queries=100), 4000, 10)
    assert "passages" in cross_validation_refusal(config, 100, 100)
    assert cross_validation_refusal(TrainConfig(), 668, 334) is None


def test_sampled_softmax_trains_and_is_recorded():
    data = synthetic(n_docs=120)
    split = coverage_split(data.relevant, 0.25, 0)
    train, dev = data.select(split.train_rows), data.select(split.dev_rows)
    config = TrainConfig(
        max_epochs=15, lr=3e-3, corpus_softmax_max=100, sampled_negatives=32, hard_negatives=4
    )
    result = fit_adapter(train, config, dev=dev, refit_on=data)
    assert result.loss == "sampled" and "sampled softmax over 32 shared random" in result.decision
    assert not result.shipped_identity and result.best_score > result.identity_score + 0.03
    assert set(result.stages) >= {"mining", "epochs", "dev scoring", "refit"}
    again = fit_adapter(train, config, dev=dev, refit_on=data)
    np.testing.assert_array_equal(result.adapter.params["weight"], again.adapter.params["weight"])
    corpus = fit_adapter(train, TrainConfig(max_epochs=15, lr=3e-3), dev=dev)
    assert corpus.loss == "corpus" and "sampled" not in corpus.decision


def test_blocked_dev_scoring_equals_scoring_in_one_piece(monkeypatch):
    data = synthetic(n_docs=60, per_doc=2)
    config = TrainConfig(max_epochs=6, lr=3e-3)
    dense = fit_adapter_cv(data, config, folds=3)
    monkeypatch.setattr(trainer, "DEV_DENSE_MAX", 0)  # every part searched in blocks
    monkeypatch.setattr(splits, "COPY_MAX_BYTES", 0)  # uncovered parts exclude, not copy
    blocked = fit_adapter_cv(data, config, folds=3)
    assert blocked.best_epoch == dense.best_epoch and blocked.blend == dense.blend
    for a, b in zip(dense.history, blocked.history, strict=True):
        assert a.dev_score == pytest.approx(b.dev_score, abs=1e-6)
        assert a.dev_loss == pytest.approx(b.dev_loss, rel=1e-4)
    np.testing.assert_allclose(
        dense.adapter.params["weight"], blocked.adapter.params["weight"], atol=1e-5
    )


def test_dev_parts_exclude_instead_of_copying_a_large_corpus(monkeypatch):
    v = synthetic(n_docs=10, per_doc=2)
    monkeypatch.setattr(splits, "COPY_MAX_BYTES", 0)
    covered, uncovered = dev_parts(v, [1, 3, 8, 9], [0, 2, 4, 6])
    assert isinstance(uncovered, ExcludingVectors) and uncovered.docs is v.docs
    assert uncovered.excluded.tolist() == [True] * 4 + [False] * 6
    assert uncovered.relevant == [{4: 1.0}, {4: 1.0}]
    assert covered.docs is v.docs


def test_dev_split_is_a_bounded_sample():
    v = synthetic(n_docs=100, per_doc=3)
    split = coverage_split(v.relevant, 0.2, 0, max_dev=25)
    assert len(split.dev_rows) == 25 and len(split.train_rows) == 275


def test_refit_is_skipped_when_dev_is_a_small_share():
    data = synthetic(n_docs=120, per_doc=3)
    split = coverage_split(data.relevant, 0.03, 0)
    train, dev = data.select(split.train_rows), data.select(split.dev_rows)
    config = TrainConfig(max_epochs=8, lr=3e-3, gate_z=0.0)
    result = fit_adapter(train, config, dev=dev, refit_on=data)
    assert not result.shipped_identity
    assert "no refit" in result.decision and "refit on all" not in result.decision
    assert "refit" not in result.stages


def test_device_settings_are_checked():
    with pytest.raises(TrainingError, match=r"device \(--device\)"):
        TrainConfig(device="tpu").validate()
    assert trainer.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert trainer.resolve_device("auto").type == "cpu"
        with pytest.raises(TrainingError, match="no CUDA GPU"):
            TrainConfig(device="cuda").validate()


@pytest.mark.gpu
@pytest.mark.parametrize("loss", ["corpus", "sampled"])
def test_cuda_gives_the_cpu_decision_and_metrics(loss):
    """Same data, same seed: CUDA and CPU agree on the decision and the metrics within 1e-3."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    data = synthetic(n_docs=150, per_doc=3)
    split = coverage_split(data.relevant, 0.25, 0)
    train, dev = data.select(split.train_rows), data.select(split.dev_rows)
    results = {}
    for device in ("cpu", "cuda"):
        config = TrainConfig(
            max_epochs=10, lr=3e-3, loss=loss, sampled_negatives=64, hard_negatives=8,
            device=device,
        )  # fmt: skip
        results[device] = fit_adapter(train, config, dev=dev, refit_on=data)
    cpu, cuda = results["cpu"], results["cuda"]
    assert cpu.shipped_identity == cuda.shipped_identity and cpu.best_epoch == cuda.best_epoch
    assert cpu.blend == cuda.blend
    assert cuda.identity_score == pytest.approx(cpu.identity_score, abs=1e-3)
    assert cuda.best_score == pytest.approx(cpu.best_score, abs=1e-3)
    for a, b in zip(cpu.history, cuda.history, strict=True):
        assert b.dev_score == pytest.approx(a.dev_score, abs=1e-3)


def test_drawn_among_marks_every_copy_of_a_listed_passage():
    gen = torch.Generator().manual_seed(3)
    drawn = torch.randint(20, (64,), generator=gen)  # many repeats
    rows = torch.randint(20, (5, 4), generator=gen)
    valid = torch.rand(5, 4, generator=gen) > 0.3
    expected = ((drawn[None, None, :] == rows[:, :, None]) & valid[:, :, None]).any(1)
    assert torch.equal(trainer._drawn_among(drawn, rows, valid), expected)


def test_the_refit_keeps_the_loss_the_epochs_were_chosen_with(monkeypatch):
    """Near corpus_softmax_max the training split fits under it and all queries do not: the refit
    must not switch to the sampled softmax for an epoch count chosen with the corpus softmax."""
    data = synthetic(n_docs=100, per_doc=3)  # 300 queries x 100 passages
    split = coverage_split(data.relevant, 0.2, 0)
    train, dev = data.select(split.train_rows), data.select(split.dev_rows)
    config = TrainConfig(max_epochs=3, lr=3e-3, corpus_softmax_max=len(train.queries) * 100)
    assert resolve_loss(config, len(data.queries), 100) == "sampled"  # the trap
    chosen: list[str] = []
    real = trainer.resolve_loss
    monkeypatch.setattr(trainer, "resolve_loss", lambda *a: chosen.append(real(*a)) or chosen[-1])
    result = fit_adapter(train, config, dev=dev, refit_on=data)
    assert "refit on all" in result.decision and result.loss == "corpus"
    assert chosen and set(chosen) == {"corpus"}


@pytest.mark.filterwarnings("ignore:.*little data")
@pytest.mark.parametrize("split_by", ["query", "passage"])
def test_a_dev_split_by_query_or_passage_is_a_bounded_sample_too(split_by):
    from test_coverage_eval import toy_embedder, train_dataset

    from queryfit import api
    from queryfit.store import EmbeddingStore

    config = TrainConfig(max_epochs=2, dev_max_queries=5)
    result = api.train(
        train_dataset(), model=toy_embedder(), store=EmbeddingStore(":memory:"), config=config,
        split_by=split_by, progress=False,
    )  # fmt: skip
    split = result.facts.split
    assert split.dev_queries == 5 and split.train_queries > 30
    assert f"held out by {split_by}, a bounded sample (dev_max_queries 5," in split.description
