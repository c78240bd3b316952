"""Arrow batches and columns to the sources' batches, shared by LanceDB and Parquet.

A fixed-size list column becomes a ``[n, dim]`` view of its values without a Python object per
vector; a variable-size list column does too when every row has the same length. Anything else
(nulls, ragged rows) is handed back as Python lists, so the source's checks can name the row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from queryfit.sources.base import RawBatch


def is_vector_type(arrow_type: Any) -> bool:
    """A (fixed-size or variable) list of integers or floating-point numbers."""
    import pyarrow as pa

    if not (
        pa.types.is_fixed_size_list(arrow_type)
        or pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
    ):
        return False
    value = arrow_type.value_type
    return pa.types.is_floating(value) or pa.types.is_integer(value)


def fixed_width(arrow_type: Any) -> int | None:
    """The list size of a fixed-size list type, else None (it has to be read from the data)."""
    import pyarrow as pa

    return int(arrow_type.list_size) if pa.types.is_fixed_size_list(arrow_type) else None


def column_matrix(column: Any) -> Any:
    """``[n, width]`` float32 for a list column of equal-length rows, else a list of rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0 or column.null_count:
        return column.to_pylist()
    if pa.types.is_fixed_size_list(column.type):
        width = int(column.type.list_size)
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        width = int(lengths[0])
        if (lengths != width).any():
            return column.to_pylist()
    values = column.flatten()
    if values.null_count:
        return column.to_pylist()
    flat = values.to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(n, width)


def raw_batches(
    batches: Any, fields: Any, extra: list[str], *, vectors: bool, metadata: bool
) -> Any:
    """Arrow record batches as the sources' ``RawBatch`` (id, text, vectors, metadata columns)."""
    for batch in batches:
        meta = None
        if metadata:
            meta = batch.select(extra).to_pylist() if extra else [{} for _ in range(batch.num_rows)]
        yield RawBatch(
            ids=batch.column(fields.id).to_pylist(),
            texts=batch.column(fields.text).to_pylist(),
            vectors=column_matrix(batch.column(fields.vector)) if vectors else None,
            metadata=meta,
        )
