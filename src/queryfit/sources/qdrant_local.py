"""A Qdrant collection in local mode: ``qdrant:PATH?collection=NAME``, ``QdrantClient(path=...)``.

Points are read with ``scroll`` (ordered by point id). The passage id is the point id unless
``id_field=`` names a payload key (LangChain and LlamaIndex keep their own ids in the payload);
the text is the payload's ``text`` unless ``text_field=`` says otherwise (LangChain writes
``page_content``). Named vectors are chosen with ``vector_field=``. Qdrant normalises vectors of a
cosine collection when it stores them; cosine scores, and so training, are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.sources.base import Fields, Hit, PassageSource, RawBatch, require


class QdrantSource(PassageSource):
    scheme = "qdrant"

    def __init__(self, uri: str, path: str, collection: str, fields: Fields) -> None:
        super().__init__(uri)
        qdrant_client = require("qdrant_client", "qdrant")
        if not Path(path).is_dir():  # QdrantClient(path=...) would create an empty one
            raise self.fail(
                f"no Qdrant local storage at {path}", "pass the folder QdrantClient(path=...) used"
            )
        try:
            self.client = qdrant_client.QdrantClient(path=str(path))
        except RuntimeError as exc:  # the folder is locked by another client
            raise self.fail(str(exc).splitlines()[0], "close the other client first") from exc
        self.name = collection
        try:
            self._setup(collection, fields)
        except BaseException:
            self.close()
            raise

    def _setup(self, collection: str, fields: Fields) -> None:
        names = [c.name for c in self.client.get_collections().collections]
        if collection not in names:
            listing = ", ".join(sorted(names)) or "none"
            raise self.fail(
                f"no collection {collection!r} in the storage (collections: {listing})",
                "pass ?collection=NAME",
            )
        params = self.client.get_collection(collection).config.params.vectors
        self._using: str | None = None
        if isinstance(params, dict):
            named = sorted(params)
            if fields.vector is not None:
                if fields.vector not in params:
                    raise self.fail(
                        f"no named vector {fields.vector!r} (names: {', '.join(named)})",
                        "pass vector_field= naming one of them",
                    )
                self._using = fields.vector
            elif len(named) == 1:
                self._using = named[0]
            else:
                raise self.fail(
                    f"its points carry several named vectors ({', '.join(named)})",
                    "pass vector_field= naming the one to read",
                )
            self._params = params[self._using]
        else:
            if fields.vector:
                raise self.fail(
                    f"its points have one unnamed vector, not {fields.vector!r}",
                    "leave vector_field= out",
                )
            self._params = params
        self._id_key = fields.id
        self._text_key = fields.text or "text"
        self.fields = Fields(
            id=fields.id or "point id", text=self._text_key, vector=self._using or "vector"
        )

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None

    def count(self) -> int:
        return int(self.client.count(self.name, exact=True).count)

    def _dim(self) -> int | None:
        return int(self._params.size)

    def _payload_value(self, point: Any, key: str, role: str) -> Any:
        payload = point.payload or {}
        if key not in payload:
            raise self.fail(
                f"point {point.id} has no payload field {key!r} "
                f"(fields: {', '.join(sorted(payload)) or 'none'})",
                f"pass {role}_field= naming the payload field that holds the {role}",
            )
        return payload[key]

    def _vector(self, point: Any) -> Any:
        value = point.vector
        if isinstance(value, dict):
            value = value.get(self._using) if self._using else None
        return value

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        offset = None
        with_vectors: Any = ([self._using] if self._using else True) if vectors else False
        while True:
            points, offset = self.client.scroll(
                self.name,
                limit=batch_size,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            if points:
                yield self._raw(points, vectors, metadata)
            if offset is None or not points:
                break

    def _raw(self, points: list[Any], vectors: bool, metadata: bool) -> RawBatch:
        ids = [self._payload_value(p, self._id_key, "id") if self._id_key else p.id for p in points]
        texts = [self._payload_value(p, self._text_key, "text") for p in points]
        meta = None
        if metadata:
            drop = {self._text_key, self._id_key}
            meta = [{k: v for k, v in (p.payload or {}).items() if k not in drop} for p in points]
        return RawBatch(
            ids=ids,
            texts=texts,
            vectors=[self._vector(p) for p in points] if vectors else None,
            metadata=meta,
        )

    def native_search(self, vector: np.ndarray, k: int) -> tuple[list[Hit], str]:
        found = self.client.query_points(
            self.name,
            query=vector.astype(np.float32).tolist(),
            using=self._using,
            limit=k,
            with_payload=True,
        )
        raw = self._raw(found.points, vectors=False, metadata=False)
        hits = [
            Hit(str(i), t if isinstance(t, str) else "", float(p.score))
            for i, t, p in zip(raw.ids, raw.texts, found.points, strict=True)
        ]
        distance = str(getattr(self._params.distance, "value", self._params.distance)).lower()
        return hits, "euclidean distance" if distance.startswith("euclid") else f"{distance} score"
