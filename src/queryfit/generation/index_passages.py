"""An index's own passages for question generation: its ids, its chunks, no re-chunking.

``queryfit generate --index URI`` asks for questions about the passages exactly as the index
serves them, so the pairs name the index's ids and training later finds their vectors there.
``sample`` picks a seeded random subset of a large collection without holding the rest: the
positions are drawn first, then one streaming read keeps only those passages.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np

from queryfit.console import progress_bar
from queryfit.errors import GenerationError
from queryfit.generation.documents import Passage
from queryfit.sources.uri import open_source


def index_passages(
    index: Any, *, sample: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[list[Passage], dict[str, Any]]:
    """Passages of ``index`` (all, or ``sample`` drawn at random) and what was read.

    Blank passages are skipped (no question can be asked about them); they stay in the index,
    so training still searches them.
    """
    if sample is not None and sample < 1:
        raise GenerationError(f"--sample must be at least 1, not {sample}")
    source = open_source(index)
    try:
        total = source.count()
        if total == 0:
            raise source.fail("it holds no passages", "point --index at a collection with passages")
        chosen: set[int] | None = None
        if sample is not None and sample < total:
            picks = np.random.default_rng(seed).choice(total, size=sample, replace=False)
            chosen = set(picks.tolist())
        passages: list[Passage] = []
        blank = 0
        bar = progress_bar() if progress else None
        with bar if bar is not None else nullcontext():
            task = bar.add_task(f"reading passages from {source.uri}", total=total) if bar else None
            for batch in source.batches(vectors=False):
                for j, (passage_id, text) in enumerate(zip(batch.ids, batch.texts, strict=True)):
                    position = batch.start + j
                    if chosen is not None and position not in chosen:
                        continue
                    if not text.strip():
                        blank += 1
                        continue
                    passages.append(Passage(passage_id, text, source.uri, chunk=position))
                if bar is not None:
                    bar.advance(task, len(batch))
        facts = {
            "index": source.uri,
            "passages_in_index": total,
            "sample": sample,
            "passages": len(passages),
            "blank_skipped": blank,
        }
        return passages, facts
    finally:
        if source is not index:
            source.close()
