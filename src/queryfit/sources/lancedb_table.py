"""A LanceDB table (embedded, on disk): ``lancedb:PATH?table=NAME``.

Read with a column projection as a stream of Arrow record batches, so only the id, text and
vector columns leave the disk and the vectors land in numpy without a Python list per row.
Defaults follow LanceDB's own conventions (``id``, ``text``, ``vector``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from queryfit.sources.arrow import fixed_width, is_vector_type, raw_batches
from queryfit.sources.base import Fields, Hit, PassageSource, RawBatch, require


def _table_names(db: object) -> list[str]:
    listed = db.list_tables() if hasattr(db, "list_tables") else db.table_names()  # type: ignore[attr-defined]
    names = getattr(listed, "tables", listed)  # lancedb >= 0.30 answers with a response object
    return [str(n) for n in names]


class LanceDBSource(PassageSource):
    scheme = "lancedb"

    def __init__(self, uri: str, path: str, table: str, fields: Fields) -> None:
        super().__init__(uri)
        lancedb = require("lancedb", "lancedb")
        if not Path(path).is_dir():
            raise self.fail(
                f"no LanceDB database at {path}", "pass the folder lancedb.connect() opened"
            )
        self.db = lancedb.connect(path)
        names = _table_names(self.db)
        if table not in names:
            listing = ", ".join(sorted(names)) or "none"
            raise self.fail(f"no table {table!r} in {path} (tables: {listing})", "pass ?table=NAME")
        self.table = self.db.open_table(table)
        schema = self.table.schema
        self.fields = Fields(
            id=fields.id or "id", text=fields.text or "text", vector=fields.vector or "vector"
        )
        for role, name in (("id", self.fields.id), ("text", self.fields.text)):
            if name not in schema.names:
                raise self._missing(role, name, schema.names)
        if self.fields.vector not in schema.names:
            raise self._missing("vector", self.fields.vector, schema.names)
        self._vector_type = schema.field(self.fields.vector).type
        if not is_vector_type(self._vector_type):
            raise self.fail(
                f"column {self.fields.vector!r} is {self._vector_type}, not a list of numbers",
                "pass vector_field= naming the column of embeddings",
            )

    def _missing(self, role: str, name: str | None, columns: list[str]) -> Exception:
        candidates = [c for c in columns if c != name]
        return self.fail(
            f"table has no {role} column {name!r} (columns: {', '.join(columns)})",
            f"pass {role}_field= naming one of {', '.join(candidates) or 'its columns'}",
        )

    def count(self) -> int:
        return int(self.table.count_rows())

    def _dim(self) -> int | None:
        width = fixed_width(self._vector_type)
        if width is not None:
            return width
        first = self.table.search().select([self.fields.vector]).limit(1).to_arrow()
        if first.num_rows == 0 or first.column(0)[0].as_py() is None:
            raise self.fail("it holds no vectors", "point --index at a table with passages in it")
        return len(first.column(0)[0].as_py())

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        core = [self.fields.id, self.fields.text] + ([self.fields.vector] if vectors else [])
        extra = [c for c in self.table.schema.names if c not in core and c != self.fields.vector]
        columns = core + (extra if metadata else [])
        yield from raw_batches(
            self.table.search().select(columns).to_batches(batch_size),
            self.fields,
            extra,
            vectors=vectors,
            metadata=metadata,
        )

    def native_search(self, vector: np.ndarray, k: int) -> tuple[list[Hit], str]:
        found = (
            self.table.search(vector.astype(np.float32), vector_column_name=self.fields.vector)
            .distance_type("cosine")
            .select([self.fields.id, self.fields.text])
            .limit(k)
            .to_arrow()
        )
        ids = found.column(self.fields.id).to_pylist()
        texts = found.column(self.fields.text).to_pylist()
        distances = found.column("_distance").to_pylist()
        hits = [
            Hit(str(i), t or "", float(d)) for i, t, d in zip(ids, texts, distances, strict=True)
        ]
        return hits, "cosine distance"
