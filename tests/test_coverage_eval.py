"""Evaluation split by coverage: test queries about passages the training pairs covered vs not.

A real ``api.train`` and ``api.evaluate`` (and the CLI in process) on a small synthetic dataset
with a bag-of-words toy embedder, so nothing is downloaded and the suite stays quick. Training
covers passages 0..29; the test file names the same passages under other ids, asks new questions
about some covered passages and about passages 30..39, which training never paired.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from queryfit import api
from queryfit.cli import app
from queryfit.data import QADataset, save_dataset
from queryfit.embedders import CallableEmbedder, registry
from queryfit.evaluation import coverage as coverage_module
from queryfit.store import EmbeddingStore
from queryfit.training import TrainConfig

DIM = 32
MODEL = "covtest:toy"
N_PASSAGES, TRAINED = 40, 30
HEADLINE = "ndcg@10"


def word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """Sum of fixed random word vectors: questions sharing words with a passage land near it."""
    return np.stack([sum(word_vector(w) for w in t.lower().split()) for t in texts]).astype(
        np.float32
    )


def toy_embedder(name: str = "toy", options: dict | None = None) -> CallableEmbedder:
    """Also the ``covtest:`` provider's factory, so the CLI resolves the adapter's base model."""
    return CallableEmbedder(bag_of_words, f"covtest:{name}", dim=DIM, **(options or {}))


def passage(i: int) -> str:
    # "zebracorn" appears in passages only: if it shows up in adapter.json, text leaked.
    return f"zebracorn note {i}: w{i}a w{i}b w{i}c and some shared filler words"


def question(i: int, k: int) -> str:
    return f"question {k} asking about w{i}a w{i}{'bc'[k % 2]}"


def train_dataset() -> QADataset:
    """Two questions for each of passages 0..29; passages 30..39 are in the corpus, unpaired."""
    corpus = {f"d{i}": passage(i) for i in range(N_PASSAGES)}
    queries, relevant = {}, {}
    for i in range(TRAINED):
        for k in range(2):
            queries[f"q{i}-{k}"] = question(i, k)
            relevant[f"q{i}-{k}"] = [f"d{i}"]
    return QADataset(queries, corpus, relevant)


def eval_dataset() -> QADataset:
    """13 covered and 9 uncovered questions; ids differ from training's, texts do not."""
    corpus = {f"t{i}": passage(i) for i in range(N_PASSAGES)}
    queries, relevant = {}, {}
    for i in range(12):  # covered: new questions about trained passages
        queries[f"c{i}"], relevant[f"c{i}"] = question(i, 7), [f"t{i}"]
    for i in range(30, 38):  # uncovered: passages training never paired
        queries[f"u{i}"], relevant[f"u{i}"] = question(i, 7), [f"t{i}"]
    queries["mixed-covered"], relevant["mixed-covered"] = "about w1a and w2a", ["t1", "t2"]
    queries["mixed-uncovered"], relevant["mixed-uncovered"] = "about w5a and w35a", ["t5", "t35"]
    return QADataset(queries, corpus, relevant)


COVERED_IDS = {f"c{i}" for i in range(12)} | {"mixed-covered"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real training run on the toy data, saved with its test file and embedding store."""
    path = tmp_path_factory.mktemp("coverage")
    save_dataset(train_dataset(), path / "train.json")
    save_dataset(eval_dataset(), path / "test.json")
    store = EmbeddingStore(path / "store.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "little data" is expected here
        api.train(
            path / "train.json",
            model=toy_embedder(),
            out=path / "adapter",
            store=store,
            progress=False,
            config=TrainConfig(max_epochs=3, patience=1),
        )
    store.close()
    return SimpleNamespace(path=path, store=path / "store.sqlite")


@pytest.fixture
def cli(run, monkeypatch):
    """Invoke the real CLI in process, with the toy model known as the ``covtest:`` provider."""
    monkeypatch.setitem(registry._PROVIDERS, "covtest", toy_embedder)

    def invoke(*args: str):
        common = ["--store", str(run.store), "--resamples", "300"]
        result = CliRunner().invoke(app, [*args, *common], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return invoke


def evaluate(run, data, adapter=None):
    return api.evaluate(
        data,
        adapter or run.path / "adapter",
        model=toy_embedder(),
        store=EmbeddingStore(run.store),
        progress=False,
        details=False,
        n_resamples=300,
    )


def sha16(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_adapter_json_stores_passage_hashes_never_text(run):
    raw = (run.path / "adapter" / "adapter.json").read_text(encoding="utf-8")
    stored = json.loads(raw)["data"]["covered_passages"]
    assert stored == sorted(sha16(passage(i)) for i in range(TRAINED))  # sorted, unique, 0..29
    assert "zebracorn" not in raw
    assert not any(passage(i) in raw for i in range(N_PASSAGES))


def test_split_counts_and_group_numbers_come_from_the_per_query_scores(run):
    report = evaluate(run, run.path / "test.json")
    cov = report.coverage
    assert cov is not None
    assert (cov.covered, cov.uncovered) == (13, 9)
    assert [(g.name, g.queries) for g in cov.groups] == [("covered", 13), ("uncovered", 9)]
    mask = np.array([q in COVERED_IDS for q in eval_dataset().queries])
    for group, rows in zip(cov.groups, (mask, ~mask), strict=True):
        d = group.difference(HEADLINE)
        assert d.base == pytest.approx(report.per_query["base"][HEADLINE][rows].mean())
        assert d.adapted == pytest.approx(report.per_query["adapted"][HEADLINE][rows].mean())
        assert d.low <= d.delta <= d.high
        assert [x.metric for x in group.differences] == [x.metric for x in report.differences]


def test_json_output_carries_the_breakdown(run, cli):
    result = cli("evaluate", "--data", str(run.path / "test.json"), "--adapter",
                 str(run.path / "adapter"), "--json")  # fmt: skip
    printed = json.loads(result.stdout)["coverage"]
    assert (printed["covered_queries"], printed["uncovered_queries"]) == (13, 9)
    groups = {g["name"]: g for g in printed["groups"]}
    assert set(groups) == {"covered", "uncovered"} and groups["uncovered"]["queries"] == 9
    row = next(r for r in groups["covered"]["differences"] if r["metric"] == HEADLINE)
    assert row["low"] <= row["delta"] <= row["high"] and isinstance(row["significant"], bool)
    assert groups["covered"]["base"][HEADLINE] == row["base"]


def test_human_output_shows_the_table(run, cli):
    result = cli("evaluate", "--data", str(run.path / "test.json"), "--adapter",
                 str(run.path / "adapter"), "-q")  # fmt: skip
    after = result.stdout.split("verdict:", 1)[1]
    assert "by training coverage" in after
    lines = after.splitlines()
    assert any(" covered " in f" {line} " and " 13 " in line for line in lines)
    assert any("uncovered" in line and " 9 " in line for line in lines)


def test_one_group_only_is_said_in_one_line(run, cli, tmp_path):
    covered_only = eval_dataset().subset(sorted(COVERED_IDS))
    report = evaluate(run, covered_only)
    assert report.coverage.groups == []
    assert report.coverage.note == (
        "all 13 test queries are about passages the training pairs covered"
    )
    save_dataset(covered_only, tmp_path / "covered.json")
    result = cli("evaluate", "--data", str(tmp_path / "covered.json"), "--adapter",
                 str(run.path / "adapter"), "-q")  # fmt: skip
    assert "coverage: all 13 test queries are about passages the training pairs covered" in (
        result.stdout
    )
    assert "by training coverage" not in result.stdout


def test_adapter_without_fingerprints_gives_no_breakdown(run, cli, tmp_path):
    old = tmp_path / "old-adapter"
    shutil.copytree(run.path / "adapter", old)
    meta = json.loads((old / "adapter.json").read_text())
    del meta["data"]["covered_passages"]
    (old / "adapter.json").write_text(json.dumps(meta))
    report = evaluate(run, run.path / "test.json", adapter=old)
    assert report.coverage is None and report.to_dict()["coverage"] is None
    result = cli("evaluate", "--data", str(run.path / "test.json"), "--adapter", str(old), "-q")
    assert "verdict:" in result.stdout and "coverage" not in result.stdout


def test_too_many_covered_passages_are_not_recorded(monkeypatch):
    data = train_dataset()
    assert coverage_module.covered_fingerprints(data)[0] in {
        sha16(passage(i)) for i in range(TRAINED)
    }
    monkeypatch.setattr(coverage_module, "MAX_COVERED_PASSAGES", TRAINED - 1)
    assert coverage_module.covered_fingerprints(data) is None


def test_a_group_of_one_query_is_not_compared():
    scores = {HEADLINE: np.array([0.0, 1.0, 0.5, 1.0])}
    cov = coverage_module.coverage_breakdown(
        scores, scores, np.array([True, True, True, False]), n_resamples=100
    )
    assert (cov.covered, cov.uncovered, cov.groups) == (3, 1, [])
    assert "too few in one group" in cov.note
