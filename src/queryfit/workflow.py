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
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queryfit.data import QADataset, save_dataset, split_dataset
from queryfit.errors import GenerationError
from queryfit.generation.filters import FilterConfig
from queryfit.generation.pipeline import GenerateReport, generate, write_passages

RUN_FILE = "run.json"
REPORT_FILE = "report.md"
DATA_DIR = "data"


@dataclass
class RunReport:
    """The three stages' reports and where everything was written."""

    out: Path
    generation: GenerateReport
    train: Any  # api.TrainReport
    evaluation: Any  # api.EvaluationReport
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
            "report": str(self.out / REPORT_FILE),
            "seconds": round(self.seconds, 2),
        }


def _file_sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _write_json(path: Path, data: Any) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8"
    ) as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
        tmp = fh.name
    os.replace(tmp, path)


def run(
    docs: str | Path | None = None,
    out: str | Path | None = None,
    *,
    llm: Any = None,
    model: Any = None,
    store: Any = None,
    base_url: str | None = None,
    api_key: str | None = None,
    prompt: Any = None,
    questions_per_passage: int = 2,
    concurrency: int | None = None,
    timeout: float = 60.0,
    max_retries: int = 5,
    chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
    filters: FilterConfig | None = None,
    test_fraction: float = 0.2,
    config: Any = None,
    seed: int = 0,
    report: str | Path | None = None,
    progress: bool = True,
    index: Any = None,
    sample: int | None = None,
    force: bool = False,
) -> RunReport:
    """Generate pairs from ``docs``, split, train an adapter into ``out``, and evaluate it.

    ``out`` becomes the adapter folder (``adapter.json`` + weights), with ``data/`` (pairs,
    train and test splits, passages with their sources), ``report.md`` and ``run.json``. The test
    split is ``test_fraction`` of the questions, held out leak-free (near-duplicate questions stay
    on one side) and never seen by training, which holds out its own dev split on top. Takes the
    generation options of :func:`queryfit.generation.generate` and a ``TrainConfig``. The HTML
    report goes to ``report`` (default ``out/report.html``).

    With ``index`` (e.g. ``lancedb:PATH?table=NAME``) instead of ``docs``, questions are
    written for the index's own passages (``sample`` of them at random, or all) and training and
    evaluation read the passage vectors from the index: only the questions are embedded.

    Example::

        report = run("./my-docs", "adapter/", llm="openai:gpt-4o-mini")
        report = run(out="adapter/", index="lancedb:./lance?table=docs")
        print(report.evaluation.verdict)
    """
    from queryfit import api
    from queryfit.store import EmbeddingStore
    from queryfit.training.config import TrainConfig

    started = time.perf_counter()
    if out is None:
        raise GenerationError("run needs out: the folder for the adapter and report")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenerationError(f"--out {out} is a file; pass a folder for the adapter and report")
    if not 0.0 < test_fraction < 1.0:
        raise GenerationError(f"--test-fraction must be between 0 and 1, not {test_fraction}")
    config = config or TrainConfig(seed=seed)
    db = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    try:
        from queryfit.embedders import get_embedder

        embedder = get_embedder(model)
        gen = generate(
            docs,
            llm=llm,
            base_url=base_url,
            api_key=api_key,
            prompt=prompt,
            questions_per_passage=questions_per_passage,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
            model=embedder,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            filters=filters,
            store=db,
            seed=seed,
            progress=progress,
            index=index,
            sample=sample,
        )
        dataset = gen.dataset
        if len(dataset.queries) < api.MIN_TRAIN_QUERIES / (1 - test_fraction):
            raise GenerationError(
                f"only {len(dataset.queries)} questions from {docs or gen.documents['index']}: "
                "too few to train and test "
                f"an adapter (about {int(api.MIN_TRAIN_QUERIES / (1 - test_fraction)) + 1} at "
                "least, a few hundred for a real gain); add documents or raise "
                "--questions-per-passage"
            )
        train_part, test_part = split_dataset(
            dataset, dev_fraction=test_fraction, by="query", seed=seed
        )
        data_dir = out / DATA_DIR
        data_dir.mkdir(parents=True, exist_ok=True)
        save_dataset(dataset, data_dir / "pairs.json")
        save_dataset(train_part, data_dir / "train.json")
        save_dataset(test_part, data_dir / "test.json")
        write_passages(gen.passages, data_dir / "passages.jsonl")

        stamp = _train_stamp(train_part, config, embedder.model_id, gen.documents)
        previous = _read_run(out)
        reused = (
            previous.get("train_stamp") == stamp
            and previous.get("adapter_sha") is not None
            and previous.get("adapter_sha") == _file_sha(out / "adapter.safetensors")
        )
        trained = None
        if not reused:
            trained = api.train(
                train_part,
                model=embedder,
                out=out,
                config=config,
                store=db,
                progress=progress,
                index=index,
                force=force,
            )
        evaluation = api.evaluate(
            test_part,
            out,
            model=embedder,
            store=db,
            progress=progress,
            report=report if report is not None else out / "report.html",
            index=index,
            force=force,
        )
    finally:
        if db is not store:
            db.close()
    result = RunReport(
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
    _write_json(out / RUN_FILE, facts)
    (out / REPORT_FILE).write_text(_markdown(result, previous if reused else None), "utf-8")
    return result


def _train_stamp(
    train_part: QADataset, config: Any, model_id: str, documents: dict[str, Any] | None = None
) -> str:
    facts = {"data": train_part.fingerprint(), "config": config.to_dict(), "model": model_id}
    if documents and "index" in documents:  # trained on an index's vectors: the index counts
        facts["index"] = [documents["index"], documents.get("passages_in_index")]
    blob = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_run(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / RUN_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _markdown(result: RunReport, previous: dict[str, Any] | None) -> str:
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
            f"- {result.train.adapter.kind} adapter, {result.train.adapter.num_parameters:,} "
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
