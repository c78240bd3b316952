"""Quality filters for generated questions, each counting what it removed.

Applied in this order, cheapest first; a question removed by one is not seen by the next:

``too_short`` / ``too_long``
    fewer than ``min_words`` or more than ``max_words`` words.
``mentions_passage``
    refers to "the passage", "the text", "the context"...: a real user never sees it.
``leakage``
    copies a run of at least ``max_copied_words`` consecutive words from its own passage, or a
    run covering more than ``max_copied_fraction`` of the question (when that run is 5 words or
    more). Such a question is matched by word overlap alone, or quotes the answer: it teaches the
    adapter nothing about what users ask.
``duplicate``
    the same words as a question kept before, ignoring case and punctuation.
``near_duplicate``
    for the same passage, word-set Jaccard similarity of at least ``near_duplicate_threshold``
    with a kept question; across passages, the same set of content words (stop words removed,
    a plural "s" dropped) as a kept question of another passage (an ambiguous label).
``inconsistent`` (optional, needs an embedding model)
    the base model does not rank the question's own passage within the top ``consistency_k``
    of the whole corpus (round-trip consistency, as in Promptagator). It removes questions that
    are vague or unanswerable from their passage, and also some hard but valid ones: use it with
    noisy generators, skip it with a strong LLM.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FILTER_NAMES = (
    "too_short",
    "too_long",
    "mentions_passage",
    "leakage",
    "duplicate",
    "near_duplicate",
    "inconsistent",
)

_WORD = re.compile(r"\w+", re.U)
_META = re.compile(
    r"\b(?:the|this|that|given|above|provided|following) "
    r"(?:context|passage|text|document|excerpt|paragraph|article|section)\b",
    re.I,
)
STOP_WORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    do does did what which who whom whose when where why how this that these those it its there
    their they them can could should would will shall may might must has have had not no than
    then so such into onto about over under between through during any all each some more most
    other i you he she we me my your our his her""".split()
)


@dataclass
class FilterConfig:
    """Thresholds of the quality filters; ``consistency_k=None`` turns that filter off."""

    min_words: int = 3
    max_words: int = 40
    max_copied_words: int = 10
    max_copied_fraction: float = 0.8
    near_duplicate_threshold: float = 0.8
    drop_passage_mentions: bool = True
    consistency_k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FilterResult:
    """How many questions came in, how many each filter removed, how many were kept."""

    generated: int = 0
    kept: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTER_NAMES, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few removed, per filter

    def drop(self, name: str, question: str) -> None:
        self.removed[name] = self.removed.get(name, 0) + 1
        shown = self.examples.setdefault(name, [])
        if len(shown) < 3:
            shown.append(question)

    def to_dict(self) -> dict[str, Any]:
        return {"generated": self.generated, "kept": self.kept, "removed": dict(self.removed)}

    def summary(self) -> str:
        """``120 generated, 104 kept; removed: leakage 9, duplicate 4, too_short 3``."""
        parts = [f"{name} {n}" for name, n in self.removed.items() if n]
        tail = f"; removed: {', '.join(parts)}" if parts else "; none removed"
        return f"{self.generated} generated, {self.kept} kept{tail}"


def words(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits), punctuation dropped."""
    return _WORD.findall(text.lower())


def longest_copied_run(question: Sequence[str], passage: Sequence[str]) -> int:
    """Length of the longest run of consecutive words the question shares with the passage."""
    if not question or not passage:
        return 0
    positions: dict[str, list[int]] = {}
    for j, w in enumerate(passage):
        positions.setdefault(w, []).append(j)
    best = 0
    for i in range(len(question)):
        if len(question) - i <= best:
            break
        for j in positions.get(question[i], ()):
            k = 1
            while (
                i + k < len(question) and j + k < len(passage) and question[i + k] == passage[j + k]
            ):
                k += 1
            best = max(best, k)
    return best


def _content_signature(tokens: Sequence[str]) -> frozenset[str]:
    return frozenset(
        (t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t)
        for t in tokens
        if t not in STOP_WORDS
    )


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def apply_text_filters(
    items: Sequence[tuple[str, str, str]],
    config: FilterConfig,
    result: FilterResult,
) -> list[tuple[str, str]]:
    """Filter ``(passage_id, passage_text, question)`` triples; returns kept (pid, question).

    Order is preserved, so the first of two duplicates is the one kept.
    """
    kept: list[tuple[str, str]] = []
    seen_exact: set[str] = set()
    signatures: dict[frozenset[str], str] = {}  # content words -> passage id of the kept one
    kept_sets: dict[str, list[set[str]]] = {}  # passage id -> word sets of its kept questions
    passage_tokens: dict[str, list[str]] = {}
    for pid, passage, question in items:
        result.generated += 1
        tokens = words(question)
        if len(tokens) < config.min_words:
            result.drop("too_short", question)
            continue
        if len(tokens) > config.max_words:
            result.drop("too_long", question)
            continue
        if config.drop_passage_mentions and _META.search(question):
            result.drop("mentions_passage", question)
            continue
        ptoks = passage_tokens.get(pid)
        if ptoks is None:
            ptoks = passage_tokens[pid] = words(passage)
        run = longest_copied_run(tokens, ptoks)
        if run >= config.max_copied_words or (
            run >= 5 and run / len(tokens) > config.max_copied_fraction
        ):
            result.drop("leakage", question)
            continue
        exact = " ".join(tokens)
        if exact in seen_exact:
            result.drop("duplicate", question)
            continue
        word_set = set(tokens)
        signature = _content_signature(tokens)
        same_passage = kept_sets.setdefault(pid, [])
        if any(
            jaccard(word_set, other) >= config.near_duplicate_threshold for other in same_passage
        ):
            result.drop("near_duplicate", question)
            continue
        owner = signatures.get(signature) if signature else None
        if owner is not None and owner != pid:
            result.drop("near_duplicate", question)
            continue
        seen_exact.add(exact)
        same_passage.append(word_set)
        if signature:
            signatures.setdefault(signature, pid)
        kept.append((pid, question))
    result.kept = len(kept)
    return kept


def consistency_mask(
    question_vectors: Any,
    passage_vectors: Any,
    own_rows: Sequence[int],
    k: int,
) -> list[bool]:
    """True where a question's own passage ranks within the top ``k`` of all passages (cosine)."""
    from queryfit.evaluation.retrieval import ranks_of_relevant

    ranks = ranks_of_relevant(question_vectors, passage_vectors, [[r] for r in own_rows])
    return [int(r[0]) <= k for r in ranks]
