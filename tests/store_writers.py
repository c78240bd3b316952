"""Small real collections for the source tests: each store written with its own library, the way
a user's application would have written it, and the ``--index`` URI that reads it back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KINDS = ("lancedb", "chroma", "qdrant", "faiss", "parquet", "jsonl")
SEARCHABLE = ("lancedb", "chroma", "qdrant", "faiss")


def write_lancedb(path: Path, ids, texts, vectors, *, column: str = "vector", **extra) -> str:
    import lancedb
    import pyarrow as pa

    data = {"id": list(ids), "text": list(texts), "position": list(range(len(ids)))}
    if vectors is not None:
        vectors = np.asarray(vectors, dtype=np.float32)
        data[column] = pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.ravel()), vectors.shape[1]
        )
    data.update(extra)
    lancedb.connect(path / "lance").create_table("docs", data=pa.table(data))
    return f"lancedb:{path / 'lance'}?table=docs"


def write_chroma(path: Path, ids, texts, vectors) -> str:
    import chromadb

    client = chromadb.PersistentClient(path=str(path / "chroma"))
    collection = client.create_collection("docs", metadata={"hnsw:space": "cosine"})
    collection.add(
        ids=list(ids),
        documents=list(texts),
        embeddings=np.asarray(vectors, dtype=np.float32),
        metadatas=[{"position": i} for i in range(len(ids))],
    )
    return f"chroma:{path / 'chroma'}?collection=docs"


def write_qdrant(path: Path, ids, texts, vectors) -> str:
    from qdrant_client import QdrantClient, models

    vectors = np.asarray(vectors, dtype=np.float32)
    client = QdrantClient(path=str(path / "qdrant"))
    client.create_collection(
        "docs",
        vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE),
    )
    client.upsert(
        "docs",
        points=[
            models.PointStruct(id=i, vector=v.tolist(), payload={"text": t, "doc_id": d})
            for i, (d, t, v) in enumerate(zip(ids, texts, vectors, strict=True))
        ],
    )
    client.close()  # local mode locks the folder while a client is open
    return f"qdrant:{path / 'qdrant'}?collection=docs&id_field=doc_id"


def write_docs_jsonl(file: Path, ids, texts, vectors=None, **fields) -> None:
    with file.open("w", encoding="utf-8") as fh:
        for i, (d, t) in enumerate(zip(ids, texts, strict=True)):
            row = {"id": d, "text": t, "position": i}
            if vectors is not None:
                row["vector"] = np.asarray(vectors[i], dtype=np.float32).tolist()
            row.update({k: v[i] for k, v in fields.items()})
            fh.write(json.dumps(row) + "\n")


def write_faiss(path: Path, ids, texts, vectors) -> str:
    import faiss

    vectors = np.asarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, str(path / "index.faiss"))
    write_docs_jsonl(path / "docs.jsonl", ids, texts)
    return f"faiss:{path / 'index.faiss'}?docs={path / 'docs.jsonl'}"


def write_parquet(path: Path, ids, texts, vectors) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = {"id": list(ids), "text": list(texts), "position": list(range(len(ids)))}
    if vectors is not None:
        vectors = np.asarray(vectors, dtype=np.float32)
        data["vector"] = pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.ravel()), vectors.shape[1]
        )
    pq.write_table(pa.table(data), path / "chunks.parquet", row_group_size=16)
    return f"parquet:{path / 'chunks.parquet'}"


def write_jsonl(path: Path, ids, texts, vectors) -> str:
    write_docs_jsonl(path / "chunks.jsonl", ids, texts, vectors)
    return f"jsonl:{path / 'chunks.jsonl'}"


WRITERS = {
    "lancedb": write_lancedb,
    "chroma": write_chroma,
    "qdrant": write_qdrant,
    "faiss": write_faiss,
    "parquet": write_parquet,
    "jsonl": write_jsonl,
}


def write(kind: str, path: Path, ids: Sequence[str], texts: Sequence[str], vectors) -> str:
    """Write the passages into a fresh ``kind`` store under ``path``; returns its URI."""
    path.mkdir(parents=True, exist_ok=True)
    return WRITERS[kind](path, ids, texts, vectors)
