"""What the stages show: one progress-bar style on stderr, and JSON that numpy values survive.

Kept free of heavy imports (rich loads only when a bar is drawn) so the CLI and the report can
both use it without pulling each other in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def progress_bar(*extra_columns: Any) -> Any:
    """A rich progress bar on stderr: description, bar, n/m, elapsed, remaining, then extras."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=Console(stderr=True),
    )


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy arrays and scalars, and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
