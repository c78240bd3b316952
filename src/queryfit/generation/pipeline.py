"""Documents in, (question, passage) pairs out: read, chunk, generate, filter, save.

:func:`generate_pairs` runs a question generator over passages, ``concurrency`` at a time,
recording each finished passage in a :class:`~queryfit.generation.journal.Journal` as it finishes,
so an interrupted run (Ctrl-C, a crash, ``kill -9``) continues where it stopped when run again.
Then the quality filters run over all raw questions and a :class:`QADataset` is assembled in
passage order, so the result does not depend on concurrency or on how often the run was resumed.

:func:`generate` is the whole stage from a folder of documents, as ``queryfit generate`` runs it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queryfit import _io
from queryfit.console import progress_bar
from queryfit.data import QADataset, save_dataset
from queryfit.errors import GenerationError
from queryfit.generation.config import GenerateConfig
from queryfit.generation.documents import (
    LoadResult,
    Passage,
    chunk_documents,
    default_overlap,
    load_documents,
    token_counter_for,
)
from queryfit.generation.filters import (
    FilterConfig,
    FilterResult,
    apply_text_filters,
    consistency_mask,
)
from queryfit.generation.generators import QuestionGenerator, get_generator
from queryfit.generation.journal import Journal, setting_hash
from queryfit.generation.llm import RequestFailed

#: ``runner(passages, n, seed)``: writes questions elsewhere (the Ray backend), yielding
#: ``(passage, questions or RequestFailed)`` as each finishes.
Outcome = list[str] | RequestFailed
Runner = Callable[[Sequence[Passage], int, int], Iterable[tuple[Passage, Outcome]]]

#: Stop early when this many passages in a row failed before any succeeded: the endpoint or the
#: model is wrong, and trying every passage would only waste time (and money).
FAIL_FAST_AFTER = 8


@dataclass
class GenerationStats:
    """What the generation step did in this run."""

    passages: int = 0  # passages asked about in total
    from_journal: int = 0  # already finished by an earlier run
    generated: int = 0  # finished in this run
    failed: int = 0  # gave up after retries (rerun to try them again)
    failures: dict[str, int] = field(default_factory=dict)  # reason -> passages
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"seconds": round(self.seconds, 3)}


@dataclass
class GenerateResult:
    """Everything ``generate`` did: inputs read, questions made and kept, where they went."""

    dataset: QADataset
    generator: str
    out: Path | None
    journal: Path | None
    passages: list[Passage]
    stats: GenerationStats
    filters: FilterResult
    documents: dict[str, Any] | None = None  # from LoadResult.to_dict()
    chunking: dict[str, Any] | None = None

    @property
    def pairs(self) -> int:
        return self.dataset.num_pairs

    @property
    def pairs_per_minute(self) -> float | None:
        """Kept pairs per minute of generation in this run (None when nothing was generated)."""
        if not self.stats.generated or self.stats.seconds <= 0:
            return None
        share = self.stats.generated / max(1, self.stats.passages)
        return 60.0 * self.pairs * share / self.stats.seconds

    def to_dict(self) -> dict[str, Any]:
        ppm = self.pairs_per_minute
        return {
            "generator": self.generator,
            "out": str(self.out) if self.out else None,
            "journal": str(self.journal) if self.journal else None,
            "queries": len(self.dataset.queries),
            "passages": len(self.dataset.corpus),
            "pairs": self.pairs,
            "pairs_per_minute": round(ppm, 1) if ppm is not None else None,
            "documents": self.documents,
            "chunking": self.chunking,
            "generation": self.stats.to_dict(),
            "filters": self.filters.to_dict(),
        }


def question_id(passage_id: str, question: str) -> str:
    """Stable id of a question about a passage."""
    return "q-" + hashlib.sha256(f"{passage_id}\x00{question}".encode()).hexdigest()[:16]


def default_journal_dir(store: Any = None) -> Path:
    """``generations/`` next to the embedding store (``.queryfit/`` by default)."""
    from queryfit.store import EmbeddingStore, default_store_path

    if isinstance(store, EmbeddingStore):
        base = store.path
    elif store is not None and str(store) != ":memory:":
        base = Path(store)
    else:
        base = default_store_path()
    return Path(base).expanduser().parent / "generations"


class _Status:
    """Retry and rate-limit events from worker threads, for the progress bar."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retries = 0
        self.last = ""
        self.until = 0.0

    def on_wait(self, reason: str, seconds: float) -> None:
        with self.lock:
            self.retries += 1
            self.last = reason
            self.until = max(self.until, time.monotonic() + seconds)

    def text(self) -> str:
        with self.lock:
            if not self.retries:
                return ""
            left = self.until - time.monotonic()
            waiting = f", waiting {left:.0f}s" if left > 0.5 else ""
            return f"[yellow]{self.retries} retries, last: {self.last}{waiting}[/]"


def generate_pairs(
    passages: Sequence[Passage],
    generator: QuestionGenerator | str | None = None,
    *,
    questions_per_passage: int = 2,
    concurrency: int | None = None,
    journal: Journal | str | Path | None = None,
    journal_dir: str | Path | None = None,
    filters: FilterConfig | None = None,
    embedder: Any = None,
    store: Any = None,
    seed: int = 0,
    progress: bool = True,
    on_passage: Callable[[str], None] | None = None,
    runner: Runner | None = None,
) -> GenerateResult:
    """Generate, filter and assemble pairs for ``passages``; resumes from the journal.

    ``journal`` is a path or an open :class:`Journal`; by default it is
    ``<journal_dir>/<setting hash>.jsonl`` with ``journal_dir`` next to the store. ``embedder``
    (and ``store``) are needed only for the consistency filter. ``on_passage(passage_id)`` is
    called after each passage is recorded (tests use it to interrupt a run). ``runner(todo, n,
    seed)`` writes the questions elsewhere (the Ray backend, ``queryfit.distributed``), yielding
    ``(passage, questions or RequestFailed)`` as they finish; they are journaled here.
    """
    if questions_per_passage < 1:
        raise GenerationError(
            f"--questions-per-passage must be at least 1, not {questions_per_passage}"
        )
    if not passages:
        raise GenerationError("no passages to generate questions for; check --docs")
    filters = filters or FilterConfig()
    gen = get_generator(generator) if not hasattr(generator, "generate") else generator
    # A generator's own concurrency is the most it can use (1 for a local model).
    workers = max(1, min(concurrency or gen.concurrency, gen.concurrency))
    setting = gen.setting() | {"questions_per_passage": questions_per_passage, "seed": seed}
    own_journal = not isinstance(journal, Journal)
    if isinstance(journal, Journal):
        jr = journal
    else:
        path = (
            Path(journal)
            if journal is not None
            else Path(journal_dir or default_journal_dir(store)) / f"{setting_hash(setting)}.jsonl"
        )
        jr = Journal(path, setting)
    stats = GenerationStats(passages=len(passages))
    try:
        _run_generation(
            passages,
            gen,
            jr,
            stats,
            questions_per_passage,
            workers,
            seed,
            progress,
            on_passage,
            runner,
        )
    finally:
        if own_journal:
            jr.close()
        close = getattr(gen, "close", None)
        if callable(close):
            close()
    dataset, filtered = assemble(
        passages, jr, filters, embedder=embedder, store=store, progress=progress
    )
    return GenerateResult(
        dataset=dataset,
        generator=gen.name,
        out=None,
        journal=jr.path,
        passages=list(passages),
        stats=stats,
        filters=filtered,
    )


def _run_generation(
    passages: Sequence[Passage],
    gen: QuestionGenerator,
    jr: Journal,
    stats: GenerationStats,
    n: int,
    workers: int,
    seed: int,
    progress: bool,
    on_passage: Callable[[str], None] | None,
    runner: Runner | None = None,
) -> None:
    todo = [p for p in passages if p.id not in jr]
    stats.from_journal = len(passages) - len(todo)
    if not todo:
        return
    if progress:
        _print_estimate(gen, len(todo), workers)
    status = _Status()
    bar = None
    if progress:
        from rich.progress import TextColumn

        bar = progress_bar(TextColumn("{task.fields[status]}"))
    start = time.perf_counter()
    counted = runner if runner is not None else getattr(gen, "client", None)  # whose calls
    chat_stats = getattr(counted, "stats", None)
    before = chat_stats.to_dict() if chat_stats is not None else None
    failures: Counter[str] = Counter()
    consecutive_failures = 0
    pending: dict[Future, Passage] = {}
    queue = iter(todo)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="queryfit-generate")

    def submit_next() -> bool:
        passage = next(queue, None)
        if passage is None:
            return False
        future = executor.submit(gen.generate, passage.text, n, seed=seed, on_wait=status.on_wait)
        pending[future] = passage
        return True

    def finish(passage: Passage, outcome: list[str] | RequestFailed) -> None:
        """Record a finished passage in the journal, or count its failure."""
        nonlocal consecutive_failures
        if isinstance(outcome, RequestFailed):
            failures[outcome.reason] += 1
            stats.failed += 1
            consecutive_failures += 1
            if consecutive_failures >= FAIL_FAST_AFTER and stats.generated == 0:
                raise GenerationError(
                    f"the first {consecutive_failures} passages all failed with "
                    f"{gen.name} ({outcome}); check --llm, --base-url and that the "
                    "server is up, then rerun (finished passages are kept)"
                ) from None
        else:
            consecutive_failures = 0
            meta = {"source": passage.source}
            if passage.page is not None:
                meta["page"] = passage.page
            jr.record(passage.id, outcome, **meta)
            stats.generated += 1
            if on_passage is not None:
                on_passage(passage.id)

    def step(task: Any) -> None:
        """Wait for finished passages, record them, keep the pipeline full."""
        done, _ = wait(list(pending), timeout=0.25, return_when=FIRST_COMPLETED)
        if bar is not None:
            bar.update(task, status=status.text())
        for future in done:
            passage = pending.pop(future)
            try:
                outcome = future.result()
            except RequestFailed as exc:
                outcome = exc
            finish(passage, outcome)
            if bar is not None:
                bar.advance(task)
            submit_next()

    def run_remote(task: Any) -> None:
        """Record what the runner's workers finish, as it arrives."""
        assert runner is not None
        results = runner(todo, n, seed)
        try:
            for passage, outcome in results:
                finish(passage, outcome)
                if bar is not None:
                    bar.advance(task)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()  # stop the workers at once on an error or an interrupt

    try:
        with bar if bar is not None else nullcontext():
            task = None
            if bar is not None:
                label = f"Generating questions ({gen.name})"
                task = bar.add_task(
                    label, total=len(passages), completed=stats.from_journal, status=""
                )
            try:
                if runner is not None:
                    run_remote(task)
                else:
                    for _ in range(workers * 2):  # keep the pipeline full, never queue all
                        if not submit_next():
                            break
                    while pending:
                        step(task)
                if bar is not None:
                    bar.update(task, status=status.text())
            except BaseException:
                if bar is not None:
                    bar.update(task, visible=False)  # an error is one line, not a bar + a line
                raise
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        jr.sync()
        stats.seconds = time.perf_counter() - start
        stats.failures = dict(failures)
        if chat_stats is not None and before is not None:
            after = chat_stats.to_dict()
            stats.requests = after["requests"] - before["requests"]
            stats.retries = after["retries"] - before["retries"]
            stats.rate_limited = after["rate_limited"] - before["rate_limited"]
            stats.waited_seconds = round(after["waited_seconds"] - before["waited_seconds"], 2)
        else:
            stats.requests = stats.generated + stats.failed


def _print_estimate(gen: QuestionGenerator, passages: int, workers: int) -> None:
    """Say up front how long a slow (local) question writer will take, so nobody waits blind."""
    per = getattr(gen, "seconds_per_passage", None)
    if not per:
        return
    minutes = per * passages / workers / 60
    if minutes < 1:
        return
    from rich.console import Console

    Console(stderr=True).print(
        f"{gen.name}: about {minutes:.0f} min for {passages} passages (about {per:.0f} s each, "
        "measured on a 2-core CPU); stop any time: finished passages are kept and a rerun "
        "continues",
        highlight=False,
        soft_wrap=True,
    )


def assemble(
    passages: Sequence[Passage],
    jr: Journal,
    filters: FilterConfig,
    *,
    embedder: Any = None,
    store: Any = None,
    progress: bool = False,
) -> tuple[QADataset, FilterResult]:
    """Filter the journal's questions for ``passages`` and build the dataset (passage order).

    Every passage is in the corpus, with or without questions: the others are the distractors
    that make retrieval realistic.
    """
    filtered = FilterResult()
    items = [
        (p.id, p.text, q)
        for p in passages
        if p.id in jr
        for q in jr.entries[p.id]["questions"]
        if isinstance(q, str)
    ]
    kept = apply_text_filters(items, filters, filtered)
    corpus = {p.id: p.text for p in passages}
    if filters.consistency_k is not None and kept:
        kept = _consistency(
            kept, corpus, filters.consistency_k, embedder, store, filtered, progress
        )
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for pid, question in kept:
        qid = question_id(pid, question)
        queries[qid] = question
        relevant[qid] = [pid]
    filtered.kept = len(queries)
    return QADataset(queries=queries, corpus=corpus, relevant_docs=relevant), filtered


def _consistency(
    kept: list[tuple[str, str]],
    corpus: dict[str, str],
    k: int,
    embedder: Any,
    store: Any,
    filtered: FilterResult,
    progress: bool,
) -> list[tuple[str, str]]:
    if k < 1:
        raise GenerationError(f"--consistency-k must be at least 1, not {k}")
    from queryfit.embedders import get_embedder
    from queryfit.store import EmbeddingStore

    embedder = get_embedder(embedder)
    own_store = not isinstance(store, EmbeddingStore)
    db = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    try:
        ids = list(corpus)
        row_of = {pid: i for i, pid in enumerate(ids)}
        docs = db.embed(embedder, [corpus[i] for i in ids], "document", progress=progress)
        queries = db.embed(embedder, [q for _, q in kept], "query", progress=progress)
    finally:
        if own_store:
            db.close()
    mask = consistency_mask(queries, docs, [row_of[pid] for pid, _ in kept], k)
    out = []
    for item, ok in zip(kept, mask, strict=True):
        if ok:
            out.append(item)
        else:
            filtered.drop("inconsistent", item[1])
    return out


def generate(
    docs: str | Path | Sequence[Passage] | None = None,
    *,
    out: str | Path | None = None,
    config: GenerateConfig | None = None,
    model: Any = None,
    store: Any = None,
    journal: str | Path | None = None,
    passages_out: str | Path | None = None,
    progress: bool = True,
    backend: Any = "local",
    index: Any = None,
    sample: int | None = None,
    **settings: Any,
) -> GenerateResult:
    """Turn a folder of documents into a QA dataset of generated (question, passage) pairs.

    Reads ``docs`` (a folder, one file, or already-chunked passages), chunks it to the token
    window of the embedding ``model`` (default: the bundled all-MiniLM-L6-v2; its tokenizer only,
    the weights are loaded only for the consistency filter), asks the question writer for
    questions about each passage, filters them, and saves the dataset to ``out`` (LlamaIndex
    JSON, ``.jsonl`` or a BEIR folder, by its name) when given.

    ``config`` is a :class:`~queryfit.generation.config.GenerateConfig`; keyword ``settings``
    change its fields (``llm="openai:gpt-4o-mini"``, ``questions_per_passage=3``...). Rerunning
    the same call resumes: passages already in the journal are not asked again.

    ``backend="ray"`` (or a ``queryfit.distributed.RayBackend``) writes the questions on Ray
    workers, each building the generator once (``concurrency`` requests in flight per worker;
    keys from the workers' environment, so no ``api_key``); this process keeps the journal, so
    the result is the local backend's and reruns resume the same way.

    ``index`` instead of ``docs`` (a URI such as ``lancedb:PATH?table=NAME``, or passages in
    Python; see :func:`queryfit.sources.open_source`) asks about the index's own passages, with
    their own ids and no re-chunking; ``sample`` draws that many of them at random (seeded).

    Example::

        result = generate("./my-docs", out="pairs.json", llm="openai:gpt-4o-mini")
        print(result.filters.summary())
    """
    from queryfit.distributed.backend import resolve_backend
    from queryfit.embedders import get_embedder

    config = GenerateConfig.of(config, **settings)
    config.validate()
    _check_input(docs, index, sample, config.filters)
    gen = config.generator()
    runner = None
    ray_backend = resolve_backend(backend)
    if ray_backend is not None:
        from queryfit.generation.ray_pool import ray_generation_runner

        runner = ray_generation_runner(ray_backend, config.llm, gen, config.generator_options())
    loaded: LoadResult | None = None
    chunking: dict[str, Any] | None = None
    read_index: dict[str, Any] | None = None
    if index is not None:  # the index's own passages and ids (queryfit.generation.index_passages)
        from queryfit.generation.index_passages import index_passages

        passages, read_index = index_passages(
            index, sample=sample, seed=config.seed, progress=progress
        )
        embedder = model
    elif isinstance(docs, str | Path):
        loaded = load_documents(docs)
        embedder = get_embedder(model)
        counter = token_counter_for(embedder, config.chunk_tokens)
        overlap = config.overlap_tokens
        passages = chunk_documents(loaded.documents, overlap_tokens=overlap, counter=counter)
        chunking = {
            "tokenizer": counter.name,
            "max_tokens": counter.max_tokens,
            "overlap_tokens": overlap
            if overlap is not None
            else default_overlap(counter.max_tokens),
            "passages": len(passages),
        }
    else:
        passages = list(docs)
        embedder = model
    result = generate_pairs(
        passages,
        gen,
        questions_per_passage=config.questions_per_passage,
        concurrency=config.concurrency,
        journal=journal,
        filters=config.filters,
        embedder=embedder,
        store=store,
        seed=config.seed,
        progress=progress,
        runner=runner,
    )
    result.documents = loaded.to_dict() if loaded is not None else read_index
    result.chunking = chunking
    if not result.dataset.queries:
        failed = result.stats.failed
        why = (
            f"all {failed} passages failed ({_reasons(result.stats.failures)}); rerun to retry"
            if failed and not result.stats.generated and not result.stats.from_journal
            else f"no question survived the filters ({result.filters.summary()}); loosen them "
            "or use a stronger --llm"
        )
        raise GenerationError(
            f"no pairs generated from "
            f"{docs if loaded else read_index['index'] if read_index else 'the passages'}: {why}"
        )
    if out is not None:
        save_dataset(result.dataset, out)
        result.out = Path(out)
    if passages_out is not None:
        write_passages(result.passages, passages_out)
    return result


def _check_input(docs: Any, index: Any, sample: int | None, filters: FilterConfig | None) -> None:
    """Documents or an index, one of them; the settings that only apply to an index."""
    if docs is not None and index is not None:
        raise GenerationError("pass --docs or --index, not both")
    if docs is None and index is None:
        raise GenerationError(
            "nothing to ask about: pass --docs (a folder of documents) or --index (your vector "
            "store, e.g. lancedb:PATH?table=NAME)"
        )
    if sample is not None and index is None:
        raise GenerationError("--sample picks passages of an --index; with --docs leave it out")
    if index is not None and filters is not None and filters.consistency_k is not None:
        raise GenerationError(
            "--consistency-k would embed every passage again; with --index leave it out"
        )


def _reasons(failures: dict[str, int]) -> str:
    return ", ".join(
        f"{reason} x{n}" for reason, n in sorted(failures.items(), key=lambda x: -x[1])
    )


def write_passages(passages: Sequence[Passage], path: str | Path) -> Path:
    """Write passages with their source and page as JSONL (``id``, ``text``, ``source``...)."""
    import json

    with _io.atomic_file(path) as fh:
        for p in passages:
            fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    return Path(path)
