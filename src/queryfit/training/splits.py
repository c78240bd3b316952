"""Dev splits for choosing epochs and gating, aware of which passages training covers.

An adapter is mostly used for *new questions over passages that training questions already
cover* (the in-corpus case). A dev split should measure that case when the data allows it: hold
out only questions whose relevant passages keep at least one other question in training. With a
single question per passage no such question exists; then the split falls back to plain held-out
questions (their passages are not covered by training pairs), which is the conservative case and
stops training earlier. Numpy only, so the API can split without importing torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from queryfit.errors import TrainingError
from queryfit.vectors import RetrievalVectors

# Use the covered split when at least this share of the wanted dev size can be covered.
MIN_COVERED_SHARE = 0.5
# Up to this size the uncovered passages are copied into their own array (as always); above it,
# dev parts search the whole corpus with the covered passages excluded, so a million-passage
# corpus is never copied for dev scoring.
COPY_MAX_BYTES = 256 * 2**20


@dataclass
class ExcludingVectors(RetrievalVectors):
    """Vectors whose queries search every passage except the ``excluded`` ones (bool [n_docs]).

    How :func:`dev_parts` restricts a large corpus without copying it; ``relevant`` indexes the
    whole corpus and holds no excluded passage.
    """

    excluded: np.ndarray | None = None


@dataclass
class DevSplit:
    """Row indices of the training and dev queries and how dev was chosen."""

    train_rows: list[int]
    dev_rows: list[int]
    mode: str  # "covered": every dev passage keeps a training question; "query": plain held-out

    def describe(self) -> str:
        if self.mode == "covered":
            return (
                f"dev: {len(self.dev_rows)} held-out questions whose passages keep a training "
                "question (covered)"
            )
        return (
            f"dev: {len(self.dev_rows)} held-out questions; passages have one question each, so "
            "dev questions search the passages training does not cover"
        )


def coverage_split(
    relevant: Sequence[dict[int, float]],
    dev_fraction: float = 0.2,
    seed: int = 0,
    *,
    duplicate_of: Sequence[int] | None = None,
    max_dev: int | None = None,
) -> DevSplit:
    """Split query rows into train and dev, preferring a dev whose passages training covers.

    Args:
        relevant: per query row, its relevant passage rows (grade > 0 counts).
        dev_fraction: wanted share of dev queries.
        seed: shuffles the candidates; the split depends only on ``relevant`` and ``seed``.
        duplicate_of: optional group id per row (e.g. identical query vectors); rows of one group
            stay on the same side (a whole group is only moved to dev if every passage it touches
            keeps a training question).
        max_dev: at most this many dev queries (a bounded dev sample of large data; the other
            queries all train).
    """
    n = len(relevant)
    if not 0.0 < dev_fraction < 1.0:
        raise TrainingError(f"dev_fraction must be between 0 and 1, got {dev_fraction}")
    target = max(1, round(dev_fraction * n))
    if max_dev is not None:
        target = max(1, min(target, max_dev))
    if n < 2 or target >= n:
        raise TrainingError(f"{n} queries are too few to hold out a dev split")
    groups: dict[int, list[int]] = {}
    for row in range(n):
        key = duplicate_of[row] if duplicate_of is not None else row
        groups.setdefault(int(key), []).append(row)
    order = sorted(groups)
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]

    positives = [[d for d, g in rel.items() if g > 0] for rel in relevant]
    left = Counter(d for pos in positives for d in pos)  # training questions per passage
    dev: list[int] = []
    for key in order:
        if len(dev) >= target:
            break
        rows = groups[key]
        if len(dev) + len(rows) > target + max(1, target // 20):
            continue
        need = Counter(d for r in rows for d in positives[r])
        if need and all(left[d] - c >= 1 for d, c in need.items()):
            dev.extend(rows)
            left.subtract(need)
    if len(dev) >= MIN_COVERED_SHARE * target:
        mode = "covered"
    else:  # too few passages with two questions: plain held-out questions
        dev, mode = [], "query"
        for key in order:
            if len(dev) >= target:
                break
            dev.extend(groups[key])
    dev_set = set(dev)
    train = [r for r in range(n) if r not in dev_set]
    if not train:
        raise TrainingError("the dev split left no training queries; lower dev_fraction")
    return DevSplit(train_rows=train, dev_rows=sorted(dev_set), mode=mode)


def duplicate_groups(queries: np.ndarray) -> list[int]:
    """A group id per row: rows with byte-identical vectors (the same question) share one."""
    seen: dict[bytes, int] = {}
    arr = np.ascontiguousarray(queries, dtype=np.float32)
    return [seen.setdefault(arr[i].tobytes(), i) for i in range(len(arr))]


def coverage_of(train_relevant: Sequence[dict[int, float]], relevant: Sequence[dict[int, float]]):
    """Boolean per query of ``relevant``: are all its relevant passages among training positives?

    Passage rows must index the same corpus on both sides.
    """
    covered = {d for rel in train_relevant for d, g in rel.items() if g > 0}
    return np.array(
        [bool(rel) and all(d in covered for d, g in rel.items() if g > 0) for rel in relevant]
    )


def kfold_rows(vectors: RetrievalVectors, folds: int, seed: int = 0) -> list[list[int]]:
    """Dev rows of each of ``folds`` folds; repeated questions stay in one fold."""
    n = len(vectors.queries)
    if folds < 2 or folds > n:
        raise TrainingError(f"cannot make {folds} folds from {n} queries")
    groups: dict[int, list[int]] = {}
    for row, key in enumerate(duplicate_groups(vectors.queries)):
        groups.setdefault(key, []).append(row)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    out: list[list[int]] = [[] for _ in range(folds)]
    for i, k in enumerate(order):
        out[i % folds].extend(groups[keys[k]])
    return [sorted(rows) for rows in out]


def dev_parts(
    vectors: RetrievalVectors, dev_rows: Sequence[int], train_rows: Sequence[int]
) -> list[RetrievalVectors]:
    """Dev queries split by coverage, each part searching the passages that make it fair.

    Covered dev questions (every relevant passage has a training question) search the whole
    corpus: the in-corpus use. Uncovered ones search only the passages no training question
    covers: against the whole corpus they would be scored on a handicap the real use does not
    have (training pulls queries toward covered passages; where every passage is covered, as
    after generating questions for all of them, that pull is the point). Measured on Lyft's
    in-corpus splits (docs/benchmarks.md): without it, a dev of uncovered questions stops
    training after a few epochs and misses most of the gain.
    """
    covered = coverage_of([vectors.relevant[r] for r in train_rows], vectors.relevant)
    parts = []
    inside = [r for r in dev_rows if covered[r]]
    if inside:
        parts.append(vectors.select(inside))
    outside = [r for r in dev_rows if not covered[r]]
    if outside:
        kept = np.ones(len(vectors.docs), dtype=bool)
        kept[[d for r in train_rows for d, g in vectors.relevant[r].items() if g > 0]] = False
        n_kept = int(kept.sum())
        if n_kept * vectors.dim * 4 > COPY_MAX_BYTES:
            parts.append(
                ExcludingVectors(
                    queries=vectors.queries[outside],
                    docs=vectors.docs,
                    relevant=[
                        {d: g for d, g in vectors.relevant[r].items() if kept[d]} for r in outside
                    ],
                    excluded=~kept,
                )
            )
            return parts
        row_of = np.cumsum(kept) - 1
        parts.append(
            RetrievalVectors(
                queries=vectors.queries[outside],
                docs=vectors.docs[np.flatnonzero(kept)],
                relevant=[
                    {int(row_of[d]): g for d, g in vectors.relevant[r].items() if kept[d]}
                    for r in outside
                ],
            )
        )
    return parts
