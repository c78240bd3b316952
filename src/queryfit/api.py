"""The Python API; every CLI verb is a thin shell over the function of the same name here.

``embed`` warms the store, ``train`` fits and saves an adapter, ``evaluate`` compares base and
adapted retrieval with confidence intervals. ``generate`` turns a folder of documents into
(question, passage) pairs and ``run`` chains generate, split, train and evaluate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.adapters import Adapter, check_fits, load_adapter, save_adapter
from queryfit.data import QADataset, load_dataset, split_dataset
from queryfit.embedders import Embedder, get_embedder
from queryfit.errors import TrainingError
from queryfit.evaluation import DEFAULT_METRICS, Difference, compare, evaluate_retrieval
from queryfit.evaluation.coverage import CoverageBreakdown, coverage_record, split_by_coverage
from queryfit.generation.pipeline import GenerateReport, generate  # noqa: F401  (re-exported: the API)
from queryfit.report.details import QueryDetails, query_details, relevant_rows
from queryfit.report.html import check_report_path, write_report
from queryfit.store import EmbeddingStore
from queryfit.vectors import RetrievalVectors, embed_dataset, restrict
from queryfit.workflow import RunReport, run  # noqa: F401  (re-exported; run() calls train/evaluate)

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
    train_queries: int  # with cross-validation: the sizes of one fold
    dev_queries: int
    cv_folds: int = 0  # 0: one dev split

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
    # Per-query ranks, hit@k / recall@k curves, texts and training facts for the HTML report.
    details: QueryDetails | None = field(default=None, repr=False)
    report_path: str | None = None
    # Covered vs uncovered test queries, when adapter.json records the training passages.
    coverage: CoverageBreakdown | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        """One line on the headline metric: ``+2.1 ndcg@10, 95% CI [+0.8, +3.4]: significant``."""
        return next(d for d in self.differences if d.metric == self.headline).verdict()

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("per_query", "differences", "details", "coverage")
        }
        out["differences"] = [d.__dict__ | {"significant": d.significant} for d in self.differences]
        out["coverage"] = self.coverage.to_dict() if self.coverage is not None else None
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
    split_by: str = "coverage",
    progress: bool = True,
    on_epoch: Any = None,
    search: bool = False,
) -> TrainReport:
    """Fit a query adapter for ``model`` on ``data`` and save it to ``out``.

    A ``dev_fraction`` of the queries picks the epoch count and the blend toward the base, and
    gates shipping: if nothing beats the base model on dev, the identity adapter is saved and the
    report says so. ``split_by="coverage"`` (default) holds out new questions over passages that
    keep a training question (the in-corpus use) when the data has them, else plain held-out
    questions; ``"query"`` and ``"passage"`` use :func:`split_dataset`. ``search=True`` first tries
    a small grid of settings on the dev split (see ``queryfit.training.search``).
    """
    from queryfit.training import TrainConfig  # torch is needed for training only

    config = config or TrainConfig()
    config.validate()  # a bad setting fails before minutes of embedding, not after
    if split_by not in ("coverage", "query", "passage"):
        raise TrainingError(
            f"split_by (--split-by) must be coverage, query or passage, not {split_by!r}"
        )
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
    fitted = _fit(vectors, config, dev_fraction, split_by, search, on_epoch, dataset)
    result, split_note = fitted.result, fitted.split_note
    adapter = result.adapter
    adapter.base_model = {
        "id": embedder.model_id,
        "query_prefix": embedder.query_prefix,
        "document_prefix": embedder.document_prefix,
    }
    embedding = {
        "model_calls": store.stats.model_calls - calls_before,
        "texts_from_store": store.stats.texts_from_store - hits_before,
    }
    data_record = {
        "fingerprint": dataset.fingerprint(),
        "source": str(data) if not isinstance(data, QADataset) else None,
        "queries": len(dataset.queries),
        "passages": len(dataset.corpus),
        **coverage_record(dataset),  # passage hashes, never text; see evaluation/coverage.py
    }
    adapter.config = _adapter_record(fitted, split_by, dev_fraction, data_record, embedding)
    history = adapter.config["history"]
    if out is not None:
        save_adapter(adapter, out)
    return TrainReport(
        adapter=adapter,
        out=Path(out) if out is not None else None,
        decision=result.decision + (f"; {split_note}" if split_note else ""),
        shipped_identity=result.shipped_identity,
        best_epoch=result.best_epoch,
        dev_identity=result.identity_score,
        dev_best=result.best_score,
        history=history,
        seconds=result.seconds,
        **embedding,
        **fitted.split_sizes,
    )


@dataclass
class _Fitted:
    """What :func:`_fit` returns to ``train`` and ``train_vectors`` (one code path for both)."""

    result: Any  # training.FitResult
    config: Any  # the TrainConfig used (the search's winner with search=True)
    split_note: str
    search_table: str | None
    split_sizes: dict[str, int]


def _fit(
    vectors: RetrievalVectors,
    config: Any,
    dev_fraction: float,
    split_by: str,
    search: bool,
    on_epoch: Any,
    dataset: QADataset | None = None,
) -> _Fitted:
    """The training policy on embedded vectors: dev split or cross-validation, search, fit.

    ``dataset`` is needed only for ``split_by`` query or passage (:func:`split_dataset`).
    """
    from queryfit.training import fit_adapter
    from queryfit.training.scale import cross_validation_refusal, max_dev_queries

    dev_vectors: list[RetrievalVectors] | RetrievalVectors | None = None
    train_vectors = vectors
    split_note, search_table = "", None
    # Quality work (issue 5): small data is cross-validated (every query scored once as dev);
    # otherwise one dev split of new questions over covered passages when the data has such.
    # Large data (issue 12): one split, its dev a bounded sample. See training/splits.py,
    # training/scale.py and docs/benchmarks.md.
    refusal = cross_validation_refusal(config, len(vectors.queries), len(vectors.docs))
    cross_validate = (
        dev_fraction > 0
        and split_by == "coverage"
        and config.cv_folds >= 2
        and config.adapter != "procrustes"
        and config.cv_folds <= len(vectors.queries)
        and refusal is None
    )
    if dev_fraction > 0 and split_by == "coverage" and (search or not cross_validate):
        from queryfit.training.splits import coverage_split, dev_parts, duplicate_groups

        split = coverage_split(
            vectors.relevant,
            dev_fraction,
            config.seed,
            duplicate_of=duplicate_groups(vectors.queries),
            max_dev=max_dev_queries(config, len(vectors.docs)),
        )
        train_vectors = vectors.select(split.train_rows)
        dev_vectors = dev_parts(vectors, split.dev_rows, split.train_rows)
        split_note = split.describe()
        if round(dev_fraction * len(vectors.queries)) > max_dev_queries(config, len(vectors.docs)):
            split_note += (
                f", a bounded sample (dev_max_queries {config.dev_max_queries:,}, "
                f"dev_max_scores {config.dev_max_scores:,})"
            )
        if refusal is not None and config.cv_folds >= 2 and config.adapter != "procrustes":
            split_note += f"; {refusal}"
    elif dev_fraction > 0 and split_by != "coverage":
        if dataset is None:
            raise TrainingError(f"split_by={split_by!r} needs the dataset; use coverage")
        train_part, dev_part = split_dataset(
            dataset, dev_fraction=dev_fraction, by=split_by, seed=config.seed
        )
        train_vectors, dev_vectors = restrict(vectors, train_part), restrict(vectors, dev_part)
    if search and dev_vectors is not None:
        from queryfit.training.search import search as search_settings

        found = search_settings(train_vectors, dev_vectors, config)
        config, search_table = found.best_config, found.table()
    if cross_validate:
        from queryfit.training import fit_adapter_cv

        result = fit_adapter_cv(vectors, config, on_epoch=on_epoch)
        # Sizes of one fold (they add up to the whole); every query is dev once.
        dev_count = len(vectors.queries) // config.cv_folds
        train_count = len(vectors.queries) - dev_count
        split_note = (
            f"dev: {config.cv_folds}-fold cross-validation, each of the {len(vectors.queries)} "
            "questions scored once as dev"
        )
    else:
        result = fit_adapter(
            train_vectors, config, dev=dev_vectors, refit_on=vectors, on_epoch=on_epoch
        )
        dev_list = [dev_vectors] if isinstance(dev_vectors, RetrievalVectors) else dev_vectors
        dev_count = sum(len(part.queries) for part in dev_list or [])
        train_count = len(train_vectors.queries)
    split_sizes = {
        "train_queries": train_count,
        "dev_queries": dev_count,
        "cv_folds": config.cv_folds if cross_validate else 0,
    }
    return _Fitted(result, config, split_note, search_table, split_sizes)


def _adapter_record(
    fitted: _Fitted,
    split_by: str,
    dev_fraction: float,
    data_record: dict[str, Any],
    embedding: dict[str, int],
) -> dict[str, Any]:
    """What ``adapter.json`` records about a training run (``train`` and ``train_vectors``)."""
    result, config = fitted.result, fitted.config
    return {
        "training": config.to_dict()
        | {"split_by": split_by, "dev_fraction": dev_fraction, "loss_used": result.loss},
        "data": data_record,
        "decision": result.decision,
        "shipped_identity": result.shipped_identity,
        "best_epoch": result.best_epoch,
        "dev": {
            "metric": config.select_metric,
            "base": result.identity_score,
            "adapted": result.best_score,
        },
        "history": [r.__dict__ for r in result.history],
        "train_seconds": round(result.seconds, 3),
        "train_stages": result.stages,  # seconds per stage (training/trainer.py)
        "dev_split": fitted.split_note,
        "blend": result.blend,
        "search": fitted.search_table,
        # For the report's run facts: the split actually used, and what embedding cost.
        "split": fitted.split_sizes,
        "embedding": embedding,
    }


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
    details: bool = True,
    report: str | Path | None = None,
) -> EvaluationReport:
    """Compare retrieval with the base model and with the adapter on ``data``'s queries.

    The model defaults to the one the adapter was trained for. Differences come with paired
    bootstrap 95% intervals; the verdict line reads the headline metric.

    ``details`` also collects what the HTML report shows per query (exact ranks of the relevant
    passages before and after, hit@k and recall@k curves for k = 1..100, top passages), from the
    same exact search as the metrics. ``report`` writes that HTML report to the given path.

    When ``adapter.json`` records the passages its training pairs covered (adapters trained by
    this version on up to 200,000 such passages), ``coverage`` compares base and adapted
    separately on the test queries about covered passages and on the rest, from the same
    per-query scores: what the adapter learned about its training passages vs what carries over.
    """
    if report is not None:
        check_report_path(report)  # fail before the work, not after it
        details = True
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
        check_fits(adapter, embedder.model_id, embedder.dim)
    if headline not in metrics:
        metrics = (*metrics, headline)
    dataset, store = _as_dataset(data), _as_store(store)
    calls_before, hits_before = store.stats.model_calls, store.stats.texts_from_store
    vectors = embed_dataset(dataset, embedder, store, progress=progress)
    # With details, the same search also gives each relevant passage's exact rank.
    rank_docs = relevant_rows(vectors) if details else None
    base, adapted_queries, adapted, differences = _systems(
        vectors, adapter, metrics, rank_docs, n_resamples, seed
    )
    result = EvaluationReport(
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
        coverage=split_by_coverage(
            adapter.config,
            dataset,
            base.metrics,
            adapted.metrics,
            n_resamples=n_resamples,
            seed=seed,
        ),
    )
    if details:
        result.details = query_details(
            dataset,
            vectors,
            adapted_queries,
            base.ranked,
            adapted.ranked,
            adapter_config=adapter.config,
            data_source=str(data) if not isinstance(data, QADataset) else None,
            settings={"n_resamples": n_resamples, "seed": seed, "metrics": list(metrics)},
            ranks_base=base.doc_ranks,
            ranks_adapted=adapted.doc_ranks,
        )
    if report is not None:
        result.report_path = str(write_report(result, report))
    return result


def _systems(
    vectors: RetrievalVectors,
    adapter: Adapter,
    metrics: tuple[str, ...],
    rank_docs: list[list[int]] | None,
    n_resamples: int,
    seed: int,
) -> tuple[Any, np.ndarray, Any, list[Difference]]:
    """Base and adapted retrieval on the same vectors, and their paired comparison (shared by
    ``evaluate`` and ``evaluate_vectors``): ``(base, adapted queries, adapted, differences)``."""
    base = evaluate_retrieval(
        vectors.queries, vectors.docs, vectors.relevant, metrics=metrics, rank_docs=rank_docs
    )
    adapted_queries = adapter.transform(vectors.queries)
    adapted = evaluate_retrieval(
        adapted_queries, vectors.docs, vectors.relevant, metrics=metrics, rank_docs=rank_docs
    )
    differences = compare(base.metrics, adapted.metrics, n_resamples=n_resamples, seed=seed)
    return base, adapted_queries, adapted, differences


def report(
    data: DatasetLike,
    adapter: Adapter | str | Path,
    out: str | Path = "queryfit-report.html",
    **kwargs: Any,
) -> EvaluationReport:
    """Evaluate ``adapter`` on ``data`` and write the HTML report to ``out``.

    One self-contained file: headline with 95% intervals, hit@k / recall@k curves, rank changes,
    training curves, a sortable query table and the run's facts. Takes the keyword arguments of
    :func:`evaluate`; with a warm store it makes no model calls. The path is in ``report_path``.
    """
    return evaluate(data, adapter, report=out, **kwargs)
