"""``run``: documents to a trained, evaluated adapter in one call.

generate (resumable, journaled) -> leak-free train/test split -> train (dev-gated) -> evaluate on
the held-out test questions -> an adapter folder with the data, a short Markdown report and the
run's facts as JSON. Each stage reuses what earlier runs left: the generation journal answers
for finished passages, the embedding store for embedded texts, and training is skipped when the
adapter folder already holds an adapter trained on exactly the same data and settings.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queryfit import _io, api
from queryfit.api import EvaluationResult, TrainResult
from queryfit.data import QADataset, save_dataset, split_dataset
from queryfit.embedders import get_embedder
from queryfit.errors import GenerationError
from queryfit.generation.config import GenerateConfig
from queryfit.generation.documents import Passage
from queryfit.generation.pipeline import GenerateResult, generate, write_passages
from queryfit.store import EmbeddingStore
from queryfit.training.config import TrainConfig
from queryfit.training.plan import check_settings

RUN_FILE = "run.json"
REPORT_FILE = "report.md"
DATA_DIR = "data"
DEFAULT_SPLIT = [0.2, "coverage", False]  # training's dev_fraction, split_by, search


@dataclass
class RunResult:
    """The three stages' results and where everything was written."""

    out: Path
    generation: GenerateResult
    train: TrainResult | None  # None when the adapter in the folder was reused
    evaluation: EvaluationResult
    train_reused: bool
    test_queries: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "generation": self.generation.to_dict(),
            "train": self.train.to_dict() if self.train is not None else None,
            "train_reused": self.train_reused,
            "evaluation": self.evaluation.to_dict(),
            "test_queries": self.test_queries,
            "verdict": self.evaluation.verdict,
            "advice": self.evaluation.advice,
            "report": str(self.out / REPORT_FILE),
            "seconds": round(self.seconds, 2),
        }


def _file_sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def run(
    docs: str | Path | None = None,
    out: str | Path | None = None,
    *,
    model: Any = None,
    store: Any = None,
    generation: GenerateConfig | None = None,
    training: TrainConfig | None = None,
    dev_fraction: float = 0.2,
    split_by: str = "coverage",
    search: bool = False,
    test_fraction: float = 0.2,
    report: str | Path | None = None,
    progress: bool = True,
    backend: Any = "local",
    index: Any = None,
    sample: int | None = None,
    force: bool = False,
    **settings: Any,
) -> RunResult:
    """Generate pairs from ``docs``, split, train an adapter into ``out``, and evaluate it.

    ``out`` becomes the adapter folder (``adapter.json`` + weights), with ``data/`` (pairs,
    train and test splits, passages with their sources), ``report.md`` and ``run.json``. The test
    split is ``test_fraction`` of the questions, held out leak-free (near-duplicate questions stay
    on one side) and never seen by training, which holds out its own dev split on top.
    ``generation`` (a :class:`GenerateConfig`, changed by keyword ``settings`` such as
    ``llm=``) and ``training`` (a :class:`TrainConfig`) are the settings of
    :func:`queryfit.generate` and :func:`queryfit.train` (with ``dev_fraction``, ``split_by``
    and ``search``, training's own dev split). The HTML report goes to ``report``
    (default ``out/report.html``).

    With ``index`` (e.g. ``lancedb:PATH?table=NAME``) instead of ``docs``, questions are
    written for the index's own passages (``sample`` of them at random, or all) and training and
    evaluation read the passage vectors from the index: only the questions are embedded.

    Example::

        result = run("./my-docs", "adapter/", llm="openai:gpt-4o-mini")
        result = run(out="adapter/", index="lancedb:./lance?table=docs")
        print(result.evaluation.verdict)
    """
    started = time.perf_counter()
    if out is None:
        raise GenerationError("run needs out: the folder for the adapter and report")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenerationError(f"--out {out} is a file; pass a folder for the adapter and report")
    if not 0.0 < test_fraction < 1.0:
        raise GenerationError(f"--test-fraction must be between 0 and 1, not {test_fraction}")
    generation = GenerateConfig.of(generation, **settings)
    generation.validate()
    training = training or TrainConfig(seed=generation.seed)
    check_settings(training, split_by, dev_fraction)
    db = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    try:
        embedder = get_embedder(model)
        gen = generate(
            docs,
            config=generation,
            model=embedder,
            store=db,
            progress=progress,
            backend=backend,
            index=index,
            sample=sample,
        )
        dataset = gen.dataset
        least = int(api.MIN_TRAIN_QUERIES / (1 - test_fraction)) + 1
        if len(dataset.queries) < least:
            raise GenerationError(
                f"only {len(dataset.queries)} questions from {docs or gen.documents['index']}: "
                f"too few to train and test an adapter (about {least} at least, a few hundred "
                "for a real gain); add documents or raise --questions-per-passage"
            )
        train_part, test_part = split_dataset(
            dataset, dev_fraction=test_fraction, by="query", seed=generation.seed
        )
        data_dir = out / DATA_DIR
        save_dataset(dataset, data_dir / "pairs.json")
        save_dataset(train_part, data_dir / "train.json")
        save_dataset(test_part, data_dir / "test.json")
        write_passages(gen.passages, data_dir / "passages.jsonl")

        stamp = _train_stamp(
            train_part, training, embedder.model_id, [dev_fraction, split_by, search], gen.documents
        )
        previous = _read_run(out)
        reused = (
            previous.get("train_stamp") == stamp
            and previous.get("adapter_sha") is not None
            and previous.get("adapter_sha") == _file_sha(out / "adapter.safetensors")
        )
        trained = None
        if not reused:
            trained = api.train(
                data_dir / "train.json",  # the file: adapter.json records where its data is
                model=embedder,
                out=out,
                config=training,
                store=db,
                dev_fraction=dev_fraction,
                split_by=split_by,
                search=search,
                progress=progress,
                index=index,
                force=force,
            )
        evaluation = api.evaluate(
            data_dir / "test.json",  # the file, so the report names what a rerun would read
            out,
            model=embedder,
            store=db,
            progress=progress,
            report=report if report is not None else out / "report.html",
            data_label=f"held-out test split of {docs or index} "
            f"({len(test_part.queries)} questions)",
            sources=passage_sources(gen.passages),
            index=index,
            force=force,
        )
    finally:
        if db is not store:
            db.close()
    result = RunResult(
        out=out,
        generation=gen,
        train=trained,
        evaluation=evaluation,
        train_reused=reused,
        test_queries=len(test_part.queries),
        seconds=time.perf_counter() - started,
    )
    facts = result.to_dict() | {
        "train_stamp": stamp,
        "adapter_sha": _file_sha(out / "adapter.safetensors"),
    }
    if reused:
        facts["train"] = previous.get("train")
    _io.write_json(out / RUN_FILE, facts, default=str)
    _io.write_text(out / REPORT_FILE, _markdown(result, previous if reused else None))
    return result


def passage_sources(passages: Sequence[Passage]) -> dict[str, str]:
    """Where each passage came from, as the report names it: ``guide.pdf, page 3``."""
    return {p.id: p.source if p.page is None else f"{p.source}, page {p.page}" for p in passages}


def _train_stamp(
    train_part: QADataset,
    config: TrainConfig,
    model_id: str,
    split: list[Any],
    documents: dict[str, Any] | None = None,
) -> str:
    stamped: dict[str, Any] = {
        "data": train_part.fingerprint(),
        "config": config.to_dict(),
        "model": model_id,
    }
    if split != DEFAULT_SPLIT:  # folders trained with the default split keep their stamp
        stamped["split"] = split
    if documents and "index" in documents:  # trained on an index's vectors: the index counts
        stamped["index"] = [documents["index"], documents.get("passages_in_index")]
    blob = json.dumps(stamped, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_run(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / RUN_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _markdown(result: RunResult, previous: dict[str, Any] | None) -> str:
    gen, ev = result.generation, result.evaluation
    stats, docs = gen.stats, gen.documents or {}
    skipped = docs.get("skipped") or []
    read = (
        f"- index: `{docs['index']}`, {docs.get('passages_in_index')} passages (vectors read, "
        f"not embedded), questions for {docs.get('passages')} of them"
        if "index" in docs
        else f"- documents: {docs.get('files_read', '?')} files read from `{docs.get('root', '?')}`"
        + (
            f", {len(skipped)} skipped ({', '.join(s['path'] for s in skipped[:5])})"
            if skipped
            else ""
        )
    )
    lines = [
        "# queryfit run",
        "",
        f"**Verdict** ({ev.queries} held-out test questions): {ev.verdict}",
        "",
        f"**Advice**: {ev.advice}.",
        "",
    ]
    if ev.overlap_warning:
        lines += [f"> **Warning**: {ev.overlap_warning}.", ""]
    lines += [
        "## Data",
        "",
        read,
        f"- passages: {len(gen.dataset.corpus)}"
        + (
            f" (up to {gen.chunking['max_tokens']} tokens of {gen.chunking['tokenizer']})"
            if gen.chunking
            else ""
        ),
        f"- generator: {gen.generator}; {stats.generated} passages asked this run, "
        f"{stats.from_journal} from the journal, {stats.failed} failed"
        + (
            f" ({', '.join(f'{k} x{v}' for k, v in stats.failures.items())})"
            if stats.failures
            else ""
        ),
        f"- questions: {gen.filters.summary()}",
        f"- split: {len(gen.dataset.queries) - result.test_queries} for training "
        f"(dev held out inside), {result.test_queries} for this test",
        "",
        "## Training",
        "",
    ]
    if result.train is not None:
        lines.append(f"- {result.train.decision}")
        lines.append(
            f"- {result.train.adapter.type} adapter, {result.train.adapter.num_parameters:,} "
            f"parameters, trained in {result.train.seconds:.1f}s"
        )
    else:
        lines.append("- reused the adapter already in this folder (same data, settings and model)")
    lines += ["", "## Test (base vs adapted)", "", "| metric | base | adapted | Δ (pts) | 95% CI |"]
    lines.append("|---|---:|---:|---:|---|")
    for d in ev.differences:
        lines.append(
            f"| {d.metric} | {d.base:.4f} | {d.adapted:.4f} | {100 * d.delta:+.1f} | "
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] |"
        )
    lines += [
        "",
        "Files: `adapter.json` + `adapter.safetensors` (the adapter), `data/` (pairs, train, "
        "test, passages with sources), `run.json` (every number above)"
        + (", `report.html` (per-query detail)" if getattr(ev, "report_path", None) else "")
        + ".",
        "",
    ]
    return "\n".join(lines)
