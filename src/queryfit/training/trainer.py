"""Fit a query-side adapter on frozen passage vectors.

The recipe: start from the identity, train on the training queries while scoring a held-out dev
split after every epoch, keep the epoch count that scored best, then refit on every pair for that
many epochs. On dev it also picks a blend ``alpha * adapted + (1 - alpha) * query`` (shrinking the
learned change toward the base model; it folds into the adapter's own arrays). If nothing beats
the identity on dev, ship the identity and say so: an adapter that makes retrieval worse on dev is
never the result.
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
from ..evaluation import evaluate_retrieval
from ..vectors import RetrievalVectors
from .config import TrainConfig
from .losses import corpus_softmax_loss, in_batch_loss
from .modules import build_module
from .negatives import mine_hard_negatives, near_duplicate_mask


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
    blend: float = 1.0
    blend_scores: dict[float, float] = field(default_factory=dict)


ProgressFn = Callable[[EpochRecord], None]

# Fewest dev queries for the uncovered-dev "longest" epoch rule (200 pairs at a 0.2 dev share).
MIN_UNCOVERED_DEV = 40


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
    dev_covered: bool | None = None,
) -> FitResult:
    """Train an adapter on ``train``, choosing epochs on ``dev`` and refitting on ``refit_on``.

    Args:
        train: vectors of the training queries and the passages they search.
        config: settings; defaults are the measured best general choice.
        dev: held-out queries for choosing the epoch count and for the ship/no-ship gate.
        refit_on: all pairs (train + dev) for the final fit; ``None`` keeps the dev-chosen model.
        on_epoch: called after each epoch with its record (for progress bars and reports).
        dev_covered: ``False`` says dev questions are about passages no training question covers
            (see :mod:`queryfit.training.splits`); such a dev cannot see what longer training
            gains on covered passages, so ``config.uncovered_dev="longest"`` then keeps the
            latest epoch (and largest blend) that still beats the base on dev instead of the
            best one, when dev holds at least ``MIN_UNCOVERED_DEV`` queries.
    """
    config = config or TrainConfig()
    config.validate()
    if not any(train.relevant):
        raise TrainingError("no training query has a relevant passage; check the dataset")
    start = time.perf_counter()
    dim = train.dim

    if config.adapter == "procrustes":
        return _fit_procrustes(train, config, dev, refit_on, start)

    epochs = config.epochs if config.epochs is not None else config.max_epochs
    if dev is None:
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

    patience = None if config.epochs is not None else config.patience
    # The "longest" rule trusts dev only to say "not worse than the base": that needs a dev of a
    # reasonable size, else (tiny data) the usual best-epoch rule applies.
    longest = (
        dev_covered is False
        and config.uncovered_dev == "longest"
        and config.epochs is None
        and len(dev.queries) >= MIN_UNCOVERED_DEV
    )
    module, history = _train(
        train, config, epochs, dev=dev, on_epoch=on_epoch, patience=patience, longest=longest
    )
    scored = [r for r in history if r.dev_score is not None]
    identity_score = scored[0].dev_score
    best = max(scored, key=lambda r: (r.dev_score, -r.epoch))
    if longest:
        above = [r for r in scored if r.epoch > 0 and r.dev_score > identity_score]
        best = above[-1] if above else scored[0]
    metric = config.select_metric
    alpha, blend_scores = 1.0, {1.0: best.dev_score}
    if config.blend and best.epoch > 0:
        alpha, blend_scores = _choose_blend(
            module, dev, config, above=identity_score if longest else None
        )
    best_score = blend_scores[alpha]

    if best.epoch == 0 or best_score - identity_score <= config.min_improvement:
        decision = (
            f"no epoch beat the base model on dev {metric} ({identity_score:.4f}); "
            "shipping the identity adapter (retrieval unchanged)"
        )
        return FitResult(
            Adapter.identity(dim),
            history,
            0,
            identity_score,
            best_score,
            True,
            time.perf_counter() - start,
            decision,
            config,
            1.0,
            blend_scores,
        )

    decision = f"dev {metric} {identity_score:.4f} -> {best_score:.4f} at epoch {best.epoch}"
    if alpha < 1.0:
        decision += f" with blend {alpha:g}"
    # Without a refit, ``module`` is already in its best-epoch state (``_train`` restores it).
    if refit_on is not None and config.refit:
        module, _ = _train(refit_on, config, best.epoch, dev=None)
        decision += f"; refit on all {len(refit_on.queries)} queries for {best.epoch} epochs"
    return FitResult(
        _to_adapter(module, config, dim, alpha),
        history,
        best.epoch,
        identity_score,
        best_score,
        False,
        time.perf_counter() - start,
        decision,
        config,
        alpha,
        blend_scores,
    )


def _train(
    data: RetrievalVectors,
    config: TrainConfig,
    epochs: int,
    *,
    dev: RetrievalVectors | None,
    on_epoch: ProgressFn | None = None,
    patience: int | None = None,
    longest: bool = False,
) -> tuple[torch.nn.Module, list[EpochRecord]]:
    """Run up to ``epochs`` epochs from the identity; score dev after each (epoch 0 = identity).

    Keeps the best dev state; with ``longest``, the latest state that beats the identity on dev
    (patience then counts epochs at or below the identity).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    module = build_module(
        config.adapter, data.dim, bias=config.bias, hidden_dim=config.hidden_dim, rank=config.rank
    )
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    queries, docs, positives, first_positive = _tensors(data)
    dev_tensors = _tensors(dev) if dev is not None else None
    # Near-duplicates of each query's positives are never its negatives (None if there are none).
    duplicates = near_duplicate_mask(data.docs, data.relevant, config.duplicate_threshold)
    ignore = torch.from_numpy(duplicates) if duplicates.any() else None
    hard_idx = hard_valid = None
    if config.loss == "in_batch" and config.hard_negatives > 0:
        mined = mine_hard_negatives(
            data.queries,
            data.docs,
            data.relevant,
            config.hard_negatives,
            near_duplicates=duplicates,
        )
        hard_valid = torch.from_numpy(mined >= 0)
        hard_idx = torch.from_numpy(np.maximum(mined, 0))
    history: list[EpochRecord] = []
    best_score, best_state, stale = -np.inf, None, 0

    def record(epoch: int, train_loss: float | None) -> bool:
        """Score dev, keep the best state; return True when patience has run out."""
        nonlocal best_score, best_state, stale
        dev_loss, dev_score = (
            _score(module, dev, dev_tensors, config) if dev is not None else (None, None)
        )
        rec = EpochRecord(epoch, train_loss, dev_loss, dev_score)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if dev_score is None:
            return False
        # "longest" keeps the latest state above the identity (epoch 0), else the best one.
        bar = history[0].dev_score if longest and epoch > 0 else best_score
        if dev_score > bar:
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
                skip = ignore[batch] if ignore is not None else None
                loss = corpus_softmax_loss(q, docs, positives[batch], config.scale, skip)
            else:
                pos = first_positive[batch]
                shared = positives[batch][:, pos] & ~torch.eye(len(batch), dtype=torch.bool)
                if ignore is not None:
                    shared = shared | ignore[batch][:, pos]
                mask = shared if config.mask_shared_positives else None
                hard = docs[hard_idx[batch]] if hard_idx is not None else None
                valid = hard_valid[batch] if hard_valid is not None else None
                loss = in_batch_loss(q, docs[pos], mask, config.scale, hard, valid)
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
    module: torch.nn.Module,
    dev: RetrievalVectors,
    dev_tensors: tuple[torch.Tensor, ...],
    config: TrainConfig,
) -> tuple[float, float]:
    """Dev loss (corpus softmax) and dev ranking metric for the current weights.

    ``dev_tensors`` is ``_tensors(dev)``, built once per training run rather than per epoch.
    """
    queries, docs, positives, _ = dev_tensors
    adapted = module(queries)
    q = torch.nn.functional.normalize(adapted, dim=-1)
    loss = corpus_softmax_loss(q, docs, positives, config.scale).item()
    return loss, _dev_metric(adapted.numpy(), dev, config.select_metric)


def _dev_metric(adapted: np.ndarray, dev: RetrievalVectors, metric: str) -> float:
    result = evaluate_retrieval(adapted, dev.docs, dev.relevant, metrics=[metric])
    return float(result.summary()[metric])


@torch.no_grad()
def _choose_blend(
    module: torch.nn.Module,
    dev: RetrievalVectors,
    config: TrainConfig,
    above: float | None = None,
) -> tuple[float, dict[float, float]]:
    """Dev score of ``q + alpha (f(q) - q)`` for each alpha; the best (ties: the smallest).

    With ``above`` (an uncovered dev, see ``fit_adapter``), the largest alpha scoring above it.
    """
    base = np.ascontiguousarray(dev.queries, dtype=np.float32)
    change = module(torch.from_numpy(base)).numpy() - base
    scores = {
        float(a): _dev_metric(base + a * change, dev, config.select_metric)
        for a in sorted(set(config.blend_grid) | {1.0})
    }
    best = max(scores, key=lambda a: (scores[a], -a))
    if above is not None:
        best = max((a for a in scores if scores[a] > above), default=best)
    return best, scores


def blend_params(kind: str, params: dict[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    """Arrays of ``q + alpha (f(q) - q)`` for a family that starts as the identity."""
    if alpha == 1.0:
        return params
    out = dict(params)
    if kind in ("linear", "procrustes"):
        dim = params["weight"].shape[0]
        out["weight"] = alpha * params["weight"] + (1 - alpha) * np.eye(dim, dtype=np.float32)
        if "bias" in params:
            out["bias"] = alpha * params["bias"]
    elif kind == "low_rank":
        out["up"] = alpha * params["up"]
    elif kind == "residual_mlp":
        out["out_weight"] = alpha * params["out_weight"]
        out["out_bias"] = alpha * params["out_bias"]
    else:
        raise TrainingError(f"cannot blend adapter type {kind!r}")
    return out


def _to_adapter(
    module: torch.nn.Module, config: TrainConfig, dim: int, alpha: float = 1.0
) -> Adapter:
    params = {
        name: value.detach().cpu().numpy().copy() for name, value in module.named_parameters()
    }
    return Adapter(kind=config.adapter, params=blend_params(config.adapter, params, alpha), dim=dim)


def procrustes_weight(data: RetrievalVectors) -> np.ndarray:
    """The rotation ``R`` minimising ``sum ||R q_i - d_i||`` over (query, positive) pairs.

    Closed form (orthogonal Procrustes): ``R = U Vᵀ`` from the SVD of ``Σ d_i q_iᵀ`` on unit
    vectors; graded and multiple positives are weighted by grade.
    """
    q = data.queries / np.maximum(np.linalg.norm(data.queries, axis=1, keepdims=True), 1e-12)
    d = data.docs / np.maximum(np.linalg.norm(data.docs, axis=1, keepdims=True), 1e-12)
    cross = np.zeros((data.dim, data.dim), dtype=np.float64)
    for i, rel in enumerate(data.relevant):
        for p, g in rel.items():
            if g > 0:
                cross += g * np.outer(d[p], q[i])
    u, _, vt = np.linalg.svd(cross)
    return (u @ vt).astype(np.float32)


def _fit_procrustes(
    train: RetrievalVectors,
    config: TrainConfig,
    dev: RetrievalVectors | None,
    refit_on: RetrievalVectors | None,
    start: float,
) -> FitResult:
    """Closed-form rotation blended toward the identity; alpha and the gate chosen on dev."""
    weight = procrustes_weight(train)
    if dev is None:
        params = blend_params("linear", {"weight": weight}, max(config.blend_grid))
        adapter = Adapter(kind="linear", params=params, dim=train.dim)
        return FitResult(
            adapter,
            [],
            0,
            None,
            None,
            False,
            time.perf_counter() - start,
            "procrustes rotation (no dev split to blend or gate with)",
            config,
        )
    base = np.ascontiguousarray(dev.queries, dtype=np.float32)
    metric = config.select_metric
    identity = _dev_metric(base, dev, metric)
    scores = {
        float(a): _dev_metric(base + a * (base @ weight.T - base), dev, metric)
        for a in sorted(set(config.blend_grid))
    }
    alpha = max(scores, key=lambda a: (scores[a], -a))
    if scores[alpha] - identity <= config.min_improvement:
        return FitResult(
            Adapter.identity(train.dim),
            [],
            0,
            identity,
            scores[alpha],
            True,
            time.perf_counter() - start,
            f"procrustes did not beat the base model on dev {metric} ({identity:.4f}); "
            "shipping the identity adapter (retrieval unchanged)",
            config,
            1.0,
            scores,
        )
    if refit_on is not None and config.refit:
        weight = procrustes_weight(refit_on)
    params = blend_params("linear", {"weight": weight}, alpha)
    return FitResult(
        Adapter(kind="linear", params=params, dim=train.dim),
        [],
        0,
        identity,
        scores[alpha],
        False,
        time.perf_counter() - start,
        f"dev {metric} {identity:.4f} -> {scores[alpha]:.4f} with procrustes blend {alpha:g}",
        config,
        alpha,
        scores,
    )
