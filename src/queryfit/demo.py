"""The whole loop offline, on text every Python install carries: the language reference topics
in the standard library's ``pydoc_data``.
"""

from __future__ import annotations

import re

from .dataset import QADataset
from .generate import inverse_cloze_dataset


def pydoc_passages(max_words: int = 180) -> dict[str, str]:
    """Python reference topics cut into paragraph-packed passages of at most ``max_words``."""
    from pydoc_data.topics import topics

    passages: dict[str, str] = {}
    for topic, text in sorted(topics.items()):
        paragraphs = [
            " ".join(p.split())
            for p in re.split(r"\n\s*\n", text)
            if len(p.split()) >= 8 and not p.startswith("   ")  # skip grammar and code blocks
        ]
        chunk: list[str] = []
        for paragraph in paragraphs:
            if chunk and len(" ".join(chunk).split()) + len(paragraph.split()) > max_words:
                passages[f"{topic}-{len(passages)}"] = " ".join(chunk)
                chunk = []
            chunk.append(paragraph)
        if chunk:
            passages[f"{topic}-{len(passages)}"] = " ".join(chunk)
    return passages


def demo_dataset(seed: int = 0) -> QADataset:
    """Pseudo-questions (inverse cloze) over the pydoc passages."""
    return inverse_cloze_dataset(pydoc_passages(), questions_per_passage=2, seed=seed)
