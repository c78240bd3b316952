"""The Python API; every CLI verb is a thin shell over the function of the same name here.

``generate`` turns documents into (question, passage) pairs, ``embed`` warms the store, ``train``
fits and saves an adapter, ``evaluate`` compares base and adapted retrieval with confidence
intervals, ``report`` writes that comparison as an HTML report. ``run`` (all of it in one call)
is :func:`queryfit.workflow.run`. Each verb only wires stages; the policy lives in the stages.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.adapters import Adapter, check_fits, load_adapter, save_adapter
from queryfit.adapters.model import base_embedder
from queryfit.adapters.record import BaseModel, DataFacts, EmbeddingCost
from queryfit.data import QADataset, load_dataset
from queryfit.distributed.backend import RayBackend, resolve_backend
from queryfit.embedders import Embedder, get_embedder
from queryfit.errors import AdapterError, DatasetError, EvaluationError, TrainingError
from queryfit.evaluation import (
    DEFAULT_METRICS,
    Difference,
    compare,
    evaluate_retrieval,
    required_depth,
)
from queryfit.evaluation.compare import check_bootstrap_settings
from queryfit.evaluation.coverage import (
    CoverageBreakdown,
    covered_fingerprints,
    query_fingerprints,
    split_by_coverage,
    training_overlap,
)
from queryfit.generation.pipeline import generate  # noqa: F401  (the API's generate)
from queryfit.report.details import QueryDetails, query_details, relevant_rows, top_rows
from queryfit.report.html import check_report_path, write_report
from queryfit.store import EmbeddingStore
from queryfit.training.config import TrainConfig
from queryfit.vectors import RetrievalVectors, embed_dataset

MIN_TRAIN_QUERIES = 20
SMALL_DATA_WARNING = 200
HEADLINE_METRIC = "ndcg@10"

DatasetLike = QADataset | str | Path
StoreLike = EmbeddingStore | str | Path | None


@dataclass
class EmbedResult:
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
class TrainResult:
    """What ``train`` did: the adapter, where it went, and the evidence behind shipping it.

    The facts are the adapter's own record (``adapter.training``); this adds where it was saved.
    """

    adapter: Adapter
    out: Path | None

    @classmethod
    def of(cls, adapter: Adapter, out: str | Path | None) -> TrainResult:
        return cls(adapter, Path(out) if out is not None else None)

    @property
    def facts(self) -> Any:
        return self.adapter.training

    @property
    def decision(self) -> str:
        """The dev decision and how dev was held out, as one sentence."""
        facts = self.facts
        note = facts.split.description
        return facts.decision + (f"; {note}" if note else "")

    @property
    def shipped_identity(self) -> bool:
        return self.facts.shipped_identity

    @property
    def best_epoch(self) -> int:
        return self.facts.best_epoch

    @property
    def seconds(self) -> float:
        return self.facts.seconds or 0.0

    @property
    def model_calls(self) -> int:
        return self.facts.embedding.model_calls

    @property
    def texts_from_store(self) -> int:
        return self.facts.embedding.texts_from_store

    @property
    def texts_embedded(self) -> int:
        return self.facts.embedding.texts_embedded

    @property
    def passage_vectors_from_index(self) -> int:
        return self.facts.embedding.passage_vectors_from_index

    @property
    def index(self) -> dict[str, Any] | None:
        """The index read (trained with ``index=``) and its model check; else ``None``."""
        return self.adapter.data.index if self.adapter.data else None

    def to_dict(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "out": str(self.out) if self.out else None,
            "adapter": dict(self.adapter.describe()),
            "decision": self.decision,
            "shipped_identity": facts.shipped_identity,
            "best_epoch": facts.best_epoch,
            "dev_identity": facts.dev.base,
            "dev_best": facts.dev.adapted,
            "history": facts.history,
            "seconds": facts.seconds,
            "model_calls": facts.embedding.model_calls,
            "texts_from_store": facts.embedding.texts_from_store,
            "texts_embedded": facts.embedding.texts_embedded,
            "passage_vectors_from_index": facts.embedding.passage_vectors_from_index,
            "index": self.index,
            "train_queries": facts.split.train_queries,
            "dev_queries": facts.split.dev_queries,
            "cv_folds": facts.split.cv_folds,
        }


@dataclass
class EvaluationResult:
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
    texts_embedded: int = 0
    passage_vectors_from_index: int = 0  # evaluated through --index: passages read, not embedded
    index: dict[str, Any] | None = None  # the index read, and its model check
    per_query: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    # Per-query ranks, hit@k / recall@k curves, texts and training facts for the HTML report.
    details: QueryDetails | None = field(default=None, repr=False)
    report_path: str | None = None
    # Covered vs uncovered test queries, when adapter.json records the training passages.
    coverage: CoverageBreakdown | None = field(default=None, repr=False)
    # Test queries that were training queries (None: the adapter does not record them).
    training_overlap: int | None = None

    @property
    def verdict(self) -> str:
        """One line on the headline metric: ``+2.1 ndcg@10, 95% CI [+0.8, +3.4]: significant``."""
        return self._headline().verdict()

    def _headline(self) -> Difference:
        return next(d for d in self.differences if d.metric == self.headline)

    @property
    def overlap_warning(self) -> str | None:
        """Why these figures are not held-out, when test queries were training queries."""
        if not self.training_overlap:
            return None
        share = self.training_overlap / max(1, self.queries)
        return (
            f"{self.training_overlap} of the {self.queries} test queries ({share:.0%}) are "
            "questions the adapter was trained on: these figures measure memory, not new "
            "questions; evaluate on held-out questions (queryfit run holds some out for you)"
        )

    @property
    def deploy(self) -> bool:
        """Whether the evidence says to use the adapter: a significant gain on held-out queries."""
        head = self._headline()
        return head.low > 0 and self.adapter.get("type") != "identity" and not self.training_overlap

    @property
    def advice(self) -> str:
        """One plain sentence: deploy the adapter, or keep the base model, and why."""
        head = self._headline()
        if self.adapter.get("type") == "identity":
            return (
                "keep the base model: training shipped the identity adapter (no gain beyond the "
                "noise on its dev split), so there is nothing to deploy"
            )
        if self.training_overlap:
            return "no advice: the test queries overlap the training queries (see the warning)"
        if self.deploy:
            return f"deploy the adapter: {self.headline} gains beyond the noise on these queries"
        if head.high < 0:
            return f"keep the base model: the adapter makes {self.headline} worse on these queries"
        if head.delta <= 0:
            return f"keep the base model: the adapter does not improve {self.headline} here"
        return (
            f"keep the base model for now: the {self.headline} gain is within the noise; "
            "evaluate on more held-out queries before deploying"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("per_query", "differences", "details", "coverage")
        }
        out["differences"] = [d.__dict__ | {"significant": d.significant} for d in self.differences]
        out["coverage"] = self.coverage.to_dict() if self.coverage is not None else None
        out["verdict"] = self.verdict
        out["deploy"] = self.deploy
        out["advice"] = self.advice
        out["overlap_warning"] = self.overlap_warning
        return out


def _as_dataset(data: DatasetLike, split: str | None = None) -> QADataset:
    """``split`` picks ``qrels/<split>.tsv`` of a BEIR folder (see :func:`load_dataset`)."""
    if not isinstance(data, QADataset):
        return load_dataset(data, split=split)
    if split is not None:
        raise DatasetError(
            f"split={split!r} picks the qrels file of a BEIR folder; data is already a "
            "QADataset. Fix: drop split=."
        )
    return data


def _as_store(store: StoreLike) -> EmbeddingStore:
    return store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)


class _Cost:
    """What the store's model did from now on: calls made, texts embedded and served."""

    def __init__(self, store: EmbeddingStore) -> None:
        self.stats = store.stats
        self.start = asdict(store.stats)

    def spent(self, read: Any = None) -> dict[str, int]:
        """The counters since the start, plus an index read's model check (``read``)."""
        now = asdict(self.stats)
        return {
            "model_calls": now["model_calls"]
            - self.start["model_calls"]
            + (read.check_calls if read else 0),
            "texts_from_store": now["texts_from_store"] - self.start["texts_from_store"],
            "texts_embedded": now["texts_embedded"]
            - self.start["texts_embedded"]
            + (read.check_texts if read else 0),
            "passage_vectors_from_index": read.passage_vectors_from_index if read else 0,
        }


def _vectors(
    dataset: QADataset,
    embedder: Embedder,
    store: EmbeddingStore,
    index: Any,
    *,
    check_passages: int,
    force: bool,
    seed: int,
    progress: bool,
) -> tuple[RetrievalVectors, Any]:
    """The dataset's vectors: every text through the store, or with ``index`` the passage
    vectors read from the user's index (never embedded) and only the questions embedded.

    Returns the vectors and the index read (``None`` without an index).
    """
    if index is None:
        return embed_dataset(dataset, embedder, store, progress=progress), None
    from queryfit.sources.index import index_vectors

    read = index_vectors(
        dataset,
        index,
        embedder,
        store,
        check_passages=check_passages,
        force=force,
        seed=seed,
        progress=progress,
    )
    return read.vectors, read


def _dim_known(embedder: Embedder) -> bool:
    """Whether the model's vector size is known without a request (local models: loading)."""
    return bool(getattr(embedder, "dim_known", True))


def check_size(n: int) -> None:
    """Refuse fewer than MIN_TRAIN_QUERIES training queries; warn under SMALL_DATA_WARNING."""
    if n < MIN_TRAIN_QUERIES:
        raise TrainingError(
            f"only {n} queries: at least {MIN_TRAIN_QUERIES} are needed to train and check an "
            "adapter; generate or import more pairs"
        )
    if n < SMALL_DATA_WARNING:
        warnings.warn(
            f"{n} queries is little data: expect a small or no gain (a few hundred pairs or "
            "more is typical)",
            stacklevel=3,
        )


def base_model_of(embedder: Embedder) -> BaseModel:
    """What an adapter records of its base model: id, prefixes, and an API model's endpoint and
    requested dimensions (never its key)."""
    return BaseModel(
        id=embedder.model_id,
        query_prefix=embedder.query_prefix,
        document_prefix=embedder.document_prefix,
        endpoint=getattr(embedder, "recorded_endpoint", None),
        dimensions=getattr(embedder, "dimensions", None),
    )


def data_facts(dataset: QADataset, source: DatasetLike) -> DataFacts:
    """What an adapter records of its training data: counts, fingerprints, never text."""
    return DataFacts(
        fingerprint=dataset.fingerprint(),
        source=None if isinstance(source, QADataset) else str(source),
        queries=len(dataset.queries),
        passages=len(dataset.corpus),
        covered_passages=covered_fingerprints(dataset),
        query_fingerprints=query_fingerprints(dataset),
    )


def embed(
    data: DatasetLike,
    *,
    model: str | Embedder | None = None,
    store: StoreLike = None,
    progress: bool = True,
    model_options: dict[str, Any] | None = None,
    backend: str | RayBackend = "local",
    split: str | None = None,
) -> EmbedResult:
    """Embed every query and passage of ``data`` into the store, so later runs make no calls.

    ``model_options`` go to :func:`get_embedder` with ``model`` (``base_url``, ``dimensions``,
    ``batch_size``, prefixes...). ``backend="ray"`` (or a ``RayBackend`` with an address and a
    pool size) embeds the texts the store lacks on Ray workers, each loading the model once from
    ``model`` (a spec string) and ``model_options`` (no ``api_key``: workers read their own
    environment); this process keeps the store and writes each batch as it arrives. ``split``
    picks the qrels split of a BEIR folder (default: ``test``, else the only one).
    """
    dataset, store = _as_dataset(data, split), _as_store(store)
    ray_backend = resolve_backend(backend)
    if ray_backend is not None:
        from queryfit.distributed.embed import ray_embedding

        with ray_embedding(ray_backend, model, model_options) as (remote, runner):
            return _embed(dataset, remote, store, progress, runner)
    embedder = get_embedder(model, **(model_options or {}))
    return _embed(dataset, embedder, store, progress, None)


def _embed(
    dataset: QADataset, embedder: Any, store: EmbeddingStore, progress: bool, runner: Any
) -> EmbedResult:
    cost = _Cost(store)
    embed_dataset(dataset, embedder, store, progress=progress, runner=runner)
    spent = cost.spent()
    return EmbedResult(
        embedder.model_id,
        len(dataset.queries),
        len(dataset.corpus),
        spent["model_calls"],
        spent["texts_embedded"],
        spent["texts_from_store"],
        str(store.path),
    )


def train(
    data: DatasetLike,
    *,
    model: str | Embedder | None = None,
    out: str | Path | None = None,
    config: TrainConfig | None = None,
    store: StoreLike = None,
    dev_fraction: float = 0.2,
    split_by: str = "coverage",
    progress: bool = True,
    on_epoch: Any = None,
    search: bool = False,
    split: str | None = None,
    index: Any = None,
    force: bool = False,
    check_passages: int = 8,
) -> TrainResult:
    """Fit a query adapter for ``model`` on ``data`` and save it to ``out``.

    Held-out dev questions (3-fold cross-validation on up to 5,000 queries, else a
    ``dev_fraction`` split) pick the epoch count and the blend toward the base, and gate
    shipping: if nothing beats the base model on dev by more than the noise, the identity adapter
    is saved and the result says so. ``split_by="coverage"`` (default) holds out new questions
    over passages that keep a training question (the in-corpus use) when the data has them, else
    plain held-out questions; ``"query"`` and ``"passage"`` use :func:`split_dataset`.
    ``search=True`` first tries a small grid of settings on the dev split. The policy is
    :func:`queryfit.training.plan.train_adapter`. ``split`` picks the qrels split of a BEIR
    folder.

    ``index`` (a URI such as ``lancedb:PATH?table=NAME``, or passages in Python; see
    :func:`queryfit.sources.open_source`) reads the passage vectors from the user's index instead
    of embedding them: only the questions are embedded. ``check_passages`` of its passages are
    first embedded and compared with the stored vectors; a mismatch refuses unless ``force``.
    """
    from queryfit.training.plan import check_settings, train_adapter  # torch: training only

    config = config or TrainConfig()
    check_settings(config, split_by, dev_fraction)  # fail before minutes of embedding
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise AdapterError(f"--out {out} is a file; an adapter is a folder: pass a folder path")
    dataset = _as_dataset(data, split)  # a bad file fails before the model loads
    embedder, store = get_embedder(model), _as_store(store)
    check_size(len(dataset.queries))
    cost = _Cost(store)
    vectors, read = _vectors(
        dataset,
        embedder,
        store,
        index,
        check_passages=check_passages,
        force=force,
        seed=config.seed,
        progress=progress,
    )
    trained = train_adapter(
        vectors,
        config,
        dev_fraction=dev_fraction,
        split_by=split_by,
        search=search,
        dataset=dataset,
        on_epoch=on_epoch,
    )
    trained.facts.embedding = EmbeddingCost(**cost.spent(read))
    adapter = trained.adapter
    adapter.base_model = base_model_of(embedder)
    adapter.training = trained.facts
    adapter.data = data_facts(dataset, data)
    if read is not None:
        adapter.data.index = read.record()
    if out is not None:
        save_adapter(adapter, out)
    return TrainResult.of(adapter, out)


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
    split: str | None = None,
    index: Any = None,
    check_passages: int = 8,
    data_label: str | None = None,
    sources: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """Compare retrieval with the base model and with the adapter on ``data``'s queries.

    The model defaults to the one the adapter was trained for. Differences come with paired
    bootstrap 95% intervals; the verdict line reads the headline metric.

    ``details`` also collects what the HTML report shows per query (exact ranks of the relevant
    passages before and after, hit@k and recall@k curves for k = 1..100, top passages), from the
    same exact search as the metrics. ``report`` writes that HTML report to the given path.
    ``data_label`` says in words what ``data`` is (the report shows it beside the file name) and
    ``sources`` maps passage ids to where each came from (e.g. ``"manual.pdf, page 3"``), for a
    dataset alone maps ids to text only.

    ``index`` reads the passage vectors from the user's index, as :func:`train` does (``force``
    also lets a failed model check pass, with a warning); ``passages`` then counts every passage
    searched, the index's distractors included.

    When ``adapter.json`` records the passages its training pairs covered (adapters trained by
    this version on up to 200,000 such passages), ``coverage`` compares base and adapted
    separately on the test queries about covered passages and on the rest, from the same
    per-query scores: what the adapter learned about its training passages vs what carries over.

    ``split`` picks the qrels split of a BEIR folder (default: ``test``, else the only one).
    """
    if report is not None:
        check_report_path(report)  # fail before the work, not after it
        details = True
    metrics = _checked_metrics(metrics, headline, n_resamples)
    if not isinstance(adapter, Adapter):
        adapter = load_adapter(adapter)
    dataset = _as_dataset(data, split)
    if len(dataset.queries) < 2:
        raise EvaluationError(
            f"{len(dataset.queries)} test query: an evaluation needs at least 2 to put an interval "
            "on the difference (a few hundred give a useful one); add held-out questions"
        )
    embedder = base_embedder(adapter, model)
    if not force:  # the size is checked once known: asking an API model would cost a request
        check_fits(adapter, embedder.model_id, embedder.dim if _dim_known(embedder) else None)
    overlap = training_overlap(adapter.data, dataset)
    store = _as_store(store)
    cost = _Cost(store)
    vectors, read = _vectors(
        dataset,
        embedder,
        store,
        index,
        check_passages=check_passages,
        force=force,
        seed=seed,
        progress=progress,
    )
    if not force:
        check_fits(adapter, embedder.model_id, vectors.dim)
    # With details, the same search also gives each relevant passage's exact rank.
    rank_docs = relevant_rows(vectors) if details else None
    result, base, adapted, adapted_queries = _compare_systems(
        vectors,
        adapter,
        metrics=metrics,
        headline=headline,
        rank_docs=rank_docs,
        n_resamples=n_resamples,
        seed=seed,
        model_id=embedder.model_id,
        **cost.spent(read),
        index=read.record() if read is not None else None,
        training_overlap=overlap,
    )
    result.coverage = split_by_coverage(
        adapter.data, dataset, base.metrics, adapted.metrics, n_resamples=n_resamples, seed=seed
    )
    if result.overlap_warning:
        warnings.warn(result.overlap_warning, stacklevel=2)
    if details:
        result.details = query_details(
            dataset,
            vectors,
            adapted_queries,
            base.ranked,
            adapted.ranked,
            adapter=adapter,
            data_source=str(data) if not isinstance(data, QADataset) else None,
            data_label=data_label,
            sources=sources,
            settings={"n_resamples": n_resamples, "seed": seed, "metrics": list(metrics)},
            ranks_base=base.doc_ranks,
            ranks_adapted=adapted.doc_ranks,
            # Index passages outside the dataset that reached a top list: their texts, read again.
            texts=read.texts_of(dataset, top_rows(base.ranked, adapted.ranked)) if read else None,
        )
    if report is not None:
        result.report_path = str(write_report(result, report))
    return result


def _checked_metrics(metrics: tuple[str, ...], headline: str, n_resamples: int) -> tuple[str, ...]:
    """The metrics to compute (the headline among them), every name and setting checked before
    any work is done."""
    check_bootstrap_settings(n_resamples, 0.95)
    if headline not in metrics:
        metrics = (*metrics, headline)
    required_depth(metrics)  # every metric name parses
    return metrics


def _compare_systems(
    vectors: RetrievalVectors,
    adapter: Adapter,
    *,
    metrics: tuple[str, ...],
    headline: str,
    rank_docs: list[list[int]] | None,
    n_resamples: int,
    seed: int,
    model_id: str,
    **facts: Any,
) -> tuple[EvaluationResult, Any, Any, np.ndarray]:
    """Base and adapted retrieval on the same vectors and their paired comparison, shared by
    ``evaluate`` and ``evaluate_vectors``: ``(result, base, adapted, adapted queries)``;
    ``facts`` are the result's other fields (cost, index, overlap)."""
    base = evaluate_retrieval(
        vectors.queries, vectors.docs, vectors.relevant, metrics=metrics, rank_docs=rank_docs
    )
    adapted_queries = adapter.transform(vectors.queries)
    adapted = evaluate_retrieval(
        adapted_queries, vectors.docs, vectors.relevant, metrics=metrics, rank_docs=rank_docs
    )
    result = EvaluationResult(
        model_id=model_id,
        adapter=dict(adapter.describe()),
        queries=len(vectors.queries),
        passages=len(vectors.docs),
        base=base.summary(),
        adapted=adapted.summary(),
        differences=compare(base.metrics, adapted.metrics, n_resamples=n_resamples, seed=seed),
        headline=headline,
        per_query={"base": base.metrics, "adapted": adapted.metrics},
        **{"model_calls": 0, "texts_from_store": 0} | facts,
    )
    return result, base, adapted, adapted_queries


def report(
    data: DatasetLike,
    adapter: Adapter | str | Path,
    out: str | Path = "queryfit-report.html",
    **kwargs: Any,
) -> EvaluationResult:
    """Evaluate ``adapter`` on ``data`` and write the HTML report to ``out``.

    One self-contained file: headline with 95% intervals, hit@k / recall@k curves, rank changes,
    training curves, a sortable query table and the run's facts. Takes the keyword arguments of
    :func:`evaluate`; with a warm store it makes no model calls. The path is in ``report_path``.
    """
    return evaluate(data, adapter, report=out, **kwargs)


def search(index: Any, adapter: Adapter | str | Path, question: str, **kwargs: Any) -> Any:
    """Top passages of ``index`` for ``question`` without and with ``adapter``, side by side.

    Uses the index's own search (LanceDB, Chroma, Qdrant, FAISS) with the base and the adapted
    query vector; see :func:`queryfit.sources.search.search` for the keyword arguments.
    """
    from queryfit.sources.search import search as search_index

    return search_index(index, adapter, question, **kwargs)
