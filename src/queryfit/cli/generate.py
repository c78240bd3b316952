"""Verbs from documents: generate and run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import (
    BACKEND,
    GENERATE,
    MODEL,
    TRAIN,
    CheckForceOpt,
    DocsOpt,
    IndexOpt,
    JsonOpt,
    ModelChoice,
    QuietOpt,
    SampleOpt,
    StoreOpt,
    TrainChoice,
    flags,
    llm_flags_compat,
)
from queryfit.cli.render import comparison_table, print_generation, print_trained
from queryfit.generation.config import GenerateConfig


@app.command()
@user_errors
@flags(MODEL, GENERATE, BACKEND)
def generate(
    docs: Path = DocsOpt,
    pairs_out: Path = typer.Option(
        ..., "--out", "-o", help="Dataset to write: .json (LlamaIndex), .jsonl, or a BEIR folder."
    ),
    journal: Path = typer.Option(
        None,
        help="Progress journal [default: .queryfit/generations/<setting>.jsonl].",
        show_default=False,
    ),
    passages_out: Path = typer.Option(
        None,
        "--passages-out",
        help="Also write the passages with source and page (JSONL).",
        show_default=False,
    ),
    store: Path = StoreOpt,
    index: str = IndexOpt,
    sample: int = SampleOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    model: ModelChoice = None,
    generation: GenerateConfig = None,
    backend: Any = None,  # a RayBackend, or None for this process
) -> None:
    """Write (question, passage) pairs for a folder of documents; rerun to resume.

    Reads and chunks the documents (to the embedding model's token window), asks the LLM for
    questions about each passage, filters duplicates, copied spans and odd lengths, and saves the
    dataset. Progress is journaled as it goes: after an interrupt, the same command continues
    where it stopped.

    With `--backend ray` a pool of Ray actors writes the questions (`--concurrency` requests per
    actor; API keys from the actors' environment); the journal stays here, so reruns resume.

    With `--index` the questions are about your index's own passages, under its ids (no
    re-chunking); `--sample N` asks about N of them drawn at random.

    Example: `queryfit generate --docs ./my-docs --out pairs.json --llm openai:gpt-4o-mini`
    or `queryfit generate --index lancedb:./lance?table=docs --out pairs.json --sample 2000`
    """
    from queryfit import api

    llm_flags_compat(model, generation)
    result = api.generate(
        docs,
        out=pairs_out,
        config=generation,
        model=model.resolve(),
        store=store,
        journal=journal,
        passages_out=passages_out,
        progress=not (quiet or as_json),
        backend=backend if backend is not None else "local",
        index=index,
        sample=sample,
    )
    if as_json:
        return emit_json(result.to_dict())
    print_generation(result)
    out.print(
        f"wrote {result.pairs} pairs over {len(result.dataset.corpus)} passages to {result.out}",
        highlight=False,
    )


@app.command()
@user_errors
@flags(MODEL, GENERATE, TRAIN, BACKEND)
def run(
    docs: Path = DocsOpt,
    adapter_out: Path = typer.Option(
        ..., "--out", "-o", help="Adapter folder; also gets data/, report.md and run.json."
    ),
    test_fraction: float = typer.Option(0.2, help="Share of questions held out for the test."),
    report_out: Path = typer.Option(
        None,
        "--report",
        help="HTML report path [default: OUT/report.html].",
        show_default=False,
    ),
    store: Path = StoreOpt,
    index: str = IndexOpt,
    sample: int = SampleOpt,
    force: bool = CheckForceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    model: ModelChoice = None,
    generation: GenerateConfig = None,
    training: TrainChoice = None,
    backend: Any = None,  # a RayBackend for question writing, or None for this process
) -> None:
    """Documents to an evaluated adapter: generate, split, train, evaluate, in one command.

    Takes every setting of `generate` and of `train` (`--backend ray` writes the questions on a
    Ray actor pool, as in `generate`). Each stage reuses earlier work: finished
    passages from the generation journal, vectors from the store, and the adapter itself when
    data and settings are unchanged. The folder gets the adapter, the data splits, report.md,
    report.html and run.json.

    With `--index`, questions are written for your index's own passages and the adapter is
    trained and tested on the vectors it holds (only the questions are embedded).

    Example: `queryfit run --docs ./my-docs --out adapter/ --llm openai:gpt-4o-mini`
    or `queryfit run --index lancedb:./lance?table=docs --out adapter/`
    """
    from queryfit import workflow

    llm_flags_compat(model, generation)
    result = workflow.run(
        docs,
        adapter_out,
        model=model.resolve(),
        store=store,
        generation=generation,
        training=training.config,
        dev_fraction=training.dev_fraction,
        split_by=training.split_by,
        search=training.search,
        test_fraction=test_fraction,
        report=report_out,
        progress=not (quiet or as_json),
        backend=backend if backend is not None else "local",
        index=index,
        sample=sample,
        force=force,
    )
    if as_json:
        return emit_json(result.to_dict())
    print_generation(result.generation)
    if result.train_reused:
        out.print("training: reused the adapter in the folder (same data and settings)")
    else:
        print_trained(result.train)
    out.print(comparison_table(result.evaluation, f"{result.test_queries} held-out questions"))
    out.print(f"verdict: {result.evaluation.verdict}", highlight=False)
    out.print(f"advice: {result.evaluation.advice}", highlight=False, soft_wrap=True)
    out.print(f"adapter, data and report.md written to {result.out}/", highlight=False)
    if result.evaluation.report_path:
        out.print(
            f"report: {Path(result.evaluation.report_path).resolve()} (open it in a browser)",
            highlight=False,
            soft_wrap=True,
        )
