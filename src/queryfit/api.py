"""The Python API; every CLI verb is a thin shell over the function of the same name here.

``embed`` warms the store, ``train`` fits and saves an adapter, ``evaluate`` compares base and
adapted retrieval with confidence intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .adapters import Adapter, load_adapter, save_adapter
from .dataset import QADataset, load_dataset, split_dataset
from .embedders import Embedder, get_embedder
from .errors import TrainingError
from .evaluate import DEFAULT_METRICS, Difference, compare, evaluate_retrieval
from .store import EmbeddingStore
from .vectors import RetrievalVectors, embed_dataset, restrict

MIN_TRAIN_QUERIES = 20
SMALL_DATA_WARNING = 200
HEADLINE_METRIC = "ndcg@10"

DatasetLike = QADataset | str | Path
StoreLike = EmbeddingStore | str | Path | None


@dataclass
class EmbedReport:
    model_id: str
    queries: int
    passages: int
    model_calls: int
    texts_embedded: int
    texts_from_store: int
    store_path: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainReport:
    """What ``train`` did: the adapter, where it went, and the evidence behind shipping it."""

    adapter: Adapter
    out: Path | None
    decision: str
    shipped_identity: bool
    best_epoch: int
    dev_identity: float | None
    dev_best: float | None
    history: list[dict[str, Any]]
    seconds: float
    model_calls: int
    texts_from_store: int
    train_queries: int
    dev_queries: int

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "adapter"}
        out["out"] = str(self.out) if self.out else None
        out["adapter"] = dict(self.adapter.describe())
        return out


@dataclass
class EvaluationReport:
    """Base vs adapted retrieval on one dataset, per metric, with paired-bootstrap intervals."""

    model_id: str
    adapter: dict[str, Any]
    queries: int
    passages: int
    base: dict[str, float]
    adapted: dict[str, float]
    differences: list[Difference]
    headline: str
    model_calls: int
    texts_from_store: int
    per_query: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> str:
        """One line on the headline metric: ``+2.1 ndcg@10, 95% CI [+0.8, +3.4]: significant``."""
        return next(d for d in self.differences if d.metric == self.headline).verdict()

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("per_query", "differences")}
        out["differences"] = [d.__dict__ | {"significant": d.significant} for d in self.differences]
        out["verdict"] = self.verdict
        return out


def _as_dataset(data: DatasetLike) -> QADataset:
    return data if isinstance(data, QADataset) else load_dataset(data)


def _as_store(store: StoreLike) -> EmbeddingStore:
    return store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)


def embed(
    data: DatasetLike,
    *,
    model: str | Embedder | None = None,
    store: StoreLike = None,
    progress: bool = True,
) -> EmbedReport:
    """Embed every query and passage of ``data`` into the store, so later runs make no calls."""
    dataset, embedder, store = _as_dataset(data), get_embedder(model), _as_store(store)
    before = store.stats.model_calls, store.stats.texts_embedded, store.stats.texts_from_store
    embed_dataset(dataset, embedder, store, progress=progress)
    return EmbedReport(
        embedder.model_id,
        len(dataset.queries),
        len(dataset.corpus),
        store.stats.model_calls - before[0],
        store.stats.texts_embedded - before[1],
        store.stats.texts_from_store - before[2],
        str(store.path),
    )


def train(
    data: DatasetLike,
    *,
    model: str | Embedder | None = None,
    out: str | Path | None = None,
    config: Any = None,
    store: StoreLike = None,
    dev_fraction: float = 0.2,
    split_by: str = "query",
    progress: bool = True,
    on_epoch: Any = None,
) -> TrainReport:
    """Fit a query adapter for ``model`` on ``data`` and save it to ``out``.

    A ``dev_fraction`` of the queries (split ``by`` query by default: new questions over the same
    passages, which is how the adapter is used) picks the epoch count and gates shipping: if no
    epoch beats the base model on dev, the identity adapter is saved and the report says so.
    """
    from .training import TrainConfig, fit_adapter  # torch is needed for training only

    config = config or TrainConfig()
    dataset, embedder, store = _as_dataset(data), get_embedder(model), _as_store(store)
    if len(dataset.queries) < MIN_TRAIN_QUERIES:
        raise TrainingError(
            f"only {len(dataset.queries)} queries: at least {MIN_TRAIN_QUERIES} are needed to "
            "train and check an adapter; generate or import more pairs"
        )
    if len(dataset.queries) < SMALL_DATA_WARNING:
        warnings.warn(
            f"{len(dataset.queries)} queries is little data: expect a small or no gain "
            f"(a few hundred pairs or more is typical)",
            stacklevel=2,
        )
    calls_before, hits_before = store.stats.model_calls, store.stats.texts_from_store
    vectors = embed_dataset(dataset, embedder, store, progress=progress)
    dev_vectors: RetrievalVectors | None = None
    train_vectors = vectors
    if dev_fraction > 0:
        train_part, dev_part = split_dataset(
            dataset, dev_fraction=dev_fraction, by=split_by, seed=config.seed
        )
        train_vectors, dev_vectors = restrict(vectors, train_part), restrict(vectors, dev_part)
    result = fit_adapter(
        train_vectors, config, dev=dev_vectors, refit_on=vectors, on_epoch=on_epoch
    )
    adapter = result.adapter
    adapter.base_model = {
        "id": embedder.model_id,
        "query_prefix": embedder.query_prefix,
        "document_prefix": embedder.document_prefix,
    }
    history = [r.__dict__ for r in result.history]
    adapter.config = {
        "training": config.to_dict() | {"split_by": split_by, "dev_fraction": dev_fraction},
        "data": {
            "fingerprint": dataset.fingerprint(),
            "source": str(data) if not isinstance(data, QADataset) else None,
            "queries": len(dataset.queries),
            "passages": len(dataset.corpus),
        },
        "decision": result.decision,
        "shipped_identity": result.shipped_identity,
        "best_epoch": result.best_epoch,
        "dev": {
            "metric": config.select_metric,
            "base": result.identity_score,
            "adapted": result.best_score,
        },
        "history": history,
        "train_seconds": round(result.seconds, 3),
    }
    if out is not None:
        save_adapter(adapter, out)
    return TrainReport(
        adapter=adapter,
        out=Path(out) if out is not None else None,
        decision=result.decision,
        shipped_identity=result.shipped_identity,
        best_epoch=result.best_epoch,
        dev_identity=result.identity_score,
        dev_best=result.best_score,
        history=history,
        seconds=result.seconds,
        model_calls=store.stats.model_calls - calls_before,
        texts_from_store=store.stats.texts_from_store - hits_before,
        train_queries=len(train_vectors.queries),
        dev_queries=len(dev_vectors.queries) if dev_vectors is not None else 0,
    )


def evaluate(
    data: DatasetLike,
    adapter: Adapter | str | Path,
    *,
    model: str | Embedder | None = None,
    store: StoreLike = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    headline: str = HEADLINE_METRIC,
    n_resamples: int = 10_000,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> EvaluationReport:
    """Compare retrieval with the base model and with the adapter on ``data``'s queries.

    The model defaults to the one the adapter was trained for. Differences come with paired
    bootstrap 95% intervals; the verdict line reads the headline metric.
    """
    if not isinstance(adapter, Adapter):
        adapter = load_adapter(adapter)
    model = model if model is not None else adapter.base_model.get("id")
    embedder = (
        get_embedder(
            model,
            query_prefix=adapter.base_model.get("query_prefix", ""),
            document_prefix=adapter.base_model.get("document_prefix", ""),
        )
        if isinstance(model, str) or model is None
        else model
    )
    if not force:
        adapter = _checked(adapter, embedder)
    if headline not in metrics:
        metrics = (*metrics, headline)
    dataset, store = _as_dataset(data), _as_store(store)
    calls_before, hits_before = store.stats.model_calls, store.stats.texts_from_store
    vectors = embed_dataset(dataset, embedder, store, progress=progress)
    base = evaluate_retrieval(vectors.queries, vectors.docs, vectors.relevant, metrics=metrics)
    adapted = evaluate_retrieval(
        adapter.transform(vectors.queries), vectors.docs, vectors.relevant, metrics=metrics
    )
    differences = compare(base.metrics, adapted.metrics, n_resamples=n_resamples, seed=seed)
    return EvaluationReport(
        model_id=embedder.model_id,
        adapter=dict(adapter.describe()),
        queries=len(dataset.queries),
        passages=len(dataset.corpus),
        base=base.summary(),
        adapted=adapted.summary(),
        differences=differences,
        headline=headline,
        model_calls=store.stats.model_calls - calls_before,
        texts_from_store=store.stats.texts_from_store - hits_before,
        per_query={"base": base.metrics, "adapted": adapted.metrics},
    )


def _checked(adapter: Adapter, embedder: Embedder) -> Adapter:
    """Refuse an adapter trained for another model, with the same rules as ``load_adapter``."""
    from .errors import AdapterError

    trained_for = adapter.base_model.get("id")
    if trained_for and trained_for != embedder.model_id:
        raise AdapterError(
            f"adapter was trained for {trained_for}, not {embedder.model_id}; evaluate with its "
            "own base model, or pass --force if you know they match"
        )
    if adapter.dim != embedder.dim:
        raise AdapterError(
            f"adapter expects {adapter.dim}-dimensional queries, {embedder.model_id} gives "
            f"{embedder.dim}"
        )
    return adapter
