"""Ranking losses over frozen passage vectors.

Both take already L2-normalised adapted queries ``q`` [B, d] and compare them with passages by
cosine similarity times ``scale`` (the inverse temperature).
"""

from __future__ import annotations

import math

import torch


def corpus_softmax_loss(
    q: torch.Tensor,
    docs: torch.Tensor,
    positives: torch.Tensor,
    scale: float,
    ignore: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    grades: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the relevant passages against the *whole* corpus.

    Because passages are frozen, every passage in the corpus is a negative for every query, not
    just the few that happen to share a batch. With several relevant passages the loss is
    ``logsumexp(all) - logsumexp(relevant)``: the probability mass put on any relevant passage,
    so one relevant passage is never pushed down as a negative of another (with ``grades``,
    each relevant passage's share is weighted by its grade).

    Args:
        q: adapted, normalised queries [B, d].
        docs: normalised passage vectors [N, d].
        positives: boolean mask [B, N], True where a passage is relevant to the query.
        scale: multiplier on cosine similarities (20 is a common choice).
        ignore: optional boolean mask [B, N] of passages left out of the softmax (near-duplicates
            of a relevant passage: likely unlabelled positives, so not negatives either).
        label_smoothing: share of the target spread evenly over the passages in the softmax
            (as in ``torch.nn.functional.cross_entropy``); it stops the map from pushing one
            passage's score without bound.
        grades: optional relevance grades [B, N]: the target mass on the relevant passages is
            then shared in proportion to grade (a passage graded 2 counts twice one graded 1).
    """
    logits = scale * (q @ docs.T)
    if ignore is not None:
        logits = logits.masked_fill(ignore & ~positives, float("-inf"))
    positive_logits = logits if grades is None else logits + grades.clamp_min(1e-12).log()
    positive_logits = positive_logits.masked_fill(~positives, float("-inf"))
    log_norm = torch.logsumexp(logits, dim=1)
    loss = log_norm - torch.logsumexp(positive_logits, dim=1)
    if label_smoothing:
        finite = torch.isfinite(logits)
        uniform = log_norm - logits.masked_fill(~finite, 0.0).sum(1) / finite.sum(1)
        loss = (1 - label_smoothing) * loss + label_smoothing * uniform
    return loss.mean()


def in_batch_loss(
    q: torch.Tensor,
    batch_docs: torch.Tensor,
    shared: torch.Tensor | None,
    scale: float,
    hard_docs: torch.Tensor | None = None,
    hard_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiple-negatives ranking loss: each query against the positives of its batch.

    Row ``i`` of ``batch_docs`` is a positive of query ``i``. ``shared`` [B, B] marks pairs
    ``(i, j != i)`` where batch passage ``j`` is also relevant to query ``i``; those are masked out
    so two questions about the same passage never serve as each other's negatives. Use it when the
    corpus is too large for :func:`corpus_softmax_loss` on every step.

    ``hard_docs`` [B, K, d] adds K mined hard negatives per query (its own, not shared across the
    batch); ``hard_valid`` [B, K] marks real ones (mining pads with invalid rows).
    """
    logits = scale * (q @ batch_docs.T)
    if shared is not None:
        logits = logits.masked_fill(shared, float("-inf"))
    if hard_docs is not None:
        hard = scale * torch.einsum("bd,bkd->bk", q, hard_docs)
        if hard_valid is not None:
            hard = hard.masked_fill(~hard_valid, float("-inf"))
        logits = torch.cat([logits, hard], dim=1)
    target = torch.arange(len(q))
    return torch.nn.functional.cross_entropy(logits, target)


def sampled_softmax_loss(
    q: torch.Tensor,
    positive_docs: torch.Tensor,
    positive_valid: torch.Tensor,
    hard_docs: torch.Tensor,
    hard_valid: torch.Tensor,
    random_docs: torch.Tensor,
    random_valid: torch.Tensor,
    n_docs: int,
    scale: float,
    label_smoothing: float = 0.0,
    positive_log_grades: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`corpus_softmax_loss` estimated from a sample of the corpus, for corpora too large to
    score every passage on every step.

    The softmax's normaliser sums over the relevant passages and each query's mined hard negatives
    exactly (the passages that matter most, and that a uniform sample would almost never draw),
    plus ``S`` passages drawn uniformly with replacement from the whole corpus and shared by the
    batch. Each drawn passage stands for ``n_docs / S`` passages: the logQ correction adds
    ``log(n_docs / S)`` to its logit, which makes the sampled sum an unbiased estimate of the sum
    over the corpus. A drawn passage that is relevant to the query, one of its hard negatives
    (already counted) or a near-duplicate of a relevant passage is masked out for that query
    (``random_valid``), so it is never treated as a negative. With ``S = n_docs`` draws of every
    passage once, this is exactly the corpus softmax over the unmasked passages.

    Args:
        q: adapted, normalised queries [B, d].
        positive_docs: normalised relevant passages [B, P, d], padded; ``positive_valid`` [B, P].
        hard_docs: normalised mined hard negatives [B, H, d]; ``hard_valid`` [B, H].
        random_docs: normalised uniformly drawn passages [S, d]; ``random_valid`` [B, S].
        n_docs: passages in the corpus.
        scale: multiplier on cosine similarities.
        label_smoothing: as in :func:`corpus_softmax_loss`; the mean logit over the corpus it
            needs is estimated with the same weights.
        positive_log_grades: optional log relevance grades [B, P] (target mass by grade).
    """
    neg_inf = float("-inf")
    pos = scale * torch.einsum("bd,bpd->bp", q, positive_docs)
    hard = scale * torch.einsum("bd,bhd->bh", q, hard_docs)
    rand = scale * (q @ random_docs.T)
    log_weight = math.log(n_docs / random_docs.shape[0])
    logits = torch.cat(
        [
            pos.masked_fill(~positive_valid, neg_inf),
            hard.masked_fill(~hard_valid, neg_inf),
            (rand + log_weight).masked_fill(~random_valid, neg_inf),
        ],
        dim=1,
    )
    log_norm = torch.logsumexp(logits, dim=1)
    target = pos if positive_log_grades is None else pos + positive_log_grades
    loss = log_norm - torch.logsumexp(target.masked_fill(~positive_valid, neg_inf), dim=1)
    if label_smoothing:
        weights = torch.cat(
            [
                positive_valid.to(q.dtype),
                hard_valid.to(q.dtype),
                random_valid.to(q.dtype) * (n_docs / random_docs.shape[0]),
            ],
            dim=1,
        )
        values = torch.cat([pos, hard, rand], dim=1)
        mean = (weights * values).sum(1) / weights.sum(1)
        loss = (1 - label_smoothing) * loss + label_smoothing * (log_norm - mean)
    return loss.mean()
