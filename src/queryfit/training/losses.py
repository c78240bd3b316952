"""Ranking losses over frozen passage vectors.

Both take already L2-normalised adapted queries ``q`` [B, d] and compare them with passages by
cosine similarity times ``scale`` (the inverse temperature).
"""

from __future__ import annotations

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
