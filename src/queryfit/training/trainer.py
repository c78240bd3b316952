"""Fit a query-side adapter on frozen passage vectors.

The recipe: start from the identity, train on the training queries while scoring a held-out dev
split after every epoch, keep the epoch count that scored best, then refit on every pair for that
many epochs. If no epoch beats the identity on dev, ship the identity and say so: an adapter that
makes retrieval worse is never the result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..adapters import Adapter
from ..errors import TrainingError
from ..evaluate import evaluate_retrieval
from ..vectors import RetrievalVectors
from .config import TrainConfig
from .losses import corpus_softmax_loss, in_batch_loss
from .modules import build_module


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float | None
    dev_loss: float | None
    dev_score: float | None


@dataclass
class FitResult:
    """What training produced and why: the adapter, the per-epoch history, the decision."""

    adapter: Adapter
    history: list[EpochRecord]
    best_epoch: int
    identity_score: float | None
    best_score: float | None
    shipped_identity: bool
    seconds: float
    decision: str
    config: TrainConfig = field(default_factory=TrainConfig)


ProgressFn = Callable[[EpochRecord], None]


SMALL_PROBLEM = 20_000_000  # passage-matrix entries under which one CPU thread is fastest


def _threads_for_size(fit: Callable[..., FitResult]) -> Callable[..., FitResult]:
    """Run small problems on one torch thread: at these sizes the thread hand-off costs more
    than the matrix products, and on a busy machine two threads ran 6-10x slower (measured)."""

    @functools.wraps(fit)
    def wrapper(train: RetrievalVectors, *args: Any, **kwargs: Any) -> FitResult:
        previous = torch.get_num_threads()
        if train.docs.size < SMALL_PROBLEM:
            torch.set_num_threads(1)
        try:
            return fit(train, *args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper


@_threads_for_size
def fit_adapter(
    train: RetrievalVectors,
    config: TrainConfig | None = None,
    *,
    dev: RetrievalVectors | None = None,
    refit_on: RetrievalVectors | None = None,
    on_epoch: ProgressFn | None = None,
) -> FitResult:
    """Train an adapter on ``train``, choosing epochs on ``dev`` and refitting on ``refit_on``.

    Args:
        train: vectors of the training queries and the passages they search.
        config: settings; defaults are the measured best general choice.
        dev: held-out queries for choosing the epoch count and for the ship/no-ship gate.
        refit_on: all pairs (train + dev) for the final fit; ``None`` keeps the dev-chosen model.
        on_epoch: called after each epoch with its record (for progress bars and reports).
    """
    config = config or TrainConfig()
    config.validate()
    if not any(train.relevant):
        raise TrainingError("no training query has a relevant passage; check the dataset")
    start = time.perf_counter()
    dim = train.dim

    if dev is None:
        epochs = config.epochs if config.epochs is not None else config.max_epochs
        module, history = _train(train, config, epochs, dev=None, on_epoch=on_epoch)
        adapter = _to_adapter(module, config, dim)
        return FitResult(
            adapter,
            history,
            epochs,
            None,
            None,
            False,
            time.perf_counter() - start,
            f"trained {epochs} epochs (no dev split to choose or gate with)",
            config,
        )

    epochs = config.epochs if config.epochs is not None else config.max_epochs
    patience = None if config.epochs is not None else config.patience
    module, history = _train(train, config, epochs, dev=dev, on_epoch=on_epoch, patience=patience)
    scored = [r for r in history if r.dev_score is not None]
    identity_score = scored[0].dev_score
    best = max(scored, key=lambda r: (r.dev_score, -r.epoch))
    metric = config.select_metric

    if best.epoch == 0 or best.dev_score - identity_score <= config.min_improvement:
        decision = (
            f"no epoch beat the base model on dev {metric} ({identity_score:.4f}); "
            "shipping the identity adapter (retrieval unchanged)"
        )
        return FitResult(
            Adapter.identity(dim),
            history,
            0,
            identity_score,
            best.dev_score,
            True,
            time.perf_counter() - start,
            decision,
            config,
        )

    decision = f"dev {metric} {identity_score:.4f} -> {best.dev_score:.4f} at epoch {best.epoch}"
    if refit_on is not None and config.refit:
        module, _ = _train(refit_on, config, best.epoch, dev=None)
        decision += f"; refit on all {len(refit_on.queries)} queries for {best.epoch} epochs"
    elif best.epoch != history[-1].epoch:
        module, _ = _train(train, config, best.epoch, dev=None)
    return FitResult(
        _to_adapter(module, config, dim),
        history,
        best.epoch,
        identity_score,
        best.dev_score,
        False,
        time.perf_counter() - start,
        decision,
        config,
    )


def _train(
    data: RetrievalVectors,
    config: TrainConfig,
    epochs: int,
    *,
    dev: RetrievalVectors | None,
    on_epoch: ProgressFn | None = None,
    patience: int | None = None,
) -> tuple[torch.nn.Module, list[EpochRecord]]:
    """Run up to ``epochs`` epochs from the identity; score dev after each (epoch 0 = identity)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    module = build_module(
        config.adapter, data.dim, bias=config.bias, hidden_dim=config.hidden_dim, rank=config.rank
    )
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    queries, docs, positives, first_positive = _tensors(data)
    history: list[EpochRecord] = []
    best_score, best_state, stale = -np.inf, None, 0

    def record(epoch: int, train_loss: float | None) -> bool:
        """Score dev, keep the best state; return True when patience has run out."""
        nonlocal best_score, best_state, stale
        dev_loss, dev_score = _score(module, dev, config) if dev is not None else (None, None)
        rec = EpochRecord(epoch, train_loss, dev_loss, dev_score)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if dev_score is None:
            return False
        if dev_score > best_score:
            best_score, stale = dev_score, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
        return patience is not None and stale >= patience

    record(0, None)
    n = len(queries)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator) if config.shuffle else torch.arange(n)
        losses = []
        for batch in order.split(config.batch_size):
            q = torch.nn.functional.normalize(module(queries[batch]), dim=-1)
            if config.loss == "corpus":
                loss = corpus_softmax_loss(q, docs, positives[batch], config.scale)
            else:
                pos = first_positive[batch]
                shared = positives[batch][:, pos] & ~torch.eye(len(batch), dtype=torch.bool)
                mask = shared if config.mask_shared_positives else None
                loss = in_batch_loss(q, docs[pos], mask, config.scale)
            if config.identity_penalty:
                loss = loss + config.identity_penalty * module.identity_distance()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if record(epoch, float(np.mean(losses))):
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return module, history


def _tensors(data: RetrievalVectors) -> tuple[torch.Tensor, ...]:
    """Queries, normalised passages, a relevance mask, and one positive per query."""
    queries = torch.from_numpy(np.ascontiguousarray(data.queries, dtype=np.float32))
    docs = torch.nn.functional.normalize(
        torch.from_numpy(np.ascontiguousarray(data.docs, dtype=np.float32)), dim=-1
    )
    positives = torch.zeros(len(queries), len(docs), dtype=torch.bool)
    first = torch.zeros(len(queries), dtype=torch.long)
    for i, rel in enumerate(data.relevant):
        rows = [d for d, grade in rel.items() if grade > 0]
        if not rows:
            raise TrainingError(f"training query {i} has no relevant passage")
        positives[i, rows] = True
        first[i] = rows[0]
    return queries, docs, positives, first


@torch.no_grad()
def _score(
    module: torch.nn.Module, dev: RetrievalVectors, config: TrainConfig
) -> tuple[float, float]:
    """Dev loss (corpus softmax) and dev ranking metric for the current weights."""
    queries, docs, positives, _ = _tensors(dev)
    adapted = module(queries)
    q = torch.nn.functional.normalize(adapted, dim=-1)
    loss = corpus_softmax_loss(q, docs, positives, config.scale).item()
    result = evaluate_retrieval(
        adapted.numpy(), dev.docs, dev.relevant, metrics=[config.select_metric]
    )
    return loss, float(result.summary()[config.select_metric])


def _to_adapter(module: torch.nn.Module, config: TrainConfig, dim: int) -> Adapter:
    params = {
        name: value.detach().cpu().numpy().copy() for name, value in module.named_parameters()
    }
    return Adapter(kind=config.adapter, params=params, dim=dim)
