"""Did the adapter learn the training passages, or something that carries over to new ones?

An adapter trained on questions about some passages usually helps most on new questions about
*those* passages. To show that, training records a fingerprint of every passage a training pair
points to (:func:`covered_fingerprints`, stored as ``data.covered_passages`` in ``adapter.json``)
and evaluation splits the test queries into *covered* (every relevant passage was in a training
pair) and *uncovered* ones, each with its own paired-bootstrap comparison.

Fingerprints are the first 16 hex digits of the sha256 of the passage text: enough to tell
passages apart, and no document text ends up in ``adapter.json``. They are taken from the text,
not the id, so a test file that names the same passages differently still matches. Above
:data:`MAX_COVERED_PASSAGES` covered passages nothing is recorded (``adapter.json`` would grow by
about 19 bytes per passage) and evaluation shows no breakdown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from queryfit.evaluation.compare import Difference, compare

if TYPE_CHECKING:  # pragma: no cover
    from queryfit.adapters.record import DataFacts
    from queryfit.data import QADataset

#: Above this many covered passages training records no fingerprints (keeps adapter.json small).
MAX_COVERED_PASSAGES = 200_000
FINGERPRINT_HEX_DIGITS = 16
#: A group needs this many queries for a paired bootstrap interval.
MIN_GROUP_QUERIES = 2


def passage_fingerprint(text: str) -> str:
    """A short, one-way id for a passage's text: the same text gives the same id in any dataset."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def covered_fingerprints(dataset: QADataset) -> list[str] | None:
    """Sorted, unique fingerprints of the passages some query of ``dataset`` is relevant to.

    ``None`` when there are more than :data:`MAX_COVERED_PASSAGES` of them: too many to store.
    """
    doc_ids = {d for q in dataset.queries for d in dataset.relevant_docs.get(q, ())}
    if len(doc_ids) > MAX_COVERED_PASSAGES:
        return None
    return sorted({passage_fingerprint(dataset.corpus[d]) for d in doc_ids})


def query_fingerprints(dataset: QADataset) -> list[str] | None:
    """Sorted fingerprints of the dataset's question texts (to tell training questions from new
    ones at evaluation); ``None`` above :data:`MAX_COVERED_PASSAGES` questions."""
    if len(dataset.queries) > MAX_COVERED_PASSAGES:
        return None
    return sorted({passage_fingerprint(text) for text in dataset.queries.values()})


def training_overlap(data: DataFacts | None, dataset: QADataset) -> int | None:
    """How many of ``dataset``'s questions the adapter was trained on (``None``: not recorded).

    An evaluation on those measures memory, not retrieval of new questions.
    """
    if data is None:
        return None
    if data.fingerprint is not None and data.fingerprint == dataset.fingerprint():
        return len(dataset.queries)
    if data.query_fingerprints is None:
        return None
    known = set(data.query_fingerprints)
    return sum(passage_fingerprint(text) in known for text in dataset.queries.values())


def covered_mask(dataset: QADataset, fingerprints: Collection[str]) -> np.ndarray:
    """Per query (in ``dataset.queries`` order): are all its relevant passages fingerprinted?"""
    known = set(fingerprints)
    relevant = [dataset.relevant_docs.get(q, ()) for q in dataset.queries]
    # Hash each passage once, however many queries point to it.
    seen = {d: passage_fingerprint(dataset.corpus[d]) in known for docs in relevant for d in docs}
    return np.array([all(seen[d] for d in docs) for docs in relevant], dtype=bool)


@dataclass
class CoverageGroup:
    """Base vs adapted on one group of test queries (``name`` is ``covered`` or ``uncovered``)."""

    name: str
    queries: int
    differences: list[Difference]

    def difference(self, metric: str) -> Difference:
        return next(d for d in self.differences if d.metric == metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queries": self.queries,
            "base": {d.metric: d.base for d in self.differences},
            "adapted": {d.metric: d.adapted for d in self.differences},
            "differences": [d.__dict__ | {"significant": d.significant} for d in self.differences],
        }


@dataclass
class CoverageBreakdown:
    """Test queries split by whether training saw their passages; ``groups`` empty if one side is.

    ``note`` is one line for humans either way.
    """

    covered: int
    uncovered: int
    groups: list[CoverageGroup]
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "covered_queries": self.covered,
            "uncovered_queries": self.uncovered,
            "groups": [g.to_dict() for g in self.groups],
            "note": self.note,
        }


def _note(covered: int, uncovered: int) -> str:
    """The one line that says what the split found (and why there is no table, if there is not)."""
    total = covered + uncovered
    if uncovered == 0:
        return f"all {total} test queries are about passages the training pairs covered"
    if covered == 0:
        return f"none of the {total} test queries is about a passage the training pairs covered"
    few = min(covered, uncovered) < MIN_GROUP_QUERIES
    return (
        f"{covered} of {total} test queries are about passages the training pairs covered, "
        f"{uncovered} are not" + ("; too few in one group to compare" if few else "")
    )


def _subset(per_query: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {metric: np.asarray(values)[rows] for metric, values in per_query.items()}


def coverage_breakdown(
    base: Mapping[str, np.ndarray],
    adapted: Mapping[str, np.ndarray],
    covered: np.ndarray,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> CoverageBreakdown:
    """Compare base and adapted separately on covered and uncovered queries.

    ``base`` / ``adapted`` are the per-query metric arrays the whole evaluation already computed
    (no search is repeated); ``covered`` is the boolean mask from :func:`covered_mask`.
    """
    covered = np.asarray(covered, dtype=bool)
    n_covered, n_uncovered = int(covered.sum()), int((~covered).sum())
    groups: list[CoverageGroup] = []
    if min(n_covered, n_uncovered) >= MIN_GROUP_QUERIES:
        for name, rows in (("covered", covered), ("uncovered", ~covered)):
            diffs = compare(
                _subset(base, rows), _subset(adapted, rows), n_resamples=n_resamples, seed=seed
            )
            groups.append(CoverageGroup(name, int(rows.sum()), diffs))
    return CoverageBreakdown(n_covered, n_uncovered, groups, _note(n_covered, n_uncovered))


def split_by_coverage(
    data: DataFacts | None,
    dataset: QADataset,
    base: Mapping[str, np.ndarray],
    adapted: Mapping[str, np.ndarray],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> CoverageBreakdown | None:
    """The covered / uncovered breakdown of an evaluation, or ``None`` when the adapter's
    training data facts (``adapter.data``) hold no fingerprints (older adapters, imported ones,
    or training on too many passages)."""
    if data is None or data.covered_passages is None:
        return None
    mask = covered_mask(dataset, data.covered_passages)
    return coverage_breakdown(base, adapted, mask, n_resamples=n_resamples, seed=seed)
