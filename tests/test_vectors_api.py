"""queryfit.train_vectors / evaluate_vectors: the array entry point, same reports as train and
evaluate, memory-mapped inputs, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_vectors import distorted_queries

import queryfit
from queryfit.adapters import Adapter, load_adapter
from queryfit.api import EvaluationResult, TrainResult
from queryfit.errors import AdapterError, DatasetError, TrainingError
from queryfit.evaluation import evaluate_retrieval
from queryfit.training import TrainConfig

DIM = 16


@pytest.fixture(scope="module")
def data():
    v = distorted_queries(DIM, 150, 2, 0.4, seed=0)
    test = distorted_queries(DIM, 150, 1, 0.4, seed=0)  # same passages and map, new noise
    return v, test


def _saved(tmp_path: Path, name: str, array: np.ndarray) -> np.ndarray:
    np.save(tmp_path / f"{name}.npy", array)
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


def test_train_and_evaluate_on_memory_mapped_vectors(data, tmp_path):
    v, test = data
    queries, docs = _saved(tmp_path, "q", v.queries), _saved(tmp_path, "d", v.docs)
    relevant = [list(rel) for rel in v.relevant]  # rows, grade 1
    config = TrainConfig(max_epochs=12, lr=3e-3)
    report = queryfit.train_vectors(queries, docs, relevant, config=config, out=tmp_path / "a")
    assert isinstance(report, TrainResult) and not report.shipped_identity
    assert report.facts.split.cv_folds == 3 and "3-fold cross-validation" in report.decision
    assert report.model_calls == 0 and report.texts_from_store == 0
    saved = load_adapter(tmp_path / "a")
    assert saved.training.loss_used == "corpus"
    assert saved.data.passages == 150 and saved.data.fingerprint
    assert saved.training.stages["epochs"] > 0

    evaluation = queryfit.evaluate_vectors(test.queries, docs, test.relevant, tmp_path / "a")
    assert isinstance(evaluation, EvaluationResult)
    assert evaluation.queries == 150 and evaluation.passages == 150
    assert evaluation.adapted["ndcg@10"] > evaluation.base["ndcg@10"]
    assert "ndcg@10" in evaluation.verdict and evaluation.details is None
    base = evaluate_retrieval(test.queries, v.docs, test.relevant, metrics=["ndcg@10"])
    assert evaluation.base["ndcg@10"] == pytest.approx(base.summary()["ndcg@10"])
    # The same call on in-memory arrays gives the same report.
    again = queryfit.evaluate_vectors(test.queries, v.docs, test.relevant, saved)
    assert again.adapted == evaluation.adapted


def test_train_vectors_is_the_train_code_path(data):
    v, _ = data
    config = TrainConfig(max_epochs=6, lr=3e-3, corpus_softmax_max=1000, sampled_negatives=32)
    report = queryfit.train_vectors(v.queries, v.docs, v.relevant, config=config)
    assert report.adapter.training.loss_used == "sampled"
    assert "one dev split: cross-validation scores every query" in report.decision
    assert "sampled softmax" in report.decision and report.facts.split.cv_folds == 0
    bounded = TrainConfig(max_epochs=3, lr=3e-3, dev_max_queries=20, cv_max_queries=10)
    report = queryfit.train_vectors(v.queries, v.docs, v.relevant, config=bounded)
    assert report.facts.split.dev_queries == 20 and report.facts.split.train_queries == 280
    assert "a bounded sample (dev_max_queries 20," in report.decision
    assert "cross-validation is used up to 10 queries" in report.decision


def test_relevance_as_graded_mappings(data):
    v, _ = data
    graded = [{d: 2.0} for rel in v.relevant for d in rel]
    report = queryfit.evaluate_vectors(v.queries, v.docs, graded, Adapter.identity(DIM))
    assert report.base == report.adapted


def test_bad_inputs_are_named(data):
    v, _ = data
    rel = [list(r) for r in v.relevant]
    with pytest.raises(DatasetError, match=r"relevant\[0\] names passage row 150"):
        queryfit.train_vectors(v.queries, v.docs, [[150]] + rel[1:])
    with pytest.raises(DatasetError, match="one list"):
        queryfit.train_vectors(v.queries, v.docs, rel[:-1])
    with pytest.raises(DatasetError, match="dimension"):
        queryfit.train_vectors(v.queries[:, :8], v.docs, rel)
    with pytest.raises(DatasetError, match="2-D numeric"):
        queryfit.train_vectors(v.queries[0], v.docs, rel)
    with pytest.raises(TrainingError, match="at least 20"):
        queryfit.train_vectors(v.queries[:5], v.docs, rel[:5])
    with pytest.raises(AdapterError, match="expects 4-dimensional"):
        queryfit.evaluate_vectors(v.queries, v.docs, rel, Adapter.identity(4))
