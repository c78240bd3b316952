"""The whole loop offline, on text every Python install carries: the language reference topics
in the standard library's ``pydoc_data``.
"""

from __future__ import annotations

import re

from .dataset import QADataset


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


def demo_dataset(seed: int = 0, questions_per_passage: int = 4) -> QADataset:
    """Keyword pseudo-questions (the offline heuristic generator) over the pydoc passages.

    Keyword queries are how many people search, and the gap between them and prose passages is
    the kind of systematic shift a query adapter can learn; inverse-cloze sentences (one sentence
    lifted out of its passage) gave the adapter nothing to learn here, so the gate shipped the
    identity.
    """
    from .generate.generators import HeuristicGenerator
    from .generate.pipeline import question_id

    generator = HeuristicGenerator()
    passages = pydoc_passages()
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for passage_id, text in passages.items():
        for question in generator.generate(text, questions_per_passage, seed=seed):
            qid = question_id(passage_id, question)
            queries[qid] = question
            relevant[qid] = [passage_id]
    return QADataset(queries=queries, corpus=passages, relevant_docs=relevant)
