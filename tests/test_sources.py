"""Passage sources, each on a small real collection written by its own library: what goes in
comes back (ids, texts, vectors, metadata) in bounded batches, the stores' own search finds a
passage by its vector, and every bad input is one SourceError line naming the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from store_writers import KINDS, SEARCHABLE, write, write_docs_jsonl, write_lancedb

from queryfit.errors import SourceError
from queryfit.sources import open_source, parse_uri
from queryfit.sources.base import require

N, DIM = 23, 6
IDS = [f"p{i:02d}" for i in range(N)]
TEXTS = [f"passage number {i} about topic {i % 5}" for i in range(N)]


def unit_vectors(n: int = N, dim: int = DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


VECTORS = unit_vectors()


def read_all(uri: str, batch_size: int = 7):
    with open_source(uri) as source:
        batches = list(source.batches(batch_size, metadata=True))
        return source.count(), source.dim, batches


@pytest.mark.parametrize("kind", KINDS)
def test_source_gives_back_what_was_written_in_bounded_batches(kind, tmp_path):
    uri = write(kind, tmp_path, IDS, TEXTS, VECTORS)
    count, dim, batches = read_all(uri)
    assert (count, dim) == (N, DIM)
    assert len(batches) == 4 and all(len(b) <= 7 for b in batches)
    assert [b.start for b in batches] == [0, 7, 14, 21]
    ids = [i for b in batches for i in b.ids]
    assert sorted(ids) == IDS and len(set(ids)) == N
    rows = [IDS.index(i) for i in ids]
    assert [t for b in batches for t in b.texts] == [TEXTS[r] for r in rows]
    vectors = np.concatenate([b.vectors for b in batches])
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(vectors, VECTORS[rows], atol=1e-6)
    metadata = [m for b in batches for m in b.metadata]
    assert len(metadata) == N
    if kind != "qdrant":  # the others keep a "position" field beside id and text
        assert [m["position"] for m in metadata] == rows


@pytest.mark.parametrize("kind", SEARCHABLE)
def test_the_stores_own_search_finds_a_passage_by_its_vector(kind, tmp_path):
    uri = write(kind, tmp_path, IDS, TEXTS, VECTORS)
    with open_source(uri) as source:
        hits, score = source.native_search(VECTORS[11], 3)
    assert [h.id for h in hits][0] == "p11" and len(hits) == 3
    assert hits[0].text == TEXTS[11] and score


def test_text_only_files_have_no_dimension(tmp_path):
    write_docs_jsonl(tmp_path / "chunks.jsonl", IDS, TEXTS)
    for uri in (f"jsonl:{tmp_path / 'chunks.jsonl'}", str(tmp_path / "chunks.jsonl")):
        count, dim, batches = read_all(uri)
        assert (count, dim) == (N, None) and all(b.vectors is None for b in batches)
    parquet = write("parquet", tmp_path / "pq", IDS, TEXTS, None)
    count, dim, batches = read_all(parquet)
    assert (count, dim) == (N, None) and [t for b in batches for t in b.texts] == TEXTS


def test_field_names_are_configurable(tmp_path):
    import pyarrow as pa

    vectors = pa.FixedSizeListArray.from_arrays(pa.array(VECTORS.ravel()), DIM)
    write_lancedb(tmp_path, IDS, TEXTS, None, body=TEXTS[::-1], emb=vectors, key=IDS[::-1])
    uri = f"lancedb:{tmp_path / 'lance'}?table=docs&text_field=body&vector_field=emb&id_field=key"
    _, dim, batches = read_all(uri)
    assert dim == DIM and batches[0].ids[0] == IDS[-1] and batches[0].texts[0] == TEXTS[-1]
    # keyword arguments win over the URI's options
    with open_source(uri, text_field="text") as source:
        assert next(source.batches()).texts[0] == TEXTS[0]


def test_python_objects_are_text_only_sources():
    from langchain_core.documents import Document
    from llama_index.core.schema import Document as LlamaDocument
    from llama_index.core.schema import TextNode

    items = [
        TextNode(id_="node-1", text="a llama node", metadata={"file": "a.txt"}),
        LlamaDocument(id_="doc-2", text="a llama document"),
        Document(page_content="a langchain document", id="lc-3", metadata={"page": 3}),
        Document(page_content="a langchain document without id"),
        ("pair-5", "an (id, text) pair"),
        {"id": "dict-6", "text": "a dict", "source": "x"},
    ]
    source = open_source(items)
    assert source.count() == 6 and source.dim is None
    (batch,) = list(source.batches(metadata=True))
    assert batch.ids[:3] == ["node-1", "doc-2", "lc-3"] and batch.ids[4:] == ["pair-5", "dict-6"]
    assert batch.ids[3].startswith("doc-")  # a content id, stable across runs
    assert batch.texts[0] == "a llama node" and batch.texts[3].endswith("without id")
    assert batch.metadata[0] == {"file": "a.txt"} and batch.metadata[5] == {"source": "x"}
    with pytest.raises(SourceError, match="item 0 is a int"):
        list(open_source([1, 2]).batches())


def test_faiss_id_map_and_ivf_indexes_give_their_vectors_back(tmp_path):
    import faiss

    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(IDS, TEXTS, strict=True))
    )
    idmap = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    idmap.add_with_ids(VECTORS, np.arange(N) * 10 + 7)
    faiss.write_index(idmap, str(tmp_path / "idmap.faiss"))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, 2, faiss.METRIC_INNER_PRODUCT)
    ivf.train(np.tile(VECTORS, (4, 1)))
    ivf.add(VECTORS)
    faiss.write_index(ivf, str(tmp_path / "ivf.faiss"))
    for name in ("idmap", "ivf"):
        uri = f"faiss:{tmp_path / name}.faiss?docs={tmp_path / 'docs.jsonl'}"
        _, dim, batches = read_all(uri)
        np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), VECTORS)
    with open_source(f"faiss:{tmp_path / 'idmap.faiss'}?docs={tmp_path / 'docs.jsonl'}") as s:
        assert s.native_search(VECTORS[4], 1)[0][0].id == "p04"  # label 47 -> row 4


def test_qdrant_named_vectors_are_chosen_by_vector_field(tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    client.create_collection("docs", vectors_config={"dense": params, "other": params})
    client.upsert(
        "docs",
        points=[
            models.PointStruct(
                id=i, vector={"dense": VECTORS[i].tolist(), "other": VECTORS[-1 - i].tolist()},
                payload={"page_content": TEXTS[i]},
            )
            for i in range(N)
        ],
    )  # fmt: skip
    client.close()
    base = f"qdrant:{tmp_path / 'q'}?collection=docs&text_field=page_content"
    with pytest.raises(SourceError, match="several named vectors .*dense, other.*vector_field="):
        open_source(base)
    _, dim, batches = read_all(base + "&vector_field=other")
    np.testing.assert_allclose(batches[0].vectors[0], VECTORS[-1], atol=1e-6)
    assert batches[0].ids[0] == "0" and batches[0].texts[0] == TEXTS[0]  # the point id


# -- bad input: one line each, naming the fix ------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pinecone:xyz", "cannot read --index 'pinecone:xyz': use lancedb:PATH"),
        ("lancedb:", "names no path"),
        ("lancedb:/tmp/x", r"names no table: write lancedb:PATH\?table=NAME"),
        ("chroma:/tmp/x?collection=", "names no collection"),
        ("faiss:/tmp/x.faiss", "names no docs"),
        ("parquet:/tmp/x.parquet?tabel=a", "unknown option tabel for parquet: it takes"),
        ("lancedb:/tmp/x?table", "cannot read the options"),
    ],
)
def test_bad_uris_are_one_line(uri, message):
    with pytest.raises(SourceError, match=message) as info:
        open_source(uri)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("lancedb:{p}/none?table=docs", "no LanceDB database at"),
        ("chroma:{p}/none?collection=docs", "no Chroma database at"),
        ("qdrant:{p}/none?collection=docs", "no Qdrant local storage at"),
        ("faiss:{p}/none.faiss?docs={p}/d.jsonl", "no FAISS index file at"),
        ("parquet:{p}/none.parquet", "no file at"),
        ("jsonl:{p}/none.jsonl", "no file at"),
    ],
)
def test_missing_paths_are_named(uri, message, tmp_path):
    with pytest.raises(SourceError, match=message):
        open_source(uri.format(p=tmp_path))
    assert not (tmp_path / "none").exists()  # nothing created on the way


@pytest.mark.parametrize("kind", ["lancedb", "chroma", "qdrant"])
def test_unknown_table_or_collection_lists_the_existing_ones(kind, tmp_path):
    uri = write(kind, tmp_path, IDS, TEXTS, VECTORS)
    wrong = uri.replace("=docs", "=dcos")
    with pytest.raises(SourceError, match=r"no (table|collection) 'dcos' .*docs\); pass \?"):
        open_source(wrong)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("lancedb", "&text_field=body", "no text column 'body' .*pass text_field="),
        ("lancedb", "&vector_field=embedding", "no vector column 'embedding'"),
        ("lancedb", "&id_field=doc_id", "no id column 'doc_id'"),
        ("parquet", "?text_field=content", r"no text column 'content' \(columns: id, text"),
        ("parquet", "?vector_field=emb", "no vector column 'emb'"),
        ("qdrant", "&text_field=page_content", "no payload field 'page_content' .*doc_id, text"),
        ("chroma", "&text_field=body", "no metadata key 'body' .*position"),
        ("faiss", "&id_field=doc_id", "has no id field 'doc_id'"),
        ("jsonl", "?text_field=body", "line 1 has no text field 'body'"),
    ],
)
def test_a_missing_field_is_named_with_the_fields_there_are(kind, options, message, tmp_path):
    uri = write(kind, tmp_path, IDS, TEXTS, VECTORS) + options
    with pytest.raises(SourceError, match=message) as info:
        with open_source(uri) as source:
            list(source.batches())
    assert "\n" not in str(info.value)


def test_a_missing_field_in_a_later_line_names_the_line(tmp_path):
    lines = [json.dumps({"id": i, "text": t}) for i, t in zip(IDS, TEXTS, strict=True)]
    lines[9] = json.dumps({"id": "p09", "body": "moved"})
    lines[12] = "{not json"
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="line 10 has no text field 'text' .*body, id"):
        list(open_source(f"jsonl:{tmp_path / 'c.jsonl'}").batches())
    lines[9] = json.dumps({"id": "p09", "text": "fixed"})
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="line 13 is not JSON"):
        list(open_source(f"jsonl:{tmp_path / 'c.jsonl'}").batches())


def empty_stores(tmp_path):
    """One empty collection per kind, written by its own library."""
    import chromadb
    import faiss
    import lancedb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from qdrant_client import QdrantClient, models

    schema = pa.schema(
        [("id", pa.string()), ("text", pa.string()), ("vector", pa.list_(pa.float32(), DIM))]
    )
    lancedb.connect(tmp_path / "lance").create_table("docs", schema=schema)
    chromadb.PersistentClient(path=str(tmp_path / "chroma")).create_collection("docs")
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    client.create_collection("docs", vectors_config=params)
    client.close()
    faiss.write_index(faiss.IndexFlatIP(DIM), str(tmp_path / "i.faiss"))
    (tmp_path / "d.jsonl").write_text("")
    pq.write_table(schema.empty_table(), tmp_path / "c.parquet")
    return [
        f"lancedb:{tmp_path / 'lance'}?table=docs",
        f"chroma:{tmp_path / 'chroma'}?collection=docs",
        f"qdrant:{tmp_path / 'qdrant'}?collection=docs",
        f"faiss:{tmp_path / 'i.faiss'}?docs={tmp_path / 'd.jsonl'}",
        f"parquet:{tmp_path / 'c.parquet'}",
        f"jsonl:{tmp_path / 'd.jsonl'}",
    ]


def test_an_empty_collection_says_so(tmp_path):
    for uri in empty_stores(tmp_path):
        with pytest.raises(SourceError, match="holds no (passages|vectors)") as info:
            with open_source(uri) as source:
                assert source.count() == 0
                list(source.batches())
        assert str(info.value).startswith(f"index {uri}:")


def test_mixed_dimensions_name_the_first_odd_passage(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ragged = [v.tolist() for v in VECTORS]
    ragged[15] = ragged[15][:4]
    write_docs_jsonl(tmp_path / "c.jsonl", IDS, TEXTS, vector=ragged)
    column = pa.array(ragged, pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": IDS, "text": TEXTS, "vector": column}), tmp_path / "c.parquet")
    write_lancedb(tmp_path, IDS, TEXTS, None, emb=column)
    for uri in (
        f"jsonl:{tmp_path / 'c.jsonl'}",
        f"parquet:{tmp_path / 'c.parquet'}",
        f"lancedb:{tmp_path / 'lance'}?table=docs&vector_field=emb",
    ):
        message = "mixed vector dimensions: passage 'p15' .*row 15.* 4 numbers.* 6"
        with pytest.raises(SourceError, match=message):
            list(open_source(uri).batches(7))


def test_nan_vectors_are_refused(tmp_path):
    import faiss
    import pyarrow as pa

    bad = VECTORS.copy()
    bad[8, 2] = np.nan
    write_docs_jsonl(tmp_path / "c.jsonl", IDS, TEXTS, vector=bad.tolist())
    write("parquet", tmp_path / "pq", IDS, TEXTS, bad)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(bad.ravel()), DIM)
    write_lancedb(tmp_path, IDS, TEXTS, None, emb=emb)  # LanceDB refuses NaN in "vector" only
    index = faiss.IndexFlatIP(DIM)
    index.add(bad)
    faiss.write_index(index, str(tmp_path / "i.faiss"))
    write_docs_jsonl(tmp_path / "d.jsonl", IDS, TEXTS)
    for uri in (
        f"jsonl:{tmp_path / 'c.jsonl'}",
        f"parquet:{tmp_path / 'pq' / 'chunks.parquet'}",
        f"lancedb:{tmp_path / 'lance'}?table=docs&vector_field=emb",
        f"faiss:{tmp_path / 'i.faiss'}?docs={tmp_path / 'd.jsonl'}",
    ):
        with pytest.raises(SourceError, match="passage 'p08' .*NaN or infinite"):
            list(open_source(uri).batches())


def test_duplicate_and_missing_ids_and_texts_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = list(IDS)
    ids[20] = "p03"
    write_docs_jsonl(tmp_path / "c.jsonl", ids, TEXTS)
    with pytest.raises(SourceError, match="id 'p03' is used by two passages"):
        list(open_source(f"jsonl:{tmp_path / 'c.jsonl'}").batches(7))
    ids[20] = None
    pq.write_table(pa.table({"id": ids, "text": TEXTS}), tmp_path / "c.parquet")
    with pytest.raises(SourceError, match="passage 20 has no id in field 'id'"):
        list(open_source(f"parquet:{tmp_path / 'c.parquet'}").batches())
    texts = list(TEXTS)
    texts[2] = None
    write_lancedb(tmp_path, IDS, texts, VECTORS)
    with pytest.raises(SourceError, match="passage 'p02' .* has no text in field 'text'"):
        list(open_source(f"lancedb:{tmp_path / 'lance'}?table=docs").batches())


def test_a_vector_field_that_holds_no_numbers_is_refused(tmp_path):
    write_lancedb(tmp_path, IDS, TEXTS, VECTORS)
    with pytest.raises(SourceError, match="column 'text' is string, not a list of numbers"):
        open_source(f"lancedb:{tmp_path / 'lance'}?table=docs&vector_field=text")


def test_faiss_problems_are_named(tmp_path):
    import faiss

    write_docs_jsonl(tmp_path / "d.jsonl", IDS, TEXTS)
    docs = f"docs={tmp_path / 'd.jsonl'}"
    hashed = faiss.IndexIVFSpectralHash(faiss.IndexFlatL2(DIM), DIM, 2, 8, 1.0)
    hashed.train(np.tile(VECTORS, (8, 1)))
    hashed.add(VECTORS)
    faiss.write_index(hashed, str(tmp_path / "hash.faiss"))
    flat = faiss.IndexFlatIP(DIM)
    flat.add(VECTORS[:10])
    faiss.write_index(flat, str(tmp_path / "short.faiss"))
    (tmp_path / "junk.faiss").write_text("not an index")
    cases = {
        f"faiss:{tmp_path / 'hash.faiss'}?{docs}": r"\(IndexIVFSpectralHash\) cannot give back",
        f"faiss:{tmp_path / 'short.faiss'}?{docs}": "has 23 passages but the index holds 10",
        f"faiss:{tmp_path / 'junk.faiss'}?{docs}": "is not a FAISS index file",
        f"faiss:{tmp_path / 'short.faiss'}?docs={tmp_path}/no.jsonl": "no passages file at",
        f"faiss:{tmp_path / 'short.faiss'}?{docs}&vector_field=v": "vector_field= out",
    }
    for uri, message in cases.items():
        with pytest.raises(SourceError, match=message):
            open_source(uri)


def test_options_that_do_not_apply_are_refused(tmp_path):
    uri = write("chroma", tmp_path, IDS, TEXTS, VECTORS)
    with pytest.raises(SourceError, match="vector_field= does not apply"):
        open_source(uri + "&vector_field=emb")
    with pytest.raises(SourceError, match="apply to stores and files"):
        open_source([("a", "b")], text_field="body")
    with pytest.raises(SourceError, match="cannot read passages from a int"):
        open_source(42)


def test_a_missing_library_names_its_extra():
    with pytest.raises(SourceError, match=r"pip install 'queryfit\[nostore\]'"):
        require("queryfit_no_such_store_library", "nostore")


def test_parse_uri_reads_bare_chunk_files_and_options():
    assert parse_uri("chunks.parquet") == ("parquet", "chunks.parquet", {})
    assert parse_uri("LanceDB:./db?table=t&text_field=body") == (
        "lancedb",
        "./db",
        {"table": "t", "text_field": "body"},
    )


def test_a_vector_that_is_not_a_list_is_named(tmp_path):
    rows = [v.tolist() for v in VECTORS]
    rows[5] = "0.1 0.2"
    write_docs_jsonl(tmp_path / "c.jsonl", IDS, TEXTS, vector=rows)
    with pytest.raises(SourceError, match="passage 'p05' .* has a str in field 'vector'"):
        list(open_source(f"jsonl:{tmp_path / 'c.jsonl'}").batches())


def test_store_libraries_load_only_when_their_store_is_opened(tmp_path):
    import subprocess
    import sys

    write_docs_jsonl(tmp_path / "c.jsonl", IDS, TEXTS)
    code = (
        "import sys, queryfit.api, queryfit.sources as s\n"
        f"list(s.open_source('jsonl:{tmp_path / 'c.jsonl'}').batches())\n"
        "print(sorted(m for m in ('lancedb', 'chromadb', 'qdrant_client', 'faiss', 'pyarrow')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
