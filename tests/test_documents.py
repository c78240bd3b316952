"""Reading folders of documents and chunking them to the embedder's token window."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers.sample_docs import PDF_PAGES, make_pdf, write_sample_docs

from queryfit.errors import DatasetError
from queryfit.generation.documents import (
    Document,
    approximate_tokens,
    chunk_documents,
    chunk_text,
    load_documents,
    passage_id,
    split_sentences,
    token_counter_for,
)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    return write_sample_docs(tmp_path_factory.mktemp("docs") / "docs")


def test_reads_every_type_keeps_source_and_page_and_skips_broken(docs):
    result = load_documents(docs)
    by_source = {}
    for doc in result.documents:
        by_source.setdefault(doc.source, []).append(doc)
    assert "python/assert.txt" in by_source  # nested, path relative to the root, posix style
    assert [d.page for d in by_source["glaciers.pdf"]] == [1, 2]
    assert "moraines" in by_source["glaciers.pdf"][1].text
    md = by_source["bread.md"][0].text
    assert "starter is a culture" in md and "**" not in md and "](" not in md
    assert '```python\nprint("code blocks are kept")\n```' in md and "title: Sourdough" not in md
    html = by_source["tides.html"][0].text
    assert "gravitational pull" in html and "&amp;" not in html and "& the range" in html
    assert "secret" not in html and "color: red" not in html and "Home | About" not in html
    assert ".hidden.txt" not in by_source and "image.png" not in by_source
    assert [p for p, _ in result.skipped] == ["broken.pdf"]
    assert "PDF" in result.skipped[0][1]
    assert result.files_read == len(by_source)


def test_single_file_and_encodings(tmp_path):
    (tmp_path / "latin.txt").write_bytes("Café au lait costs two euros.".encode("cp1252"))
    (tmp_path / "bom.txt").write_bytes("\ufeffHello there, reader.".encode())
    (tmp_path / "utf16.txt").write_bytes("Sixteen bits per unit.".encode("utf-16"))
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\xff\xfe binary")
    (tmp_path / "empty.md").write_text("   \n\n")
    result = load_documents(tmp_path)
    texts = {d.source: d.text for d in result.documents}
    assert texts == {
        "bom.txt": "Hello there, reader.",
        "latin.txt": "Café au lait costs two euros.",
        "utf16.txt": "Sixteen bits per unit.",
    }
    assert dict(result.skipped) == {"binary.txt": "binary content, not text", "empty.md": "no text"}
    one = load_documents(tmp_path / "latin.txt")
    assert [d.source for d in one.documents] == ["latin.txt"]


def test_user_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder.*nope"):
        load_documents(tmp_path / "nope")
    make_pdf(tmp_path / "blank.pdf", [[]])
    with pytest.raises(DatasetError, match=r"no readable documents.*blank.pdf \(no extractable"):
        load_documents(tmp_path)


def test_sentences_respect_abbreviations():
    text = "Dr. Smith met J. R. Tolkien, e.g. at lunch. It rained! Did it? 3 cats came. end"
    assert split_sentences(text) == [
        "Dr. Smith met J. R. Tolkien, e.g. at lunch.",
        "It rained!",
        "Did it?",
        "3 cats came. end",
    ]


def test_chunks_fit_the_window_overlap_and_keep_sentences_whole():
    sentences = [f"Fact number {i} concerns item {i * 7} of the catalogue." for i in range(80)]
    text = " ".join(sentences[:40]) + "\n\n" + " ".join(sentences[40:])
    chunks = chunk_text(text, max_tokens=64, overlap_tokens=16)
    assert len(chunks) > 5
    assert all(approximate_tokens(c) <= 64 for c in chunks)
    for chunk in chunks:  # no sentence is cut
        for sentence in split_sentences(chunk):
            assert sentence in sentences
    for a, b in zip(
        chunks, chunks[1:], strict=False
    ):  # each chunk starts with the last of the one before
        assert split_sentences(b)[0] == split_sentences(a)[-1]
    covered = {s for c in chunks for s in split_sentences(c)}
    assert covered == set(sentences)  # nothing lost
    no_overlap = chunk_text(text, max_tokens=64, overlap_tokens=0)
    assert sum(len(split_sentences(c)) for c in no_overlap) == 80


def test_a_sentence_longer_than_the_window_is_cut_at_words():
    long = " ".join(f"word{i}" for i in range(300)) + "."
    chunks = chunk_text(long, max_tokens=50, overlap_tokens=0)
    assert len(chunks) > 3 and all(approximate_tokens(c) <= 50 for c in chunks)
    assert " ".join(chunks).split() == long.split()


def test_bad_chunk_settings_are_user_errors():
    with pytest.raises(DatasetError, match="overlap"):
        chunk_text("Some text here.", max_tokens=32, overlap_tokens=32)
    with pytest.raises(DatasetError, match="too small"):
        chunk_text("Some text here.", max_tokens=4)


def test_passage_ids_are_content_derived_stable_and_deduplicated():
    docs = [
        Document("a.txt", "Alpha beta gamma delta. Epsilon zeta eta theta."),
        Document("b.txt", "Alpha beta gamma delta. Epsilon zeta eta theta."),  # same text
        Document("c.pdf", "Other words entirely here.", page=3),
    ]
    first = chunk_documents(docs, max_tokens=64)
    again = chunk_documents(docs, max_tokens=64)
    assert [p.id for p in first] == [p.id for p in again]
    assert [p.source for p in first] == ["a.txt", "c.pdf"]  # the copy in b.txt is kept once
    assert first[1].page == 3 and first[0].id == passage_id(first[0].text)
    assert first[0].id.startswith("d-") and len(first[0].id) == 18


def test_token_counter_uses_the_embedders_own_tokenizer():
    from queryfit.embedders import get_embedder

    embedder = get_embedder(None)  # the bundled MiniLM: only its tokenizer is loaded here
    counter = token_counter_for(embedder)
    assert counter.max_tokens == 254  # max_seq_length 256 minus [CLS] and [SEP]
    assert counter("unbelievably tokenized") > 2  # word pieces, not words
    text = " ".join(f"Sentence {i} mentions antidisestablishmentarianism twice." for i in range(60))
    passages = chunk_documents([Document("x.txt", text)], counter=counter)
    assert len(passages) > 1 and all(p.tokens <= 254 for p in passages)
    small = token_counter_for(embedder, max_tokens=40)
    assert small.max_tokens == 40
    assert token_counter_for(None).name == "approximate"


def test_pdf_helper_round_trips_text(tmp_path):
    path = make_pdf(tmp_path / "t.pdf", PDF_PAGES)
    docs = load_documents(path).documents
    assert [d.page for d in docs] == [1, 2]
    assert docs[0].text.startswith("Glaciers form where snow accumulates")


# -- code blocks: kept as passage text --------------------------------------------------------

CODE_DOC = """# Retries

Pass **max_retries** to the client. It retries on 429 and 5xx answers.

```python
def fetch(url, *, max_retries=3, **kwargs):
    # a comment, not a heading
    for attempt in range(max_retries):
        - not a list item
        return _get(url, **kwargs)
```

The last line of prose.
"""


def test_markdown_code_blocks_survive_reading_with_lines_and_indentation(tmp_path):
    (tmp_path / "retries.md").write_text(CODE_DOC)
    text = load_documents(tmp_path).documents[0].text
    block = CODE_DOC[CODE_DOC.index("```python") : CODE_DOC.rindex("```") + 3]
    assert block in text  # verbatim: **kwargs, _get, indentation, the "#" and "-" lines
    assert "Pass max_retries to the client." in text  # prose markup still removed


def test_a_code_block_that_fits_stays_in_one_passage(tmp_path):
    (tmp_path / "retries.md").write_text(CODE_DOC)
    docs = load_documents(tmp_path).documents
    passages = chunk_documents(docs, max_tokens=120)
    holding = [p for p in passages if "def fetch" in p.text]
    assert len(holding) == 1
    assert "return _get(url, **kwargs)\n```" in holding[0].text
    assert holding[0].text.count("```") == 2


def test_a_long_code_block_is_cut_between_lines_and_each_piece_stays_code():
    lines = [f"    value_{i} = compute(value_{i - 1}, step={i})" for i in range(1, 80)]
    text = "Intro sentence here.\n\n```python\n" + "\n".join(lines) + "\n```\n\nOutro text."
    chunks = chunk_text(text, max_tokens=64, overlap_tokens=0)
    code = [c for c in chunks if "compute(" in c]
    assert len(code) > 2
    seen: list[str] = []
    for chunk in code:
        assert approximate_tokens(chunk) <= 64
        start = chunk.index("```python\n")
        block = chunk[start : chunk.index("\n```", start) + 4]  # each piece has both fences
        seen.extend(block.split("\n")[1:-1])
    assert seen == lines  # every line, whole, indentation kept, in order, once


def test_unclosed_fence_runs_to_the_end_and_tildes_work():
    text = "Some prose here.\n\n~~~\nx = 1\n\ny = 2\n"
    assert chunk_text(text, max_tokens=64) == ["Some prose here.\n\n~~~\nx = 1\n\ny = 2\n~~~"]
