"""A zero-dependency pair generator: the inverse cloze task.

A sentence taken out of a passage stands in for a question about it, and the passage is kept
*without* that sentence, so the pair cannot be matched by copying words. It needs no model and no
network, which makes it right for tests and the offline demo; questions written by an LLM are
better training data for real use.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from ..dataset import QADataset, _content_id

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences on terminal punctuation followed by a capital letter."""
    flat = " ".join(text.split())
    return [s.strip() for s in _SENTENCE_END.split(flat) if s.strip()]


def inverse_cloze_dataset(
    passages: Mapping[str, str] | list[str],
    *,
    questions_per_passage: int = 2,
    min_words: int = 6,
    max_words: int = 40,
    seed: int = 0,
) -> QADataset:
    """Pseudo-questions from passages: each is a sentence removed from its passage.

    Passages with fewer than ``questions_per_passage + 2`` usable sentences are kept as
    distractors in the corpus but get no question.
    """
    if not isinstance(passages, Mapping):
        passages = {_content_id("d-", text): text for text in passages}
    rng = random.Random(seed)
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for doc_id, text in passages.items():
        sentences = split_sentences(text)
        usable = [i for i, s in enumerate(sentences) if min_words <= len(s.split()) <= max_words]
        if len(sentences) < questions_per_passage + 2 or len(usable) < questions_per_passage:
            corpus[doc_id] = text
            continue
        chosen = set(rng.sample(usable, questions_per_passage))
        corpus[doc_id] = " ".join(s for i, s in enumerate(sentences) if i not in chosen)
        for i in sorted(chosen):
            qid = _content_id("q-", doc_id + sentences[i])
            if qid not in queries:
                queries[qid] = sentences[i]
                relevant[qid] = [doc_id]
    return QADataset(queries=queries, corpus=corpus, relevant_docs=relevant)
