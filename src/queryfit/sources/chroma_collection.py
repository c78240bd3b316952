"""A Chroma persistent collection: ``chroma:PATH?collection=NAME`` (no server).

Chroma keeps the passage text as the record's *document* and the vector as its *embedding*;
``text_field=`` names a metadata key instead when the text lives there. Pages are read with
``get(limit, offset)``, which returns them in the collection's insertion order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.sources.base import Fields, Hit, PassageSource, RawBatch, require


class ChromaSource(PassageSource):
    scheme = "chroma"

    def __init__(self, uri: str, path: str, collection: str, fields: Fields) -> None:
        super().__init__(uri)
        chromadb = require("chromadb", "chroma")
        if fields.vector:
            raise self.fail(
                "Chroma keeps one embedding per record, vector_field= does not apply",
                "leave it out",
            )
        if not Path(path).is_dir():
            raise self.fail(
                f"no Chroma database at {path}", "pass the folder chromadb.PersistentClient used"
            )
        self.client = chromadb.PersistentClient(path=str(path))
        names = [getattr(c, "name", c) for c in self.client.list_collections()]
        if collection not in names:
            listing = ", ".join(sorted(map(str, names))) or "none"
            raise self.fail(
                f"no collection {collection!r} in {path} (collections: {listing})",
                "pass ?collection=NAME",
            )
        self.collection = self.client.get_collection(collection)
        self.fields = Fields(id="id", text=fields.text or "document", vector="embedding")
        self._text_key = fields.text  # None: the record's document

    def count(self) -> int:
        return int(self.collection.count())

    def _dim(self) -> int | None:
        first = self.collection.get(limit=1, include=["embeddings"])
        embeddings = first.get("embeddings")
        if embeddings is None or len(embeddings) == 0:
            raise self.fail("it holds no vectors", "point --index at a collection with passages")
        return len(embeddings[0])

    def _texts_of(self, got: dict[str, Any]) -> list[Any]:
        if self._text_key is None:
            documents = got.get("documents")
            if documents is None or all(d is None for d in documents):
                raise self.fail(
                    "its records hold no documents (passage texts)",
                    "pass text_field= naming the metadata key that holds the text",
                )
            return list(documents)
        metadatas = got.get("metadatas") or [None] * len(got["ids"])
        texts = [(m or {}).get(self._text_key) for m in metadatas]
        if texts and texts[0] is None:
            keys = sorted((metadatas[0] or {}).keys())
            raise self.fail(
                f"record {got['ids'][0]!r} has no metadata key {self._text_key!r} "
                f"(keys: {', '.join(keys) or 'none'})",
                "pass text_field= naming the metadata key that holds the text, or leave it out "
                "to read the documents",
            )
        return texts

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        include = ["documents", "metadatas"] + (["embeddings"] if vectors else [])
        total = self.count()
        for offset in range(0, total, batch_size):
            got = self.collection.get(limit=batch_size, offset=offset, include=include)
            if not got["ids"]:
                break
            meta = None
            if metadata:
                meta = [dict(m or {}) for m in got.get("metadatas") or [None] * len(got["ids"])]
            yield RawBatch(
                ids=got["ids"],
                texts=self._texts_of(got),
                vectors=got.get("embeddings") if vectors else None,
                metadata=meta,
            )

    def native_search(self, vector: np.ndarray, k: int) -> tuple[list[Hit], str]:
        found = self.collection.query(
            query_embeddings=[vector.astype(np.float32).tolist()],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        ids, distances = found["ids"][0], found["distances"][0]
        texts = self._texts_of({k: v[0] for k, v in found.items() if isinstance(v, list) and v})
        hits = [
            Hit(str(i), t or "", float(d)) for i, t, d in zip(ids, texts, distances, strict=True)
        ]
        return hits, f"{self._space()} distance"

    def _space(self) -> str:
        configuration = getattr(self.collection, "configuration", None) or {}
        hnsw = configuration.get("hnsw") if isinstance(configuration, dict) else None
        space = (hnsw or {}).get("space") or (self.collection.metadata or {}).get("hnsw:space")
        return str(space or "l2")
