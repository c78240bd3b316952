"""Training and evaluating on the vectors an index already holds, with zero passage embeddings.

A bag-of-words toy model (normalised, like most sentence embedders) that records every text it
is asked to embed, so "no passage was embedded" is counted, not assumed. The same dataset goes
through its texts (the dataset path) and through real stores holding the model's vectors for
those texts (the index path): same vectors, same adapter, same metrics.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
from store_writers import KINDS, write, write_lancedb
from typer.testing import CliRunner

from queryfit import api
from queryfit.cli import app
from queryfit.data import QADataset, load_dataset, save_dataset
from queryfit.embedders import CallableEmbedder, registry
from queryfit.errors import GenerationError, SourceError
from queryfit.sources.index import index_vectors
from queryfit.store import EmbeddingStore
from queryfit.training import TrainConfig
from queryfit.vectors import embed_dataset

pytestmark = pytest.mark.filterwarnings("ignore:.*is little data")  # 60 toy queries, on purpose

DIM = 32
MODEL = "idxtest:toy"
N_PASSAGES, TRAINED = 40, 30
IDS = [f"d{i}" for i in range(N_PASSAGES)]


def word_vector(word: str, salt: str = "") -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256((salt + word).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM)


def bag_of_words(texts: list[str], salt: str = "") -> np.ndarray:
    """Normalised sum of fixed random word vectors; another ``salt`` is another model."""
    v = np.stack([sum(word_vector(w, salt) for w in t.lower().split()) for t in texts])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


class Recorder:
    """The toy model's function, recording every text it embeds."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        return bag_of_words(texts)

    def passages(self) -> list[str]:
        return [t for t in self.texts if t in PASSAGE_TEXTS]


def toy(recorder: Recorder | None = None) -> CallableEmbedder:
    return CallableEmbedder(recorder or Recorder(), MODEL, dim=DIM)


def passage(i: int) -> str:
    return f"note {i}: w{i}a w{i}b w{i}c and some shared filler words"


TEXTS = [passage(i) for i in range(N_PASSAGES)]
PASSAGE_TEXTS = set(TEXTS)


def question(i: int, k: int) -> str:
    return f"question {k} asking about w{i}a w{i}{'bc'[k % 2]}"


def train_dataset() -> QADataset:
    """Two questions for each of passages 0..29, under the index's ids; 30..39 unpaired."""
    queries = {f"q{i}-{k}": question(i, k) for i in range(TRAINED) for k in range(2)}
    relevant = {q: [f"d{q[1:].split('-')[0]}"] for q in queries}
    return QADataset(queries, dict(zip(IDS, TEXTS, strict=True)), relevant)


def eval_dataset() -> QADataset:
    queries = {f"t{i}": question(i, 7) for i in [*range(12), *range(30, 38)]}
    relevant = {q: [f"d{q[1:]}"] for q in queries}
    return QADataset(queries, dict(zip(IDS, TEXTS, strict=True)), relevant)


CONFIG = TrainConfig(max_epochs=8)


@pytest.fixture(scope="module")
def lance(tmp_path_factory):
    """A LanceDB table holding the toy model's vectors for the passages, as an app wrote it."""
    path = tmp_path_factory.mktemp("lance")
    return write("lancedb", path, IDS, TEXTS, bag_of_words(TEXTS))


@pytest.fixture(scope="module")
def prose(tmp_path_factory):
    """Prose passages an LLM could ask about (Python's reference topics), in a LanceDB table."""
    from queryfit.cli.demo import pydoc_passages

    passages = dict(list(pydoc_passages().items())[:60])
    path = tmp_path_factory.mktemp("prose")
    uri = write(
        "lancedb",
        path,
        list(passages),
        list(passages.values()),
        bag_of_words(list(passages.values())),
    )
    return uri, passages


@pytest.fixture(scope="module")
def dataset_path():
    """The dataset path: adapter trained on the passages' texts, and its evaluation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "little data"
        trained = api.train(
            train_dataset(), model=toy(), store=EmbeddingStore(":memory:"), config=CONFIG,
            progress=False,
        )  # fmt: skip
    evaluated = evaluate(trained.adapter)
    return trained, evaluated


def evaluate(adapter, recorder=None, **kwargs):
    return api.evaluate(
        eval_dataset(), adapter, model=toy(recorder), store=EmbeddingStore(":memory:"),
        n_resamples=300, progress=False, details=False, **kwargs,
    )  # fmt: skip


def assert_same_metrics(a, b):
    for side in ("base", "adapted"):
        got, want = getattr(b, side), getattr(a, side)
        assert got.keys() == want.keys()
        for metric in want:
            assert abs(got[metric] - want[metric]) <= 1e-6, (side, metric)


def test_same_adapter_and_metrics_through_the_index_with_no_passage_embedded(lance, dataset_path):
    trained, evaluated = dataset_path
    assert not trained.shipped_identity  # a real adapter, not the trivially equal identity
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        through_index = api.train(
            train_dataset(), model=toy(recorder), store=EmbeddingStore(":memory:"),
            config=CONFIG, index=lance, progress=False,
        )  # fmt: skip
    assert through_index.adapter.params.keys() == trained.adapter.params.keys()
    for name, values in trained.adapter.params.items():
        np.testing.assert_allclose(through_index.adapter.params[name], values, atol=1e-6)
    # Only the model check's 8 passages went to the model: reported as such, and counted here.
    check = through_index.index["model_check"]
    assert check["passed"] and check["passages"] == 8 and check["lowest_cosine"] > 0.999
    assert len(recorder.passages()) == 8 == check["texts_embedded"]
    assert through_index.passage_vectors_from_index == N_PASSAGES
    assert through_index.index["passages_embedded"] == 0
    assert through_index.texts_embedded == 60 + 8
    assert through_index.model_calls == recorder.calls == 2  # one batch of questions + the check
    saved = through_index.adapter.data.index
    assert saved["uri"] == lance and saved["passage_vectors_from_index"] == N_PASSAGES

    recorder = Recorder()
    index_eval = evaluate(through_index.adapter, recorder, index=lance, check_passages=0)
    assert_same_metrics(evaluated, index_eval)
    assert recorder.passages() == [] and recorder.texts == list(eval_dataset().queries.values())
    assert index_eval.passage_vectors_from_index == N_PASSAGES and index_eval.index is not None
    assert (index_eval.model_calls, index_eval.texts_embedded) == (1, 20)


@pytest.mark.parametrize("kind", KINDS)
def test_every_store_gives_the_dataset_paths_vectors_and_metrics(kind, tmp_path, dataset_path):
    uri = write(kind, tmp_path, IDS, TEXTS, bag_of_words(TEXTS))
    expected = embed_dataset(train_dataset(), toy(), EmbeddingStore(":memory:"), progress=False)
    recorder = Recorder()
    read = index_vectors(
        train_dataset(), uri, toy(recorder), EmbeddingStore(":memory:"), progress=False
    )
    assert read.vectors.doc_ids == expected.doc_ids and read.vectors.relevant == expected.relevant
    np.testing.assert_allclose(read.vectors.docs, expected.docs, atol=1e-6)
    np.testing.assert_array_equal(read.vectors.queries, expected.queries)
    assert len(recorder.passages()) == 8 and read.passages_embedded == 0
    assert read.passage_vectors_from_index == N_PASSAGES and read.read_seconds >= 0

    trained, evaluated = dataset_path
    assert_same_metrics(evaluated, evaluate(trained.adapter, index=uri))


def test_a_store_filled_with_another_models_vectors_is_refused(tmp_path):
    uri = write_lancedb(tmp_path, IDS, TEXTS, bag_of_words(TEXTS, salt="other model"))
    with pytest.raises(SourceError) as info:
        api.train(train_dataset(), model=toy(), store=EmbeddingStore(":memory:"), index=uri,
                  progress=False)  # fmt: skip
    message = str(info.value)
    assert "\n" not in message
    assert f"{MODEL} does not reproduce its vectors: on 8 of its passages" in message
    assert "0.99 needed); likely another model made the index's vectors" in message
    assert "--model" in message and "--force" in message

    recorder = Recorder()
    with pytest.warns(UserWarning, match="going on \\(--force\\)"):
        forced = api.train(
            train_dataset(), model=toy(recorder), store=EmbeddingStore(":memory:"), index=uri,
            force=True, config=CONFIG, progress=False,
        )  # fmt: skip
    check = forced.index["model_check"]
    assert not check["passed"] and check["lowest_cosine"] < 0.8 and check["model_calls"] == 1
    assert forced.model_calls == 2 and len(recorder.passages()) == 8


@pytest.mark.parametrize(
    ("stored", "cause"),
    [
        (lambda: bag_of_words(["passage: " + t for t in TEXTS]), "likely a prefix or instruction"),
        (lambda: bag_of_words(TEXTS) + 0.05, "likely a different normalisation"),
    ],
    ids=["prefix", "centred"],
)
def test_the_model_check_names_the_likely_cause(stored, cause, tmp_path):
    uri = write_lancedb(tmp_path, IDS, TEXTS, stored())
    with pytest.raises(SourceError, match=cause):
        index_vectors(train_dataset(), uri, toy(), EmbeddingStore(":memory:"), progress=False)


def test_scaled_vectors_pass_the_model_check(tmp_path):
    """Cosine ignores length: an index that stores unnormalised vectors is the same space."""
    uri = write_lancedb(tmp_path, IDS, TEXTS, 3.0 * bag_of_words(TEXTS))
    read = index_vectors(train_dataset(), uri, toy(), EmbeddingStore(":memory:"), progress=False)
    assert read.check.passed and read.check.lowest_cosine > 0.999


def test_an_index_of_another_dimension_is_refused(tmp_path):
    uri = write_lancedb(tmp_path, IDS, TEXTS, np.ones((N_PASSAGES, 8), np.float32))
    with pytest.raises(SourceError, match=f"8 dimensions but {MODEL} makes 32: another model"):
        index_vectors(train_dataset(), uri, toy(), EmbeddingStore(":memory:"), progress=False)


def test_pairs_naming_passages_outside_the_index_are_refused(lance):
    data = train_dataset()
    data.corpus["d-gone"] = "a passage the index does not hold"
    data.relevant_docs["q0-0"] = ["d-gone"]
    message = (
        r"1 of the 41 passages of the pairs are not in it \(e.g. 'd-gone'\); "
        r"write the pairs for this index with `queryfit generate --index URI`"
    )
    with pytest.raises(SourceError, match=message):
        index_vectors(data, lance, toy(), EmbeddingStore(":memory:"), progress=False)


def test_pairs_with_other_texts_for_the_same_ids_warn(lance):
    data = train_dataset()
    data.corpus["d3"] = "an edited passage"
    with pytest.warns(UserWarning, match="1 passages of the pairs have another text .*'d3'"):
        index_vectors(data, lance, toy(), EmbeddingStore(":memory:"), progress=False)


def test_the_rest_of_the_index_is_searched_as_distractors(lance):
    """Pairs about part of the index: its other passages follow, in the index's order."""
    data = train_dataset().subset(
        [q for q in train_dataset().queries if int(q[1:].split("-")[0]) < 20],
        corpus_ids=IDS[:20],
    )
    read = index_vectors(data, lance, toy(), EmbeddingStore(":memory:"), progress=False)
    assert read.vectors.doc_ids == IDS and read.pairs_passages == 20 and read.passages == 40
    np.testing.assert_allclose(read.vectors.docs, bag_of_words(TEXTS), atol=1e-6)
    adapter = api.train(train_dataset(), model=toy(), store=EmbeddingStore(":memory:"),
                        config=CONFIG, progress=False).adapter  # fmt: skip
    report = api.evaluate(data, adapter, model=toy(), store=EmbeddingStore(":memory:"),
                          index=lance, n_resamples=100, progress=False)  # fmt: skip
    assert report.passages == 40
    shown = report.details.passages  # top passages beyond the pairs' corpus get their text too
    assert any(int(d[1:]) >= 20 for d in shown) and all(shown.values())


@pytest.mark.parametrize("form", ["parquet", "python"])
def test_text_only_sources_embed_their_passages_through_the_store(form, tmp_path):
    index = (
        write("parquet", tmp_path, IDS, TEXTS, None)
        if form == "parquet"
        else list(zip(IDS, TEXTS, strict=True))
    )
    store = EmbeddingStore(tmp_path / "store.sqlite")
    expected = embed_dataset(train_dataset(), toy(), EmbeddingStore(":memory:"), progress=False)
    read = index_vectors(train_dataset(), index, toy(), store, progress=False)
    np.testing.assert_allclose(read.vectors.docs, expected.docs, atol=1e-6)
    assert read.passage_vectors_from_index == 0 and read.passages_embedded == N_PASSAGES
    assert read.check is None
    again = index_vectors(train_dataset(), index, toy(Recorder()), store, progress=False)
    assert again.passages_embedded == 0 and again.model_calls == 0  # each text once, ever


# -- generate on the index's own passages ------------------------------------------------------


def generate(index, tmp_path, **kwargs):
    return api.generate(
        index=index, llm="heuristic", store=tmp_path / "store.sqlite", progress=False, **kwargs
    )


def test_generate_asks_about_the_index_passages_under_their_ids(prose, tmp_path):
    uri, passages = prose
    report = generate(uri, tmp_path, out=tmp_path / "pairs.json")
    data = load_dataset(tmp_path / "pairs.json")
    assert data.corpus == passages  # no re-chunking, the index's ids
    assert {d for rel in data.relevant_docs.values() for d in rel} <= set(passages)
    assert len(data.queries) >= 60
    assert report.documents == {
        "index": uri, "passages_in_index": 60, "sample": None, "passages": 60,
        "blank_skipped": 0,
    }  # fmt: skip
    assert report.chunking is None and [p.chunk for p in report.passages] == list(range(60))


def test_sample_draws_a_seeded_random_subset(prose, tmp_path):
    uri, passages = prose
    first = generate(uri, tmp_path, sample=5).dataset.corpus
    again = generate(uri, tmp_path, sample=5).dataset.corpus
    other = generate(uri, tmp_path, sample=5, seed=1).dataset.corpus
    assert len(first) == 5 and first == again and first != other
    assert all(passages[d] == text for d, text in first.items())
    assert len(generate(uri, tmp_path, sample=500).dataset.corpus) == 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"docs": "somewhere"}, "pass --docs or --index, not both"),
        ({"index": None}, "nothing to ask about: pass --docs .* or --index"),
        ({"index": None, "docs": "x", "sample": 3}, "--sample picks passages of an --index"),
        ({"sample": 0}, "--sample must be at least 1"),
    ],
)
def test_generate_input_mistakes(kwargs, message, lance, tmp_path):
    kwargs = {"index": lance} | kwargs
    with pytest.raises(GenerationError, match=message):
        api.generate(llm="heuristic", store=tmp_path / "s.sqlite", progress=False, **kwargs)


def test_the_consistency_filter_would_embed_passages_so_it_is_refused(lance, tmp_path):
    from queryfit.generation import FilterConfig

    with pytest.raises(GenerationError, match="--consistency-k would embed every passage"):
        generate(lance, tmp_path, filters=FilterConfig(consistency_k=5))


# -- the command line, in process --------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """The real CLI with the toy model known as the ``idxtest:`` provider."""
    monkeypatch.setitem(registry._PROVIDERS, "idxtest", lambda name, options: toy())
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(app, [*args, "--store", "store.sqlite"])
        assert result.exit_code == code, result.output
        return result

    return invoke


def test_generate_train_evaluate_and_search_through_the_index(lance, prose, cli, tmp_path):
    made = json.loads(cli("generate", "--index", prose[0], "--out", "pairs.json", "--llm",
                          "heuristic", "--sample", "10", "--json").stdout)  # fmt: skip
    assert made["passages"] == 10 and made["documents"]["index"] == prose[0]
    assert set(load_dataset(tmp_path / "pairs.json").corpus) <= set(prose[1])
    save_dataset(train_dataset(), tmp_path / "train.json")
    save_dataset(eval_dataset(), tmp_path / "test.json")

    trained = json.loads(cli("train", "--index", lance, "--data", "train.json", "--out",
                             "adapter", "--model", MODEL, "--json").stdout)  # fmt: skip
    assert trained["passage_vectors_from_index"] == 40
    assert (trained["texts_embedded"], trained["model_calls"]) == (68, 2)
    assert trained["index"]["model_check"]["passed"] and trained["index"]["passages_embedded"] == 0
    shown = cli("train", "--index", lance, "--data", "train.json", "--out", "adapter", "--model",
                MODEL, "-q").stdout  # fmt: skip
    assert "40 passage vectors read in" in shown and "0 passages embedded" in shown
    assert "model check passed: cosine 1.0000 at worst on 8 passages" in shown

    evaluated = json.loads(cli("evaluate", "--index", lance, "--data", "test.json", "--adapter",
                               "adapter", "--resamples", "200", "--json").stdout)  # fmt: skip
    assert evaluated["passage_vectors_from_index"] == 40 and evaluated["passages"] == 40
    assert (evaluated["texts_embedded"], evaluated["model_calls"]) == (28, 2)

    side_by_side = cli("search", "--index", lance, "--adapter", "adapter",
                       "question asking about w3a w3c").stdout  # fmt: skip
    assert "without the adapter" in side_by_side and "with the adapter" in side_by_side
    assert "d3" in side_by_side and "cosine distance" in side_by_side
    found = json.loads(cli("search", "--index", lance, "--adapter", "adapter", "-k", "3",
                           "question asking about w3a w3c", "--json").stdout)  # fmt: skip
    assert len(found["base"]) == len(found["adapted"]) == 3 and found["store_search"]
    assert found["adapted"][0]["id"] == "d3" and found["model_calls"] == 1


def test_search_scans_a_chunk_file_exactly(cli, tmp_path, dataset_path):
    from queryfit.adapters import save_adapter

    save_adapter(dataset_path[0].adapter, tmp_path / "adapter")
    uri = write("parquet", tmp_path / "chunks", IDS, TEXTS, bag_of_words(TEXTS))
    found = json.loads(cli("search", "--index", uri, "--adapter", "adapter", "-k", "4",
                           "about w17a w17b", "--json").stdout)  # fmt: skip
    assert found["score"] == "cosine similarity" and not found["store_search"]
    assert found["base"][0]["id"] == "d17" and len(found["adapted"]) == 4
    scores = [hit["score"] for hit in found["base"]]
    assert scores == sorted(scores, reverse=True)


def test_run_on_the_index(prose, cli, tmp_path):
    uri = prose[0]
    done = json.loads(cli("run", "--index", uri, "--out", "adapter", "--llm", "heuristic",
                          "--model", MODEL, "--json").stdout)  # fmt: skip
    assert done["generation"]["documents"]["index"] == uri
    assert done["train"]["passage_vectors_from_index"] == 60
    assert done["evaluation"]["passage_vectors_from_index"] == 60
    assert "- index: `" + uri in (tmp_path / "adapter" / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--data", "train.json", "--out", "a", "--index", "pinecone:x"],
            "cannot read --index",
        ),  # noqa: E501
        (
            ["train", "--data", "train.json", "--out", "a", "--index", "{other}"],
            "does not reproduce its vectors",
        ),  # noqa: E501
        (["generate", "--out", "p.json", "--llm", "heuristic"], "nothing to ask about"),
        (
            ["generate", "--out", "p.json", "--index", "{lance}", "--sample", "0"],
            "--sample must be",
        ),  # noqa: E501
        (["search", "--index", "{lance}", "--adapter", "nowhere", "q"], "nowhere"),
    ],
)
def test_command_line_mistakes_are_one_line_and_exit_2(args, message, lance, cli, tmp_path):
    save_dataset(train_dataset(), tmp_path / "train.json")
    other = write_lancedb(tmp_path / "o", IDS, TEXTS, bag_of_words(TEXTS, salt="other"))
    args = [a.format(other=other, lance=lance) for a in args]
    if args[0] == "train":
        args += ["--model", MODEL]
    result = cli(*args, code=2)
    assert message in result.output and result.output.count("error:") == 1
    assert "Traceback" not in result.output
