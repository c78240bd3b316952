"""Line-oriented files shared by the JSONL and FAISS sources: counting and reading objects."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def count_lines(path: Path) -> int:
    """Non-blank lines of a text file, read in binary blocks (no line objects)."""
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n


def json_objects(
    path: Path, fail: Callable[[str, str], Exception], where: str = ""
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is
    ``fail(problem, fix)`` naming it (``where`` says in which file, when that needs saying)."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise fail(
                    f"line {number}{where} is not JSON ({exc.args[0]})",
                    "write one JSON object per line",
                ) from exc
            if not isinstance(row, dict):
                raise fail(
                    f"line {number}{where} is not a JSON object",
                    'write one {"id": ..., "text": ...} object per line',
                )
            yield number, row


def line_field(
    fail: Callable[[str, str], Exception],
    number: int,
    row: dict[str, Any],
    key: Any,
    role: str,
    where: str = "",
) -> Any:
    """``row[key]`` of line ``number`` (an object from :func:`json_objects`), or ``fail`` naming
    the missing ``role`` field, the fields the line has, and the ``{role}_field=`` option."""
    if key not in row:
        raise fail(
            f"line {number}{where} has no {role} field {key!r} "
            f"(fields: {', '.join(sorted(row)) or 'none'})",
            f"pass {role}_field= naming the field that holds the {role}",
        )
    return row[key]
