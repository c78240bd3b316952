"""Tests for queryfit.data: formats, validation messages and leak-free splits."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from queryfit.data import QADataset, load_dataset, save_dataset, split_dataset
from queryfit.errors import DatasetError

DATA = Path(__file__).parent / "data"
LLAMAINDEX_FIXTURE = DATA / "llamaindex_written.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
LYFT = REPO_ROOT / ".." / "shared" / "data" / "seed-10k" / "lyft_train.json"


def small() -> QADataset:
    return QADataset(
        queries={"q1": "Où est la gare ?", "q2": "What is 2+2?", "q3": "Who wrote it?"},
        corpus={"d1": "La gare est au nord.", "d2": "Four.", "d3": "Ann did.", "d4": "Noise."},
        relevant_docs={"q1": ["d1"], "q2": ["d2", "d3"], "q3": ["d3"]},
    )


def write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ LlamaIndex JSON


def test_llamaindex_fixture_loads_and_rewrites_byte_for_byte(tmp_path: Path) -> None:
    ds = load_dataset(LLAMAINDEX_FIXTURE)
    assert len(ds) == 4
    assert ds.queries["q3"] == "東京の本社はどこにありますか？"
    assert ds.corpus["node-d"] == 'The "quoted" term is emoji 🚗 after a tab.'
    assert ds.relevant_docs["q4"] == ["node-d", "node-a"]
    assert ds.mode == "text"
    assert ds.num_pairs == 5
    out = tmp_path / "ours.json"
    save_dataset(ds, out)
    assert out.read_bytes() == LLAMAINDEX_FIXTURE.read_bytes()


def test_llamaindex_reads_our_file(tmp_path: Path) -> None:
    try:
        from llama_index.core.evaluation import EmbeddingQAFinetuneDataset
    except ImportError:
        pytest.skip(
            "llama_index with EmbeddingQAFinetuneDataset is not installed "
            "(e.g. llama-index-core 0.12.x; 0.14.25 no longer has it)"
        )
    ds = small()
    out = tmp_path / "ours.json"
    save_dataset(ds, out, "llamaindex")
    theirs = EmbeddingQAFinetuneDataset.from_json(str(out))
    assert theirs.queries == ds.queries
    assert theirs.corpus == ds.corpus
    assert theirs.relevant_docs == ds.relevant_docs
    assert theirs.mode == "text"


def test_llamaindex_without_mode_defaults_to_text(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "old.json",
        '{"queries": {"a": "q?"}, "corpus": {"x": "p"}, "relevant_docs": {"a": ["x"]}}',
    )
    ds = load_dataset(path, "llamaindex")
    assert ds.mode == "text"
    assert ds == QADataset({"a": "q?"}, {"x": "p"}, {"a": ["x"]})


def test_real_lyft_file_loads_and_round_trips(tmp_path: Path) -> None:
    if not LYFT.is_file():
        pytest.skip(f"shared seed data not present at {LYFT}")
    ds = load_dataset(LYFT)
    assert len(ds) == 668
    assert "mode" not in json.loads(LYFT.read_text(encoding="utf-8"))
    assert ds.mode == "text"
    out = tmp_path / "lyft.json"
    save_dataset(ds, out, "llamaindex")
    again = load_dataset(out)
    assert again == ds
    assert again.fingerprint() == ds.fingerprint()


# ------------------------------------------------------------------ BEIR


def test_beir_round_trip(tmp_path: Path) -> None:
    ds = small()
    save_dataset(ds, tmp_path / "beir")
    assert (
        (tmp_path / "beir" / "qrels" / "test.tsv")
        .read_text()
        .startswith("query-id\tcorpus-id\tscore\n")
    )
    again = load_dataset(tmp_path / "beir")
    assert again == ds


def make_beir(folder: Path, splits: tuple[str, ...] = ("test",)) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Paris", "text": "Capital of France."},
        {"_id": "d2", "title": "", "text": "Untitled passage."},
        {"_id": "d3", "title": "Berlin", "text": "Capital of Germany."},
    ]
    queries = [
        {"_id": "q1", "text": "capital of france"},
        {"_id": "q2", "text": "untitled?"},
        {"_id": "q3", "text": "a query only judged irrelevant"},
        {"_id": "q4", "text": "a query of another split"},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    for split in splits:
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq3\td3\t0\n"
        )
    return folder


def test_beir_load_joins_title_and_drops_unjudged_queries(tmp_path: Path) -> None:
    ds = load_dataset(make_beir(tmp_path / "b"))
    assert ds.corpus == {
        "d1": "Paris Capital of France.",
        "d2": "Untitled passage.",
        "d3": "Berlin Capital of Germany.",
    }
    assert list(ds.queries) == ["q1", "q2"]  # q3 only has score 0, q4 no qrels row
    assert ds.relevant_docs == {"q1": ["d1"], "q2": ["d2"]}


def test_beir_split_choice(tmp_path: Path) -> None:
    only_dev = make_beir(tmp_path / "one", splits=("dev",))
    assert len(load_dataset(only_dev)) == 2  # the only tsv is used
    two = make_beir(tmp_path / "two", splits=("dev", "train"))
    with pytest.raises(DatasetError, match=r"found: dev, train"):
        load_dataset(two)
    assert len(load_dataset(two, split="train")) == 2
    with pytest.raises(DatasetError, match=r"no qrels/test\.tsv \(found: dev, train\)"):
        load_dataset(two, split="test")


def test_beir_duplicate_id_and_unknown_doc(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "b")
    with (folder / "corpus.jsonl").open("a") as fh:
        fh.write(json.dumps({"_id": "d1", "title": "", "text": "again"}) + "\n")
    with (folder / "qrels" / "test.tsv").open("a") as fh:
        fh.write("q1\tnope\t1\n")
    with pytest.raises(DatasetError) as err:
        load_dataset(folder)
    msg = str(err.value)
    assert str(folder) in msg
    assert "duplicate _id 'd1'" in msg
    assert "unknown doc 'nope'" in msg


# ------------------------------------------------------------------ JSONL


def test_jsonl_round_trip_plain_and_gz(tmp_path: Path) -> None:
    ds = small()
    for name in ("pairs.jsonl", "pairs.jsonl.gz"):
        save_dataset(ds, tmp_path / name)
        assert load_dataset(tmp_path / name) == ds
    first = gzip.decompress((tmp_path / "pairs.jsonl.gz").read_bytes()).decode().splitlines()[0]
    assert json.loads(first) == {
        "query_id": "q1",
        "query": "Où est la gare ?",
        "passage_ids": ["d1"],
        "passages": ["La gare est au nord."],
    }


def test_jsonl_content_ids_collapse_duplicates(tmp_path: Path) -> None:
    lines = [
        {"query": "How tall is it?", "passage": "It is 300 m tall."},
        {"query": "How tall is it?", "passage": "Height: 300 m."},
        {"query": "Where is it?", "passage": "It is 300 m tall."},
        {"query": "Who built it?", "passages": ["Eiffel.", "Height: 300 m."]},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    ds = load_dataset(path)
    assert len(ds) == 3
    assert len(ds.corpus) == 3
    assert ds.num_pairs == 5
    qid = next(q for q, t in ds.queries.items() if t == "How tall is it?")
    assert qid.startswith("q-") and len(qid) == 18
    assert all(d.startswith("d-") for d in ds.corpus)
    assert len(ds.relevant_docs[qid]) == 2
    assert load_dataset(path).fingerprint() == ds.fingerprint()  # ids are stable across runs


def test_jsonl_bad_lines_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"query": "ok?", "passage": "fine"}\n'
        "{not json\n"
        '{"query": "  ", "passage": "p"}\n'
        '{"query": "no passage"}\n'
        '{"query": 5, "passage": "p"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "4 problems" in msg
    for needle in (
        "line 2: invalid JSON",
        "line 3: query has empty text",
        "line 4: no 'passage'",
        "line 5: query text is int",
    ):
        assert needle in msg


# ------------------------------------------------------------------ validation


VALID = {"queries": {"q1": "a?"}, "corpus": {"d1": "p"}, "relevant_docs": {"q1": ["d1"]}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["relevant_docs"]["q1"].append("ghost"), "unknown doc 'ghost'"),
        (lambda d: d["queries"].update(q1="   "), "query 'q1' has empty text"),
        (lambda d: d["corpus"].update(d1=""), "passage 'd1' has empty text"),
        (lambda d: d["corpus"].update(d1=["p"]), "passage 'd1' has non-string text"),
        (lambda d: d["queries"].update(q2="lonely?"), "query 'q2' has no relevant docs"),
        (lambda d: d["relevant_docs"].update(q9=["d1"]), "unknown query 'q9'"),
        (lambda d: d["queries"].update(q1=None), "query 'q1' has non-string text"),
    ],
)
def test_each_problem_names_id_and_file(tmp_path: Path, change, expected: str) -> None:
    data = json.loads(json.dumps(VALID))
    change(data)
    path = write_json(tmp_path / "broken.json", json.dumps(data))
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert expected in msg
    assert str(path) in msg
    assert "Fix:" in msg and msg.endswith(".")


def test_duplicate_json_keys_are_reported(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "dup.json",
        '{"queries": {"q1": "a?", "q1": "b?"}, "corpus": {"d1": "x", "d1": "y"},'
        ' "relevant_docs": {"q1": ["d1"]}}',
    )
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert "duplicate query id 'q1'" in str(err.value)
    assert "duplicate doc id 'd1'" in str(err.value)


def test_many_problems_are_capped(tmp_path: Path) -> None:
    data = {
        "queries": {f"q{i}": "x?" for i in range(25)},
        "corpus": {"d1": "p"},
        "relevant_docs": {f"q{i}": ["missing"] for i in range(25)},
    }
    path = write_json(tmp_path / "many.json", json.dumps(data))
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert "25 problems" in msg and "... and 15 more" in msg
    assert "q0" in msg and "q24" not in msg


def test_missing_file_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no such file: .*nothere\.json; pass a LlamaIndex"):
        load_dataset(tmp_path / "nothere.json")
    path = write_json(tmp_path / "bad.json", '{"queries": {\n  "q1": "a",\n  oops}')
    with pytest.raises(DatasetError, match=r"invalid JSON in .*bad\.json at line 3 column 3"):
        load_dataset(path)


def test_validate_in_memory() -> None:
    small().validate()
    ds = small()
    ds.relevant_docs["q1"] = ["zzz"]
    with pytest.raises(DatasetError, match=r"<in memory>.*unknown doc 'zzz'"):
        ds.validate()
    with pytest.raises(DatasetError, match=r"mine\.json"):
        ds.validate("mine.json")


# ------------------------------------------------------------------ fingerprint / subset


def test_fingerprint_is_order_independent_and_content_sensitive() -> None:
    a = small()
    b = QADataset(
        queries=dict(reversed(list(a.queries.items()))),
        corpus=dict(reversed(list(a.corpus.items()))),
        relevant_docs={"q3": ["d3"], "q2": ["d3", "d2"], "q1": ["d1"]},
    )
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    b.corpus["d4"] = "Noise!"
    assert a.fingerprint() != b.fingerprint()


def test_subset_keeps_own_order() -> None:
    ds = small()
    sub = ds.subset(["q3", "q1"])
    assert list(sub.queries) == ["q1", "q3"]
    assert sub.corpus == ds.corpus
    sub2 = ds.subset(["q2"], corpus_ids=["d3", "d2"])
    assert list(sub2.corpus) == ["d2", "d3"]
    with pytest.raises(DatasetError, match="loses all its relevant docs"):
        ds.subset(["q1"], corpus_ids=["d2"])


# ------------------------------------------------------------------ splits


def paraphrase_dataset(n_bases: int = 40, seed: int = 1) -> tuple[QADataset, list[list[str]]]:
    """Long questions, each with a case/punctuation variant and a one-word variant."""
    rng = random.Random(seed)
    vocab = [f"word{i}" for i in range(5000)]
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    corpus: dict[str, str] = {}
    families: list[list[str]] = []
    for b in range(n_bases):
        words = rng.sample(vocab, 20)
        base = " ".join(words) + "?"
        punct = " ".join(w.upper() for w in words[:10]) + ", " + " ".join(words[10:]) + "!!"
        swapped = " ".join(words[:-1] + [f"other{b}"]) + "?"
        corpus[f"d{b}"] = f"passage {b}"
        fam = []
        for k, text in enumerate((base, punct, swapped)):
            qid = f"b{b:02d}v{k}"
            queries[qid] = text
            relevant[qid] = [f"d{b}"]
            fam.append(qid)
        families.append(fam)
    # Interleave so that family members are not adjacent in dict order.
    order = sorted(queries, key=lambda q: (q[-1], q))
    ds = QADataset({q: queries[q] for q in order}, corpus, {q: relevant[q] for q in order})
    return ds, families


def sides(train: QADataset, dev: QADataset) -> tuple[set[str], set[str]]:
    return set(train.queries), set(dev.queries)


def test_split_by_query_is_leak_free() -> None:
    ds, families = paraphrase_dataset()
    for seed in range(5):
        train, dev = split_dataset(ds, dev_fraction=0.2, seed=seed)
        tr, dv = sides(train, dev)
        assert not tr & dv
        assert tr | dv == set(ds.queries)
        assert len(dv) == 24  # 0.2 * 120, made of whole 3-query families
        for fam in families:
            assert set(fam) <= tr or set(fam) <= dv, fam
        assert train.corpus == ds.corpus and dev.corpus == ds.corpus
        train.validate()
        dev.validate()


def test_near_duplicate_grouping_is_what_keeps_variants_together() -> None:
    # With grouping only on identical token sets, one-word variants do cross sides: this shows
    # the leak test above has teeth.
    ds, families = paraphrase_dataset()
    crossed = 0
    for seed in range(5):
        train, dev = split_dataset(ds, seed=seed, near_duplicate_threshold=1.0)
        tr, _ = sides(train, dev)
        crossed += sum(1 for fam in families if 0 < len(set(fam) & tr) < 3)
    assert crossed > 0


def test_split_by_passage_keeps_dev_passages_unseen() -> None:
    rng = random.Random(3)
    corpus = {f"d{i}": f"passage number {i}" for i in range(60)}
    queries, relevant = {}, {}
    for i in range(150):
        qid = f"q{i}"
        queries[qid] = f"question {i} about topic{rng.randrange(1000)} and thing{i}"
        relevant[qid] = rng.sample(sorted(corpus), rng.choice((1, 1, 2)))
    ds = QADataset(queries, corpus, relevant)
    train, dev = split_dataset(ds, dev_fraction=0.25, by="passage", seed=7)
    assert not set(train.queries) & set(dev.queries)
    assert len(train) + len(dev) == len(ds) and len(dev) > 0
    dev_rel = {d for q in dev.queries for d in dev.relevant_docs[q]}
    train_rel = {d for q in train.queries for d in train.relevant_docs[q]}
    assert not dev_rel & set(train.corpus)
    assert not train_rel & set(dev.corpus)
    assert set(dev.corpus) == dev_rel
    assert set(train.corpus) == set(corpus) - dev_rel
    for q in dev.queries:  # relevant lists are complete, not trimmed
        assert dev.relevant_docs[q] == relevant[q]
    for q in train.queries:
        assert train.relevant_docs[q] == relevant[q]


def test_split_is_deterministic_and_seed_dependent() -> None:
    ds, _ = paraphrase_dataset()
    a = split_dataset(ds, seed=11)
    b = split_dataset(ds, seed=11)
    c = split_dataset(ds, seed=12)
    assert a == b
    assert set(a[1].queries) != set(c[1].queries)
    # Dict order does not matter, only content and seed.
    shuffled = QADataset(
        dict(sorted(ds.queries.items(), reverse=True)), ds.corpus, ds.relevant_docs
    )
    assert set(split_dataset(shuffled, seed=11)[1].queries) == set(a[1].queries)


def test_split_rejects_bad_arguments() -> None:
    ds = small()
    with pytest.raises(DatasetError, match="dev_fraction"):
        split_dataset(ds, dev_fraction=1.0)
    with pytest.raises(DatasetError, match="by="):
        split_dataset(ds, by="doc")
    one = ds.subset(["q1"])
    with pytest.raises(DatasetError, match="dataset too small to split: 1 query"):
        split_dataset(one)
    # q2 and q3 share d3, and q1 is a near-duplicate of nothing: by passage still splits...
    train, dev = split_dataset(ds, dev_fraction=0.34, by="passage")
    assert {frozenset(train.queries), frozenset(dev.queries)} == {
        frozenset({"q1"}),
        frozenset({"q2", "q3"}),
    }
    # ...but identical questions cannot be split at all.
    same = QADataset({"a": "Same?", "b": "same"}, {"d": "p"}, {"a": ["d"], "b": ["d"]})
    with pytest.raises(DatasetError, match="cannot split 2 queries leak-free"):
        split_dataset(same, dev_fraction=0.5)


def test_saving_to_an_unknown_extension_names_the_format_problem(tmp_path):
    ds = QADataset(queries={"q": "a?"}, corpus={"d": "b"}, relevant_docs={"q": ["d"]})
    with pytest.raises(DatasetError, match="cannot tell the format of .*out.txt"):
        save_dataset(ds, tmp_path / "out.txt")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing.txt")


# ------------------------------------------------------------------ hostile but legal input

LONE = "\ud800"  # half of a UTF-16 pair: legal as a JSON escape, not valid Unicode


def test_lone_surrogate_is_refused_in_every_format_naming_where(tmp_path: Path) -> None:
    li = write_json(
        tmp_path / "s.json",
        '{"queries": {"q1": "what \\ud800?"}, "corpus": {"d1": "text"},'
        ' "relevant_docs": {"q1": ["d1"]}}',
    )
    with pytest.raises(DatasetError, match=r"query 'q1' text holds a lone surrogate '\\ud800'"):
        load_dataset(li)
    key = write_json(
        tmp_path / "k.json",
        '{"queries": {"q\\udfff": "what?"}, "corpus": {"d1": "text"},'
        ' "relevant_docs": {"q\\udfff": ["d1"]}}',
    )
    with pytest.raises(DatasetError, match=r"query id 'q\\udfff' holds a lone surrogate"):
        load_dataset(key)
    jsonl = write_json(
        tmp_path / "s.jsonl",
        '{"query": "fine", "passage": "fine too"}\n{"query": "q", "passage": "p \\ud800"}\n'
        '{"query": "\\udc00", "passage": "fine"}\n',
    )
    with pytest.raises(DatasetError) as err:
        load_dataset(jsonl)
    assert "line 2: passage text holds a lone surrogate" in str(err.value)
    assert "line 3: query text holds a lone surrogate" in str(err.value)
    beir = make_beir(tmp_path / "b")
    with (beir / "corpus.jsonl").open("a") as fh:
        fh.write('{"_id": "d9", "title": "", "text": "bad \\ud800"}\n')
    with pytest.raises(DatasetError, match=r"passage 'd9' text holds a lone surrogate"):
        load_dataset(beir)
    with pytest.raises(DatasetError, match="lone surrogate"):
        QADataset({"q": "a" + LONE}, {"d": "b"}, {"q": ["d"]}).validate()
    with pytest.raises(DatasetError, match="lone surrogate"):
        save_dataset(QADataset({"q": "a"}, {"d": LONE}, {"q": ["d"]}), tmp_path / "o.jsonl")


def test_fingerprint_and_content_id_are_total() -> None:
    from queryfit.data import content_id

    odd = QADataset({"q": "a" + LONE}, {"d": "b"}, {"q": ["d"]})
    assert len(odd.fingerprint()) == 64 and odd.fingerprint() != small().fingerprint()
    assert content_id("d-", LONE) != content_id("d-", "\udc00")
    # valid text hashes exactly as before (plain UTF-8)
    import hashlib

    assert content_id("d-", "Où") == "d-" + hashlib.sha256("Où".encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", ["deep.json", "deep.jsonl", "beir"])
def test_deeply_nested_json_is_a_dataset_error(tmp_path: Path, name: str) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    if name == "beir":
        path = make_beir(tmp_path / "b")
        (path / "queries.jsonl").write_text(deep + "\n")
    else:
        path = write_json(tmp_path / name, deep + "\n")
    with pytest.raises(DatasetError, match="nested too deeply"):
        load_dataset(path)


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_beir_non_finite_scores_are_refused(tmp_path: Path, score: str) -> None:
    folder = make_beir(tmp_path / "b")
    with (folder / "qrels" / "test.tsv").open("a") as fh:
        fh.write(f"q4\td3\t{score}\n")
    with pytest.raises(DatasetError) as err:
        load_dataset(folder)
    assert f"qrels/test.tsv line 5: score {score!r} is not a finite number" in str(err.value)


def test_split_messages_name_the_argument_in_python_and_the_flag_in_the_cli(tmp_path: Path):
    two = make_beir(tmp_path / "two", splits=("dev", "train"))
    with pytest.raises(DatasetError) as err:
        load_dataset(two)
    assert "pass split=<name>" in str(err.value) and "--split" not in str(err.value)
    assert "pass --split NAME" in err.value.cli_message and "split=" not in err.value.cli_message
    with pytest.raises(DatasetError) as err:
        load_dataset(write_json(tmp_path / "x.json", "{}"), split="dev")
    assert str(err.value).endswith("Fix: drop split=.")
    assert err.value.cli_message.startswith("--split dev given for")
    assert err.value.cli_message.endswith("Fix: drop --split.")
    with pytest.raises(DatasetError, match="Fix: drop split="):
        from queryfit.api import _as_dataset

        _as_dataset(small(), "dev")
