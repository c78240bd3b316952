"""Chunk files: ``parquet:FILE`` and ``jsonl:FILE``, one passage per row or line.

Fields ``id`` and ``text`` are required, ``vector`` is optional: a file without it is text-only
and its vectors come from the model, through the embedding store. Naming ``vector_field=``
makes the vectors required. Parquet is read in row batches of the needed columns (pyarrow);
JSON Lines one line at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from queryfit.sources.arrow import fixed_width, is_vector_type, raw_batches
from queryfit.sources.base import Fields, PassageSource, RawBatch, require
from queryfit.sources.lines import count_lines, json_objects, line_field


class ParquetSource(PassageSource):
    scheme = "parquet"

    def __init__(self, uri: str, path: str, fields: Fields) -> None:
        super().__init__(uri)
        require("pyarrow", "parquet")
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.is_file():
            raise self.fail(f"no file at {self.path}", "pass parquet:FILE")
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise self.fail(
                f"{self.path} is not a Parquet file ({exc})", "pass parquet:FILE"
            ) from exc
        schema = self.file.schema_arrow
        names = schema.names
        self.fields = Fields(id=fields.id or "id", text=fields.text or "text", vector=fields.vector)
        for role, name in (("id", self.fields.id), ("text", self.fields.text)):
            if name not in names:
                raise self._missing(role, name, names)
        vector = fields.vector or ("vector" if "vector" in names else None)
        if fields.vector and fields.vector not in names:
            raise self._missing("vector", fields.vector, names)
        self._vector_type = schema.field(vector).type if vector else None
        if vector and not is_vector_type(self._vector_type):
            raise self.fail(
                f"column {vector!r} is {self._vector_type}, not a list of numbers",
                "pass vector_field= naming the column of embeddings",
            )
        self.fields = Fields(id=self.fields.id, text=self.fields.text, vector=vector)

    def _missing(self, role: str, name: str | None, columns: list[str]) -> Exception:
        return self.fail(
            f"no {role} column {name!r} (columns: {', '.join(columns)})",
            f"pass {role}_field= naming the column that holds the {role}",
        )

    def count(self) -> int:
        return int(self.file.metadata.num_rows)

    def _dim(self) -> int | None:
        if self.fields.vector is None:
            return None
        width = fixed_width(self._vector_type)
        if width is not None:
            return width
        for batch in self.file.iter_batches(batch_size=1, columns=[self.fields.vector]):
            first = batch.column(0)[0].as_py()
            if first is None:
                raise self.fail(
                    f"its first row has no vector in column {self.fields.vector!r}",
                    "give every row a vector, or leave the column out",
                )
            return len(first)
        raise self.fail("it holds no passages", "point --index at a file with passages in it")

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        core = [self.fields.id, self.fields.text]
        if vectors:
            core.append(self.fields.vector)
        extra = [
            c for c in self.file.schema_arrow.names if c not in core and c != self.fields.vector
        ]
        columns = core + (extra if metadata else [])
        yield from raw_batches(
            self.file.iter_batches(batch_size=batch_size, columns=columns),
            self.fields,
            extra,
            vectors=vectors,
            metadata=metadata,
        )


class JsonlSource(PassageSource):
    scheme = "jsonl"

    def __init__(self, uri: str, path: str, fields: Fields) -> None:
        super().__init__(uri)
        self.path = Path(path)
        if not self.path.is_file():
            raise self.fail(f"no file at {self.path}", "pass jsonl:FILE")
        self._explicit_vector = fields.vector is not None
        self.fields = Fields(
            id=fields.id or "id", text=fields.text or "text", vector=fields.vector or "vector"
        )
        self._count: int | None = None

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return json_objects(self.path, self.fail)

    def count(self) -> int:
        if self._count is None:
            self._count = count_lines(self.path)
        return self._count

    def _dim(self) -> int | None:
        for number, row in self._rows():
            self._field(number, row, self.fields.id, "id")
            self._field(number, row, self.fields.text, "text")
            if self.fields.vector not in row:
                if self._explicit_vector:
                    self._field(number, row, self.fields.vector, "vector")
                return None
            value = row[self.fields.vector]
            if not isinstance(value, list):
                raise self.fail(
                    f"line {number}: field {self.fields.vector!r} is not a list of numbers",
                    "pass vector_field= naming the field of embeddings",
                )
            return len(value)
        raise self.fail("it holds no passages", "point --index at a file with passages in it")

    def _field(self, number: int, row: dict[str, Any], key: str | None, role: str) -> Any:
        return line_field(self.fail, number, row, key, role)

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        ids: list[Any] = []
        texts: list[Any] = []
        vecs: list[Any] = []
        meta: list[dict[str, Any]] = []
        own = {self.fields.id, self.fields.text, self.fields.vector}

        def flush() -> RawBatch:
            raw = RawBatch(
                ids=list(ids),
                texts=list(texts),
                vectors=list(vecs) if vectors else None,
                metadata=list(meta) if metadata else None,
            )
            for part in (ids, texts, vecs, meta):
                part.clear()
            return raw

        for number, row in self._rows():
            ids.append(self._field(number, row, self.fields.id, "id"))
            texts.append(self._field(number, row, self.fields.text, "text"))
            if vectors:
                vecs.append(row.get(self.fields.vector))
            if metadata:
                meta.append({k: v for k, v in row.items() if k not in own})
            if len(ids) == batch_size:
                yield flush()
        if ids:
            yield flush()
