"""The leak-free split: dev (or test) questions that measure generalisation, not memorisation.

Exact and near-duplicate questions (token-set Jaccard after normalisation) always land on the
same side, and ``by="passage"`` also keeps every question of a passage together.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import defaultdict

from queryfit.data.model import QADataset
from queryfit.errors import DatasetError

__all__ = ["split_dataset"]


# --------------------------------------------------------------------------------------------
# Leak-free split
# --------------------------------------------------------------------------------------------


class _UnionFind:
    """Disjoint sets over 0..n-1; groups of queries that must stay on one side."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                ra, rb = rb, ra
            self.parent[ra] = rb


_NON_WORD = re.compile(r"[^\w\s]+")


def _normalise(text: str) -> str:
    """Casefolded, punctuation-free, whitespace-collapsed text: exact-duplicate key."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NON_WORD.sub(" ", text).replace("_", " ")
    return " ".join(text.split())


def _near_duplicate_pairs(
    token_sets: list[frozenset[str]], threshold: float
) -> list[tuple[int, int]]:
    """Pairs of sets with Jaccard >= threshold, found by prefix filtering (AllPairs).

    Tokens are ordered rarest first; two sets reaching the threshold must share a token among
    the first ``|x| - ceil(t*|x|) + 1`` of each, so only sets sharing a rare prefix token are
    compared. In practice this is near-linear for natural-language questions.
    """
    freq: dict[str, int] = defaultdict(int)
    for s in token_sets:
        for tok in s:
            freq[tok] += 1
    order = sorted(range(len(token_sets)), key=lambda i: len(token_sets[i]))
    index: dict[str, list[int]] = defaultdict(list)
    pairs: list[tuple[int, int]] = []
    eps = 1e-9
    for i in order:
        s = token_sets[i]
        n = len(s)
        if n == 0:
            continue
        toks = sorted(s, key=lambda t: (freq[t], t))
        prefix = n - math.ceil(threshold * n - eps) + 1
        min_size = threshold * n - eps  # sets seen earlier are no larger than s
        seen: set[int] = set()
        for tok in toks[:prefix]:
            bucket = index[tok]
            for j in bucket:
                if j in seen:
                    continue
                seen.add(j)
                other = token_sets[j]
                if len(other) < min_size:
                    continue
                inter = len(s & other)
                if inter >= threshold * (n + len(other) - inter) - eps:
                    pairs.append((j, i))
            bucket.append(i)
    return pairs


def _query_groups(ds: QADataset, by: str, threshold: float) -> list[list[str]]:
    """Groups of query ids that must land on the same side of the split."""
    qids = list(ds.queries)
    uf = _UnionFind(len(qids))
    # Exact duplicates after normalisation.
    first_by_norm: dict[str, int] = {}
    reps: list[int] = []
    norms: list[str] = []
    for i, qid in enumerate(qids):
        norm = _normalise(ds.queries[qid])
        j = first_by_norm.setdefault(norm, i)
        if j == i:
            reps.append(i)
            norms.append(norm)
        else:
            uf.union(i, j)
    # Near duplicates among distinct normalised texts.
    token_sets = [frozenset(n.split()) for n in norms]
    for a, b in _near_duplicate_pairs(token_sets, threshold):
        uf.union(reps[a], reps[b])
    # Queries sharing a relevant passage.
    if by == "passage":
        first_by_doc: dict[str, int] = {}
        for i, qid in enumerate(qids):
            for did in ds.relevant_docs.get(qid, []):
                uf.union(i, first_by_doc.setdefault(did, i))
    groups: dict[int, list[str]] = defaultdict(list)
    for i, qid in enumerate(qids):
        groups[uf.find(i)].append(qid)
    return list(groups.values())


def split_dataset(
    ds: QADataset,
    dev_fraction: float = 0.2,
    by: str = "query",
    seed: int = 0,
    near_duplicate_threshold: float = 0.9,
) -> tuple[QADataset, QADataset]:
    """Split into (train, dev) so that dev measures generalisation, not memorisation.

    ``by="query"``: dev holds new questions over the same corpus (both sides keep the full
    corpus). ``by="passage"``: dev holds the questions of passages training never sees; the
    train corpus excludes every dev-relevant passage and the dev corpus is exactly those. In
    both modes exact and near-duplicate questions (token-set Jaccard >= threshold after
    normalisation) stay together. Groups are indivisible, so dev is about
    ``round(dev_fraction * len(ds))`` queries. The result depends only on the content and seed.
    """
    if by not in ("query", "passage"):
        raise DatasetError(f"unknown split by={by!r}. Fix: use by='query' or by='passage'.")
    if not 0.0 < dev_fraction < 1.0:
        raise DatasetError(
            f"dev_fraction must be between 0 and 1 (exclusive), got {dev_fraction}. "
            "Fix: pass e.g. dev_fraction=0.2."
        )
    if not 0.0 < near_duplicate_threshold <= 1.0:
        raise DatasetError(
            f"near_duplicate_threshold must be in (0, 1], got {near_duplicate_threshold}. "
            "Fix: pass e.g. near_duplicate_threshold=0.9."
        )
    ds.validate()
    n = len(ds)
    target = max(1, round(dev_fraction * n))
    if n < 2 or target >= n:
        raise DatasetError(
            f"dataset too small to split: {n} quer{'y' if n == 1 else 'ies'} for dev_fraction "
            f"{dev_fraction}. Fix: add queries or lower dev_fraction."
        )
    groups = _query_groups(ds, by, near_duplicate_threshold)
    # Sort by content-based key so the split ignores dict order, then shuffle under the seed.
    groups.sort(key=lambda g: min(g))
    random.Random(seed).shuffle(groups)
    dev_ids: set[str] = set()
    count = 0
    for group in groups:
        if count >= target:
            break
        # Take a group only if it brings dev closer to the target; big clusters stay in train.
        if abs(count + len(group) - target) < abs(count - target):
            dev_ids.update(group)
            count += len(group)
    if count == 0 or count >= n:
        raise DatasetError(
            f"cannot split {n} queries leak-free: they form {len(groups)} inseparable group(s) "
            "of near-duplicate questions or shared passages. Fix: add more independent queries, "
            "raise near_duplicate_threshold, or split by='query'."
        )
    train_ids = [q for q in ds.queries if q not in dev_ids]
    dev_list = [q for q in ds.queries if q in dev_ids]
    if by == "query":
        return ds.subset(train_ids), ds.subset(dev_list)
    dev_docs = {d for q in dev_list for d in ds.relevant_docs[q]}
    train_corpus = [d for d in ds.corpus if d not in dev_docs]
    return ds.subset(train_ids, train_corpus), ds.subset(dev_list, dev_docs)
