"""Fit a query-side adapter on frozen passage vectors.

The recipe: start from the identity, train while scoring held-out dev questions after every
epoch (one dev split, or k folds in lockstep with every question dev once), keep the epoch count
that scored best, then refit on every pair for that many epochs. Dev also picks a blend
``alpha * adapted + (1 - alpha) * query`` (shrinking the learned change toward the base model;
it folds into the adapter's own arrays). Unless the dev gain beats the noise, ship the identity
and say so: an adapter that makes retrieval worse on dev is never the result.

At scale (:mod:`queryfit.training.scale`): the passages are one normalised tensor on the training
device shared by every run of a fit; the corpus softmax gives way to the sampled softmax; dev
parts too large to score in one piece are searched exactly in blocks; relevance and
near-duplicates are per-query lists, never ``[queries, passages]`` matrices.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from queryfit.adapters import Adapter
from queryfit.embedders.sentence_transformers import resolve_device as local_device
from queryfit.errors import TrainingError
from queryfit.evaluation import evaluate_retrieval, per_query_metrics, required_depth
from queryfit.evaluation.retrieval import DOC_BLOCK_ROWS, SCORE_BUDGET_BYTES, RunningTopK
from queryfit.training.config import TrainConfig
from queryfit.training.losses import corpus_softmax_loss, in_batch_loss, sampled_softmax_loss
from queryfit.training.modules import build_module
from queryfit.training.negatives import mine_hard_negatives, near_duplicate_rows, positive_rows
from queryfit.training.scale import loss_note, resolve_loss
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
    loss: str = "corpus"  # the loss actually used ("auto" resolved)
    # Seconds per stage (passages to device, near-duplicates, mining, epochs, dev scoring, refit).
    stages: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[EpochRecord], None]
DevParts = list[RetrievalVectors]  # dev queries, each part searching its own passages

SMALL_PROBLEM = 20_000_000  # passage-matrix entries under which one CPU thread is fastest
# Dev parts up to this many query x passage scores are scored in one piece (as always); larger
# ones are searched in blocks against the shared passage tensor.
DEV_DENSE_MAX = 2**25
# The refit on every pair is skipped when dev held less than this share of the queries (a bounded
# dev sample of large data): it would add a few percent of the pairs for as many epochs again.
REFIT_MIN_DEV_SHARE = 0.05


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when torch sees a GPU, else the CPU; ``"cuda"`` without one is an error."""
    return torch.device(local_device(name, TrainingError))


def _threads_for_size(fit: Callable[..., FitResult]) -> Callable[..., FitResult]:
    """Run small problems on one torch thread: at these sizes the thread hand-off costs more
    than the matrix products, and on a busy machine two threads ran 6-10x slower (measured).
    Large ones (mining, blocked dev search, the corpus softmax over 100k+ passages) use them all."""

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
    corpus = _Corpus(train.docs, config)
    if not parts:
        epochs = config.epochs if config.epochs is not None else config.max_epochs
        run, history = _train(train, config, epochs, on_epoch=on_epoch, corpus=corpus)
        decision = f"trained {epochs} epochs (no dev split to choose or gate with)"
        note = loss_note(config, len(train.queries), len(train.docs))
        return FitResult(
            _to_adapter(run.module, config, train.dim),
            history,
            epochs,
            None,
            None,
            False,
            time.perf_counter() - start,
            decision + (f"; {note}" if note else ""),
            config,
            loss=run.loss_name,
            stages=corpus.rounded_stages(),
        )
    runs = [_Run(train, config, parts, corpus)]
    return _fit_runs(runs, config, refit_on, on_epoch, start, corpus=corpus)


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
    corpus = _Corpus(vectors.docs, config)
    runs = []
    for dev_rows in kfold_rows(vectors, folds, config.seed):
        held = set(dev_rows)
        train_rows = [r for r in range(len(vectors.queries)) if r not in held]
        parts = dev_parts(vectors, dev_rows, train_rows)
        runs.append(_Run(vectors.select(train_rows), config, parts, corpus))
    return _fit_runs(
        runs, config, vectors, on_epoch, start, f"{folds}-fold cross-validated dev", corpus
    )


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
    corpus: _Corpus | None = None,
) -> FitResult:
    """Step the runs in lockstep, pick the epoch and blend on their pooled dev score, gate, refit.

    With one run this is the plain dev-split recipe; with several, cross-validation.
    ``dev_name`` says which in the decision.
    """
    dim = runs[0].queries.shape[1]
    loss_name = runs[0].loss_name
    note = loss_note(config, len(runs[0].queries), runs[0].n_docs)
    epochs = config.epochs if config.epochs is not None else config.max_epochs
    patience = config.scale_patience if loss_name == "sampled" else config.patience
    if config.epochs is not None:
        patience = None
    history: list[EpochRecord] = []
    best, states, stale = None, None, 0
    stages = runs[0].stages
    for epoch in range(epochs + 1):
        with _timed(stages, "epochs"):
            losses = [run.epoch() for run in runs] if epoch > 0 else None
        with _timed(stages, "dev scoring"):
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
    with _timed(stages, "dev scoring"):
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
            decision + (f"; {note}" if note else ""),
            config,
            1.0,
            blend_scores,
            loss_name,
            _rounded(stages),
        )

    decision = f"{dev_name} {metric} {identity_score:.4f} -> {best_score:.4f} at epoch {best.epoch}"
    if alpha < 1.0:
        decision += f" with blend {alpha:g}"
    module = runs[0].module  # in its best-epoch state
    if refit_on is not None and config.refit:
        n_dev = len(identity_per_query)
        share = n_dev / len(refit_on.queries)
        if share < REFIT_MIN_DEV_SHARE:
            decision += (
                f"; no refit: the {n_dev:,} dev queries are {share:.1%} of the "
                f"{len(refit_on.queries):,}, too few to be worth {best.epoch} more epochs"
            )
        else:
            shared = corpus if corpus is not None and refit_on.docs is corpus.array else None
            # The loss the epoch count was chosen with, not one chosen again for more queries.
            same_loss = replace(config, loss=loss_name)
            run = _train(refit_on, same_loss, best.epoch, corpus=shared, stage="refit")[0]
            module = run.module
            decision += f"; refit on all {len(refit_on.queries)} queries for {best.epoch} epochs"
    if note:
        decision += f"; {note}"
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
        loss_name,
        _rounded(stages),
    )


@contextmanager
def _timed(stages: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds of the ``with`` body to ``stages[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - start


def _rounded(stages: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds, 3) for name, seconds in stages.items()}


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


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 tensor sharing ``x``'s memory when it is a writable float32 array, else a copy
    (torch cannot share read-only memory such as a memory-mapped ``.npy``)."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _normalised(docs: np.ndarray, device: torch.device) -> torch.Tensor:
    """Unit-length float32 passages on ``device``; a large or memory-mapped corpus is converted a
    block at a time (never a second whole copy besides the result)."""
    if len(docs) <= DOC_BLOCK_ROWS:
        whole = _as_tensor(docs)
        return torch.nn.functional.normalize(whole, dim=-1).to(device)
    out = torch.empty(docs.shape, dtype=torch.float32, device=device)
    for start in range(0, len(docs), DOC_BLOCK_ROWS):
        block = _as_tensor(docs[start : start + DOC_BLOCK_ROWS])
        out[start : start + len(block)] = torch.nn.functional.normalize(block.to(device), dim=-1)
    return out


class _Corpus:
    """The frozen passages of one fit, built once and shared by all its runs (the folds of
    cross-validation, the refit): one normalised tensor on the training device, and the
    near-duplicates of the relevant passages as they are found."""

    def __init__(self, docs: np.ndarray, config: TrainConfig) -> None:
        self.array = docs
        self.config = config
        self.device = resolve_device(config.device)
        self.stages: dict[str, float] = {}
        with _timed(self.stages, "passages to device"):
            self.tensor = _normalised(docs, self.device)
        self._close: dict[int, np.ndarray] = {}  # relevant passage -> its near-duplicates

    def near_duplicates(self, relevant: Sequence[dict[int, float]]) -> list[np.ndarray]:
        """Per query, the near-duplicates of its relevant passages (see negatives.py)."""
        with _timed(self.stages, "near-duplicates"):
            return near_duplicate_rows(
                self.array, relevant, self.config.duplicate_threshold, cache=self._close
            )

    def mine(self, queries: np.ndarray, relevant: Sequence[dict[int, float]], k: int) -> np.ndarray:
        """``k`` hard negatives per query for the sampled softmax (see mining.py)."""
        with _timed(self.stages, "mining"):
            return self._mine(queries, relevant, k)

    def rounded_stages(self) -> dict[str, float]:
        return _rounded(self.stages)

    def _mine(
        self, queries: np.ndarray, relevant: Sequence[dict[int, float]], k: int
    ) -> np.ndarray:
        from queryfit.training import mining

        positives = [np.asarray(positive_rows(rel), dtype=np.int64) for rel in relevant]
        threshold = self.config.duplicate_threshold
        if self.device.type != "cpu":  # exact search on the accelerator is cheap
            depth = min(len(self.array), k + max(map(len, positives)) + mining.OVERFETCH)
            q = _as_tensor(queries).to(self.device)
            candidates, _ = _blocked_search(
                torch.nn.functional.normalize(q, dim=-1), self.tensor, depth
            )
            return mining.filter_candidates(
                candidates, self.tensor.cpu().numpy(), positives, k, threshold
            )
        # The FAISS index (as large as the corpus) lives only while mining.
        return mining.mine_negatives(queries, self.tensor.numpy(), positives, k, threshold)


class _Positives:
    """Each query's relevant passages as flat arrays (CSR), expanded per batch when needed."""

    def __init__(self, relevant: Sequence[dict[int, float]], what: str = "training") -> None:
        rows = [positive_rows(rel) for rel in relevant]
        for i, r in enumerate(rows):
            if not r:
                raise TrainingError(f"{what} query {i} has no relevant passage")
        self.ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        self.idx = np.fromiter((p for r in rows for p in r), dtype=np.int64, count=self.ptr[-1])
        self.grade = np.fromiter(
            (rel[p] for rel, r in zip(relevant, rows, strict=True) for p in r),
            dtype=np.float32,
            count=self.ptr[-1],
        )
        self.first = np.array(
            [max(r, key=lambda d, rel=rel: rel[d]) for rel, r in zip(relevant, rows, strict=True)],
            dtype=np.int64,
        )
        self.graded = len({g for rel in relevant for g in rel.values() if g > 0}) > 1
        self.lists = [self.idx[self.ptr[i] : self.ptr[i + 1]] for i in range(len(rows))]

    def padded(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows [B, P] (0-padded), a validity mask [B, P] and grades [B, P] of a batch."""
        starts, lens = self.ptr[batch], self.ptr[batch + 1] - self.ptr[batch]
        width = int(lens.max()) if len(batch) else 0
        offsets = np.arange(width)
        valid = offsets[None, :] < lens[:, None]
        flat = np.where(valid, starts[:, None] + offsets[None, :], 0)
        return np.where(valid, self.idx[flat], 0), valid, np.where(valid, self.grade[flat], 1.0)

    def dense(
        self, batch: np.ndarray, n_docs: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A relevance mask [B, n_docs] of a batch, and its grades when they differ."""
        rows, valid, grades = self.padded(batch)
        at = np.nonzero(valid)
        mask = torch.zeros(len(batch), n_docs, dtype=torch.bool)
        mask[at[0], rows[at]] = True
        graded = None
        if self.graded:
            graded = torch.zeros(len(batch), n_docs)
            graded[at[0], rows[at]] = torch.from_numpy(grades[at])
        return mask.to(device), graded.to(device) if graded is not None else None


def _rows_mask(lists: Sequence[np.ndarray], batch: np.ndarray, n_docs: int) -> torch.Tensor:
    """A [B, n_docs] mask with True at each batch query's listed passage rows."""
    mask = torch.zeros(len(batch), n_docs, dtype=torch.bool)
    chosen = [lists[q] for q in batch]
    cols = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(batch)), [len(c) for c in chosen])
    mask[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = True
    return mask


class _Run:
    """One model, its optimiser and its data: trains an epoch at a time and scores dev.

    Split out of the epoch loop so cross-validation can step several runs in lockstep.
    """

    def __init__(
        self,
        data: RetrievalVectors,
        config: TrainConfig,
        dev: DevParts | None = None,
        corpus: _Corpus | None = None,
    ) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        corpus = corpus if corpus is not None else _Corpus(data.docs, config)
        self.device = corpus.device
        self.stages = corpus.stages
        self.module = build_module(
            config.adapter_type,
            data.dim,
            bias=config.bias,
            hidden_dim=config.hidden_dim,
            rank=config.rank,
        ).to(self.device)
        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_class(
            self.module.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.n_docs = len(data.docs)
        self.loss_name = resolve_loss(config, len(data.queries), self.n_docs)
        self.queries = _as_tensor(data.queries).to(self.device)
        self.docs = corpus.tensor
        self.positives = _Positives(data.relevant)
        self.first_positive = torch.from_numpy(self.positives.first).to(self.device)
        self.dev = [_DevPart(part, corpus, config) for part in (dev or [])]
        # Near-duplicates of each query's positives are never its negatives (None if none). The
        # sampled softmax checks its few candidates exactly instead (mining.py, _sampled).
        self.ignore: list[np.ndarray] | None = None
        duplicates = None
        if self.loss_name != "sampled":
            duplicates = corpus.near_duplicates(data.relevant)
            self.ignore = duplicates if any(len(r) for r in duplicates) else None
        self.hard_idx = self.hard_valid = None
        hard = config.hard_negatives_for(self.loss_name)
        mined = None
        if self.loss_name == "in_batch" and hard > 0:
            with _timed(self.stages, "mining"):
                mined = mine_hard_negatives(
                    data.queries, data.docs, data.relevant, hard, near_duplicates=duplicates
                )
        elif self.loss_name == "sampled" and hard > 0:
            mined = corpus.mine(data.queries, data.relevant, hard)
        if mined is not None:
            self.hard_valid = torch.from_numpy(mined >= 0).to(self.device)
            self.hard_idx = torch.from_numpy(np.maximum(mined, 0)).to(self.device)

    def epoch(self) -> float:
        """One pass over the training queries; returns the mean training loss.

        Sampled-softmax steps are small ([batch, drawn + mined] scores) and run on one CPU
        thread: on a busy 2-core machine a step took 19 ms on one thread and 350 ms on two
        (measured, 4096 draws); bulk searches (mining, dev scoring) keep every thread."""
        if self.loss_name == "sampled" and self.device.type == "cpu":
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._epoch()
            finally:
                torch.set_num_threads(previous)
        return self._epoch()

    def _epoch(self) -> float:
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
        config, rows = self.config, batch.numpy()
        on_device = batch.to(self.device)
        q = torch.nn.functional.normalize(self.module(self.queries[on_device]), dim=-1)
        if self.loss_name == "sampled":
            return self._sampled(q, rows, on_device)
        positives, grades = self.positives.dense(rows, self.n_docs, self.device)
        skip = (
            _rows_mask(self.ignore, rows, self.n_docs).to(self.device)
            if self.ignore is not None
            else None
        )
        if self.loss_name == "corpus":
            return corpus_softmax_loss(
                q, self.docs, positives, config.scale, skip, config.label_smoothing, grades
            )
        pos = self.first_positive[on_device]
        shared = positives[:, pos] & ~torch.eye(len(batch), dtype=torch.bool, device=self.device)
        if skip is not None:
            shared = shared | skip[:, pos]
        mask = shared if config.mask_shared_positives else None
        hard = self.docs[self.hard_idx[on_device]] if self.hard_idx is not None else None
        valid = self.hard_valid[on_device] if self.hard_valid is not None else None
        return in_batch_loss(q, self.docs[pos], mask, config.scale, hard, valid)

    def _sampled(self, q: torch.Tensor, rows: np.ndarray, on_device: torch.Tensor) -> torch.Tensor:
        """The sampled softmax of one batch: relevant passages, mined hard negatives and
        ``sampled_negatives`` uniform draws shared by the batch (see losses.py)."""
        config, device = self.config, self.device
        drawn = torch.randint(self.n_docs, (config.sampled_negatives,), generator=self.generator)
        drawn = drawn.to(device)
        random_docs = self.docs[drawn]
        idx, valid, grades = (torch.from_numpy(a).to(device) for a in self.positives.padded(rows))
        positive_docs = self.docs[idx]
        # A drawn passage is no negative for a query it is relevant to, already counted as one of
        # its hard negatives, or a near-duplicate of one of its relevant passages.
        random_valid = ~_drawn_among(drawn, idx, valid)
        if self.hard_idx is not None:
            hard_idx, hard_valid = self.hard_idx[on_device], self.hard_valid[on_device]
            random_valid &= ~_drawn_among(drawn, hard_idx, hard_valid)
        else:
            hard_idx = torch.zeros(len(rows), 0, dtype=torch.long, device=device)
            hard_valid = torch.zeros(len(rows), 0, dtype=torch.bool, device=device)
        if config.duplicate_threshold < 1.0:
            close = torch.einsum("bpd,sd->bps", positive_docs, random_docs)
            random_valid &= ~((close >= config.duplicate_threshold) & valid[:, :, None]).any(1)
        return sampled_softmax_loss(
            q,
            positive_docs,
            valid,
            self.docs[hard_idx],
            hard_valid,
            random_docs,
            random_valid,
            self.n_docs,
            config.scale,
            config.label_smoothing,
            grades.log() if self.positives.graded else None,
        )

    @torch.no_grad()
    def score(self, alpha: float = 1.0) -> tuple[float, np.ndarray]:
        """Dev loss and per-query ranking metric of ``q + alpha (f(q) - q)``.

        Parts (see :func:`queryfit.training.splits.dev_parts`) are pooled by query count."""
        total_loss, per_query = 0.0, []
        for part in self.dev:
            loss, scores = part.score(self.module, alpha)
            total_loss += len(scores) * loss
            per_query.append(scores)
        scores = np.concatenate(per_query)
        return total_loss / len(scores), scores

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}


class _DevPart:
    """One dev part, scored in one piece when small (as always) or in blocks against the shared
    passage tensor when large (a bounded memory whatever the corpus size)."""

    def __init__(self, part: RetrievalVectors, corpus: _Corpus, config: TrainConfig) -> None:
        self.part, self.config, self.device = part, config, corpus.device
        self.excluded = getattr(part, "excluded", None)
        self.dense = self.excluded is None and len(part.queries) * len(part.docs) <= DEV_DENSE_MAX
        if self.dense:
            self.tensors = tuple(
                t.to(self.device) if t is not None else None for t in _tensors(part)
            )
            return
        self.queries = _as_tensor(part.queries).to(self.device)
        self.docs = (
            corpus.tensor if part.docs is corpus.array else _normalised(part.docs, self.device)
        )
        self.exclude = (
            torch.from_numpy(np.asarray(self.excluded, dtype=bool)).to(self.device)
            if self.excluded is not None
            else None
        )
        self.positives = _Positives(part.relevant, "dev")

    def score(self, module: torch.nn.Module, alpha: float) -> tuple[float, np.ndarray]:
        """Mean corpus-softmax loss and the per-query metric of the blended adapted queries."""
        metric = self.config.select_metric
        if self.dense:
            queries, docs, positives, _, grades = self.tensors
            adapted = queries + alpha * (module(queries) - queries)
            q = torch.nn.functional.normalize(adapted, dim=-1)
            loss = corpus_softmax_loss(q, docs, positives, self.config.scale, grades=grades)
            return loss.item(), _dev_metric(adapted.cpu().numpy(), self.part, metric)
        adapted = self.queries + alpha * (module(self.queries) - self.queries)
        q = torch.nn.functional.normalize(adapted, dim=-1)
        ranked, log_norm = _blocked_search(
            q, self.docs, required_depth([metric]), exclude=self.exclude, scale=self.config.scale
        )
        per_query = per_query_metrics(ranked, self.part.relevant, [metric])[metric]
        # The loss's target: log-sum-exp of the relevant passages' logits (+ log grade).
        rows = np.arange(len(self.part.queries))
        idx, valid, grades = (
            torch.from_numpy(a).to(self.device) for a in self.positives.padded(rows)
        )
        target = self.config.scale * torch.einsum("bd,bpd->bp", q, self.docs[idx])
        if self.positives.graded:
            target = target + grades.log()
        target = torch.logsumexp(target.masked_fill(~valid, float("-inf")), dim=1)
        return float((log_norm - target).mean()), np.asarray(per_query, dtype=np.float64)


def _drawn_among(drawn: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, S] True where draw ``s`` is one of query ``b``'s valid ``rows`` [B, K] (every copy of
    a passage drawn twice). Sorted search: O((S + B K) log S), not a [B, K, S] comparison."""
    ordered, order = torch.sort(drawn)
    flat = rows.reshape(-1)
    low = torch.searchsorted(ordered, flat)
    count = (torch.searchsorted(ordered, flat, right=True) - low) * valid.reshape(-1)
    mask = torch.zeros(rows.shape[0], len(drawn), dtype=torch.bool, device=drawn.device)
    query = torch.arange(rows.shape[0], device=drawn.device).repeat_interleave(rows.shape[1])
    for copy in range(int(count.max()) if count.numel() else 0):
        hit = count > copy
        mask[query[hit], order[low[hit] + copy]] = True
    return mask


@torch.no_grad()
def _blocked_search(
    queries: torch.Tensor,
    docs: torch.Tensor,
    k: int,
    *,
    exclude: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Exact top ``k`` of normalised queries among normalised passages (-1 pads), one bounded
    block of scores at a time; with ``scale``, also each query's log-sum-exp of the scaled scores
    over the passages (the corpus softmax's normaliser). Same order and ties as evaluation."""
    n, n_docs = len(queries), len(docs)
    width = min(max(n_docs, 1), DOC_BLOCK_ROWS)
    rows = max(1, SCORE_BUDGET_BYTES // (8 * width))  # scores and logsumexp's temporary
    top = RunningTopK(n, min(k, n_docs))
    log_norm = torch.full((n,), float("-inf"), device=queries.device) if scale is not None else None
    for d0 in range(0, n_docs, width):
        block_docs = docs[d0 : d0 + width]
        for q0 in range(0, n, rows):
            scores = queries[q0 : q0 + rows] @ block_docs.T
            if exclude is not None:
                scores[:, exclude[d0 : d0 + width]] = float("-inf")
            top.add(q0, d0, scores.cpu().numpy())
            if log_norm is not None:  # after add: the scores are scaled in place
                part = torch.logsumexp(scores.mul_(scale), dim=1)
                log_norm[q0 : q0 + rows] = torch.logaddexp(log_norm[q0 : q0 + rows], part)
    return top.result()[0], log_norm


def _train(
    data: RetrievalVectors,
    config: TrainConfig,
    epochs: int,
    *,
    on_epoch: ProgressFn | None = None,
    corpus: _Corpus | None = None,
    stage: str = "epochs",
) -> tuple[_Run, list[EpochRecord]]:
    """Run ``epochs`` epochs from the identity with nothing to score (no dev, or the refit);
    their seconds count under ``stage``."""
    run = _Run(data, config, corpus=corpus)
    history = [EpochRecord(0, None, None, None)]
    for epoch in range(1, epochs + 1):
        with _timed(run.stages, stage):
            loss = run.epoch()
        history.append(EpochRecord(epoch, loss, None, None))
        if on_epoch is not None:
            on_epoch(history[-1])
    return run, history


def _tensors(data: RetrievalVectors) -> tuple[torch.Tensor, ...]:
    """Queries, normalised passages, a relevance mask, one positive per query (the highest
    graded), and the grades when they are not all equal (else ``None``). Dense: for small dev
    parts only (the trainer keeps training relevance as lists, :class:`_Positives`)."""
    queries = _as_tensor(data.queries)
    docs = torch.nn.functional.normalize(_as_tensor(data.docs), dim=-1)
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
    """The metric per dev query (a part's excluded passages are never retrieved)."""
    result = evaluate_retrieval(
        adapted, dev.docs, dev.relevant, metrics=[metric], exclude=getattr(dev, "excluded", None)
    )
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
