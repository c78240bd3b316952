"""Fit a query-side adapter on frozen passage vectors.

The recipe: start from the identity, train while scoring held-out dev questions after every
epoch (one dev split, or k folds in lockstep with every question dev once), keep the epoch count
that scored best, then refit on every pair for that many epochs. Dev also picks a blend
``alpha * adapted + (1 - alpha) * query`` (shrinking the learned change toward the base model;
it folds into the adapter's own arrays). Unless the dev gain beats the noise, ship the identity
and say so: an adapter that makes retrieval worse on dev is never the result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from queryfit.adapters import Adapter
from queryfit.errors import TrainingError
from queryfit.evaluation import evaluate_retrieval
from queryfit.training.config import TrainConfig
from queryfit.training.losses import corpus_softmax_loss, in_batch_loss
from queryfit.training.modules import build_module
from queryfit.training.negatives import mine_hard_negatives, near_duplicate_mask
from queryfit.vectors import RetrievalVectors


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
DevParts = list[RetrievalVectors]  # dev queries, each part searching its own passages

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
    dev: RetrievalVectors | DevParts | None = None,
    refit_on: RetrievalVectors | None = None,
    on_epoch: ProgressFn | None = None,
) -> FitResult:
    """Train an adapter on ``train``, choosing epochs on ``dev`` and refitting on ``refit_on``.

    Args:
        train: vectors of the training queries and the passages they search.
        config: settings; defaults are the measured best general choice.
        dev: held-out queries for choosing the epoch count and for the ship/no-ship gate; a list
            of parts (see :func:`queryfit.training.splits.dev_parts`) is scored pooled.
        refit_on: all pairs (train + dev) for the final fit; ``None`` keeps the dev-chosen model.
        on_epoch: called after each epoch with its record (for progress bars and reports).
    """
    config = _checked(config, train)
    start = time.perf_counter()
    parts = [dev] if isinstance(dev, RetrievalVectors) else dev
    if config.adapter_type == "procrustes":
        return _fit_procrustes(train, config, parts, refit_on, start)
    if not parts:
        epochs = config.epochs if config.epochs is not None else config.max_epochs
        run, history = _train(train, config, epochs, on_epoch=on_epoch)
        return FitResult(
            _to_adapter(run.module, config, train.dim),
            history,
            epochs,
            None,
            None,
            False,
            time.perf_counter() - start,
            f"trained {epochs} epochs (no dev split to choose or gate with)",
            config,
        )
    return _fit_runs([_Run(train, config, parts)], config, refit_on, on_epoch, start)


@_threads_for_size
def fit_adapter_cv(
    vectors: RetrievalVectors,
    config: TrainConfig | None = None,
    *,
    folds: int | None = None,
    on_epoch: ProgressFn | None = None,
) -> FitResult:
    """Choose the epoch count, blend and gate by k-fold cross-validation, then refit.

    ``folds`` defaults to ``config.cv_folds``.

    Every query is scored once as dev, so the curve that picks the epoch averages over all of
    them instead of one small split (on the seed data a 20% split was too noisy to see gains
    that the averaged curve finds, docs/benchmarks.md). The folds train in lockstep, one epoch
    each, and stop together when the pooled dev score stops improving.
    """
    from queryfit.training.splits import dev_parts, kfold_rows

    config = _checked(config, vectors)
    folds = folds or config.cv_folds
    if config.adapter_type == "procrustes":
        raise TrainingError("procrustes is closed-form: use fit_adapter with a dev split")
    start = time.perf_counter()
    runs = []
    for dev_rows in kfold_rows(vectors, folds, config.seed):
        held = set(dev_rows)
        train_rows = [r for r in range(len(vectors.queries)) if r not in held]
        runs.append(
            _Run(vectors.select(train_rows), config, dev_parts(vectors, dev_rows, train_rows))
        )
    return _fit_runs(runs, config, vectors, on_epoch, start, f"{folds}-fold cross-validated dev")


def _checked(config: TrainConfig | None, train: RetrievalVectors) -> TrainConfig:
    config = config or TrainConfig()
    config.validate()
    if not any(train.relevant):
        raise TrainingError("no training query has a relevant passage; check the dataset")
    return config


def _fit_runs(
    runs: list[_Run],
    config: TrainConfig,
    refit_on: RetrievalVectors | None,
    on_epoch: ProgressFn | None,
    start: float,
    dev_name: str = "dev",
) -> FitResult:
    """Step the runs in lockstep, pick the epoch and blend on their pooled dev score, gate, refit.

    With one run this is the plain dev-split recipe; with several, cross-validation.
    ``dev_name`` says which in the decision.
    """
    dim = runs[0].queries.shape[1]
    epochs = config.epochs if config.epochs is not None else config.max_epochs
    patience = None if config.epochs is not None else config.patience
    history: list[EpochRecord] = []
    best, states, stale = None, None, 0
    for epoch in range(epochs + 1):
        losses = [run.epoch() for run in runs] if epoch > 0 else None
        dev_loss, per_query = _pooled([run.score() for run in runs])
        if epoch == 0:
            identity_per_query = per_query
        dev_score = float(per_query.mean())
        rec = EpochRecord(epoch, float(np.mean(losses)) if losses else None, dev_loss, dev_score)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if best is None or dev_score > best.dev_score:
            best, states, stale = rec, [run.state() for run in runs], 0
        else:
            stale += 1
        if patience is not None and stale >= patience:
            break
    for run, state in zip(runs, states, strict=True):
        run.module.load_state_dict(state)
    identity_score = history[0].dev_score
    metric = config.select_metric
    alphas = sorted(set(config.blend_grid) | {1.0}) if config.blend and best.epoch > 0 else [1.0]
    blended = {a: _pooled([run.score(a) for run in runs])[1] for a in alphas}
    blend_scores = {a: float(v.mean()) for a, v in blended.items()}
    alpha = max(blend_scores, key=lambda a: (blend_scores[a], -a))
    best_score = blend_scores[alpha]

    gain, noise = _paired_gain(blended[alpha], identity_per_query)
    if best.epoch == 0 or gain <= max(config.min_improvement, config.gate_z * noise):
        decision = (
            f"no epoch beat the base model on {dev_name} {metric} ({identity_score:.4f}) by "
            f"more than the noise ({config.gate_z:g} x standard error {noise:.4f}); "
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

    decision = f"{dev_name} {metric} {identity_score:.4f} -> {best_score:.4f} at epoch {best.epoch}"
    if alpha < 1.0:
        decision += f" with blend {alpha:g}"
    module = runs[0].module  # in its best-epoch state
    if refit_on is not None and config.refit:
        module = _train(refit_on, config, best.epoch)[0].module
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


def _pooled(scores: list[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    """Dev loss and per-query metric over several runs' dev queries (loss weighted by count)."""
    count = sum(len(per_query) for _, per_query in scores)
    loss = sum(loss * len(per_query) for loss, per_query in scores) / count
    return loss, np.concatenate([per_query for _, per_query in scores])


def _paired_gain(adapted: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Mean per-query gain over the base and its standard error (paired, same queries).

    The gate asks for a gain above the noise: the best of many epochs beats the base by a
    little by chance alone, even when labels carry nothing to learn (tests/).
    """
    diff = adapted - base
    noise = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return float(diff.mean()), noise


class _Run:
    """One model, its optimiser and its data: trains an epoch at a time and scores dev.

    Split out of the epoch loop so cross-validation can step several runs in lockstep.
    """

    def __init__(
        self, data: RetrievalVectors, config: TrainConfig, dev: DevParts | None = None
    ) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.module = build_module(
            config.adapter_type,
            data.dim,
            bias=config.bias,
            hidden_dim=config.hidden_dim,
            rank=config.rank,
        )
        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_class(
            self.module.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        tensors = _tensors(data)
        self.queries, self.docs, self.positives, self.first_positive, self.grades = tensors
        self.dev = [(part, _tensors(part)) for part in (dev or [])]
        # Near-duplicates of each query's positives are never its negatives (None if none).
        duplicates = near_duplicate_mask(data.docs, data.relevant, config.duplicate_threshold)
        self.ignore = torch.from_numpy(duplicates) if duplicates.any() else None
        self.hard_idx = self.hard_valid = None
        if config.loss == "in_batch" and config.hard_negatives > 0:
            mined = mine_hard_negatives(
                data.queries,
                data.docs,
                data.relevant,
                config.hard_negatives,
                near_duplicates=duplicates,
            )
            self.hard_valid = torch.from_numpy(mined >= 0)
            self.hard_idx = torch.from_numpy(np.maximum(mined, 0))

    def epoch(self) -> float:
        """One pass over the training queries; returns the mean training loss."""
        config, n = self.config, len(self.queries)
        order = torch.randperm(n, generator=self.generator) if config.shuffle else torch.arange(n)
        losses = []
        for batch in order.split(config.batch_size):
            loss = self._loss(batch)
            if config.identity_penalty:
                loss = loss + config.identity_penalty * self.module.identity_distance()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        return float(np.mean(losses))

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        config = self.config
        q = torch.nn.functional.normalize(self.module(self.queries[batch]), dim=-1)
        if config.loss == "corpus":
            skip = self.ignore[batch] if self.ignore is not None else None
            grades = self.grades[batch] if self.grades is not None else None
            return corpus_softmax_loss(
                q,
                self.docs,
                self.positives[batch],
                config.scale,
                skip,
                config.label_smoothing,
                grades,
            )
        pos = self.first_positive[batch]
        shared = self.positives[batch][:, pos] & ~torch.eye(len(batch), dtype=torch.bool)
        if self.ignore is not None:
            shared = shared | self.ignore[batch][:, pos]
        mask = shared if config.mask_shared_positives else None
        hard = self.docs[self.hard_idx[batch]] if self.hard_idx is not None else None
        valid = self.hard_valid[batch] if self.hard_valid is not None else None
        return in_batch_loss(q, self.docs[pos], mask, config.scale, hard, valid)

    @torch.no_grad()
    def score(self, alpha: float = 1.0) -> tuple[float, np.ndarray]:
        """Dev loss and per-query ranking metric of ``q + alpha (f(q) - q)``.

        Parts (see :func:`queryfit.training.splits.dev_parts`) are pooled by query count."""
        total_loss, per_query = 0.0, []
        for part, (queries, docs, positives, _, grades) in self.dev:
            adapted = queries + alpha * (self.module(queries) - queries)
            q = torch.nn.functional.normalize(adapted, dim=-1)
            loss = corpus_softmax_loss(q, docs, positives, self.config.scale, grades=grades).item()
            total_loss += len(queries) * loss
            per_query.append(_dev_metric(adapted.numpy(), part, self.config.select_metric))
        scores = np.concatenate(per_query)
        return total_loss / len(scores), scores

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}


def _train(
    data: RetrievalVectors,
    config: TrainConfig,
    epochs: int,
    *,
    on_epoch: ProgressFn | None = None,
) -> tuple[_Run, list[EpochRecord]]:
    """Run ``epochs`` epochs from the identity with nothing to score (no dev, or the refit)."""
    run = _Run(data, config)
    history = [EpochRecord(0, None, None, None)]
    for epoch in range(1, epochs + 1):
        history.append(EpochRecord(epoch, run.epoch(), None, None))
        if on_epoch is not None:
            on_epoch(history[-1])
    return run, history


def _tensors(data: RetrievalVectors) -> tuple[torch.Tensor, ...]:
    """Queries, normalised passages, a relevance mask, one positive per query (the highest
    graded), and the grades when they are not all equal (else ``None``)."""
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
        first[i] = max(rows, key=lambda d: rel[d])
    grades = None
    if len({g for rel in data.relevant for g in rel.values() if g > 0}) > 1:
        grades = torch.zeros(len(queries), len(docs))
        for i, rel in enumerate(data.relevant):
            for d, g in rel.items():
                grades[i, d] = max(g, 0.0)
    return queries, docs, positives, first, grades


def _dev_metric(adapted: np.ndarray, dev: RetrievalVectors, metric: str) -> np.ndarray:
    """The metric per dev query."""
    result = evaluate_retrieval(adapted, dev.docs, dev.relevant, metrics=[metric])
    return np.asarray(result.metrics[metric], dtype=np.float64)


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
    return Adapter(
        type=config.adapter_type,
        params=blend_params(config.adapter_type, params, alpha),
        dim=dim,
    )


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
    dev: DevParts | None,
    refit_on: RetrievalVectors | None,
    start: float,
) -> FitResult:
    """Closed-form rotation blended toward the identity; alpha and the gate chosen on dev."""
    weight = procrustes_weight(train)
    if not dev:
        params = blend_params("linear", {"weight": weight}, max(config.blend_grid))
        adapter = Adapter(type="linear", params=params, dim=train.dim)
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
    metric = config.select_metric

    def blended(alpha: float) -> np.ndarray:
        """Per-query dev metric of ``q + alpha (R q - q)``."""
        out = []
        for part in dev:
            base = np.ascontiguousarray(part.queries, dtype=np.float32)
            out.append(_dev_metric(base + alpha * (base @ weight.T - base), part, metric))
        return np.concatenate(out)

    per_query = {float(a): blended(a) for a in sorted(set(config.blend_grid) | {0.0})}
    scores = {a: float(v.mean()) for a, v in per_query.items() if a > 0}
    identity = float(per_query[0.0].mean())
    alpha = max(scores, key=lambda a: (scores[a], -a))
    gain, noise = _paired_gain(per_query[alpha], per_query[0.0])
    if gain <= max(config.min_improvement, config.gate_z * noise):
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
        Adapter(type="linear", params=params, dim=train.dim),
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
