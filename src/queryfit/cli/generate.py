"""Verbs from documents: generate and run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import (
    DEFAULTS,
    CheckForceOpt,
    ChunkOpt,
    ConcurrencyOpt,
    ConsistencyOpt,
    DocsOpt,
    IndexOpt,
    JsonOpt,
    LlmBaseUrlOpt,
    LlmKeyOpt,
    LlmOpt,
    MaxCopiedOpt,
    ModelOpt,
    OverlapOpt,
    PerPassageOpt,
    PromptOpt,
    QuietOpt,
    RetriesOpt,
    SampleOpt,
    StoreOpt,
    TimeoutOpt,
    filter_config,
)
from queryfit.cli.render import comparison_table, print_generation
from queryfit.training.config import TrainConfig


@app.command()
@user_errors
def generate(
    docs: Path = DocsOpt,
    pairs_out: Path = typer.Option(
        ..., "--out", "-o", help="Dataset to write: .json (LlamaIndex), .jsonl, or a BEIR folder."
    ),
    llm: str = LlmOpt,
    base_url: str = LlmBaseUrlOpt,
    api_key: str = LlmKeyOpt,
    prompt: Path = PromptOpt,
    questions_per_passage: int = PerPassageOpt,
    concurrency: int = ConcurrencyOpt,
    timeout: float = TimeoutOpt,
    max_retries: int = RetriesOpt,
    temperature: float = typer.Option(None, help="LLM sampling temperature [default: 0.7]."),
    model: str = typer.Option(
        None, "--model", "-m", help="Embedding model whose tokenizer sizes the passages."
    ),
    chunk_tokens: int = ChunkOpt,
    overlap_tokens: int = OverlapOpt,
    max_copied_words: int = MaxCopiedOpt,
    consistency_k: int = ConsistencyOpt,
    journal: Path = typer.Option(
        None, help="Progress journal [default: .queryfit/generations/<setting>.jsonl]."
    ),
    passages_out: Path = typer.Option(
        None, "--passages-out", help="Also write the passages with source and page (JSONL)."
    ),
    seed: int = typer.Option(0, help="Random seed (offline generators are deterministic)."),
    store: Path = StoreOpt,
    index: str = IndexOpt,
    sample: int = SampleOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write (question, passage) pairs for a folder of documents; rerun to resume.

    Reads and chunks the documents, asks the LLM for questions about each passage, filters
    duplicates, copied spans and odd lengths, and saves the dataset. Progress is journaled as it
    goes: after an interrupt, the same command continues where it stopped.

    With `--index` the questions are about your index's own passages, under its ids (no
    re-chunking); `--sample N` asks about N of them drawn at random.

    Example: `queryfit generate --docs ./my-docs --out pairs.json --llm openai:gpt-4o-mini`
    or `queryfit generate --index lancedb:./lance?table=docs --out pairs.json --sample 2000`
    """
    from queryfit import api

    report = api.generate(
        docs,
        out=pairs_out,
        llm=llm,
        base_url=base_url,
        api_key=api_key,
        prompt=prompt,
        questions_per_passage=questions_per_passage,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        temperature=temperature,
        model=model,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        filters=filter_config(consistency_k, max_copied_words),
        store=store,
        journal=journal,
        passages_out=passages_out,
        seed=seed,
        progress=not (quiet or as_json),
        index=index,
        sample=sample,
    )
    if as_json:
        return emit_json(report.to_dict())
    print_generation(report)
    out.print(
        f"wrote {report.pairs} pairs over {len(report.dataset.corpus)} passages to {report.out}",
        highlight=False,
    )


@app.command()
@user_errors
def run(
    docs: Path = DocsOpt,
    adapter_out: Path = typer.Option(
        ..., "--out", "-o", help="Adapter folder; also gets data/, report.md and run.json."
    ),
    llm: str = LlmOpt,
    base_url: str = LlmBaseUrlOpt,
    api_key: str = LlmKeyOpt,
    prompt: Path = PromptOpt,
    questions_per_passage: int = PerPassageOpt,
    concurrency: int = ConcurrencyOpt,
    timeout: float = TimeoutOpt,
    max_retries: int = RetriesOpt,
    model: str = ModelOpt,
    chunk_tokens: int = ChunkOpt,
    overlap_tokens: int = OverlapOpt,
    max_copied_words: int = MaxCopiedOpt,
    consistency_k: int = ConsistencyOpt,
    test_fraction: float = typer.Option(0.2, help="Share of questions held out for the test."),
    report_out: Path = typer.Option(
        None, "--report", help="HTML report path [default: <out>/report.html]."
    ),
    adapter: str = typer.Option(DEFAULTS.adapter, help="linear, low_rank or residual_mlp."),
    seed: int = typer.Option(0, help="Random seed (runs are deterministic)."),
    store: Path = StoreOpt,
    index: str = IndexOpt,
    sample: int = SampleOpt,
    force: bool = CheckForceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Documents to an evaluated adapter: generate, split, train, evaluate, in one command.

    Each stage reuses earlier work: finished passages from the generation journal, vectors from
    the store, and the adapter itself when data and settings are unchanged. The folder gets the
    adapter, the data splits, report.md and run.json.

    With `--index`, questions are written for your index's own passages and the adapter is
    trained and tested on the vectors it holds (only the questions are embedded).

    Example: `queryfit run --docs ./my-docs --out adapter/ --llm openai:gpt-4o-mini`
    or `queryfit run --index lancedb:./lance?table=docs --out adapter/`
    """
    from queryfit import api

    report = api.run(
        docs,
        adapter_out,
        llm=llm,
        model=model,
        store=store,
        base_url=base_url,
        api_key=api_key,
        prompt=prompt,
        questions_per_passage=questions_per_passage,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        filters=filter_config(consistency_k, max_copied_words),
        test_fraction=test_fraction,
        config=TrainConfig(adapter=adapter, seed=seed),
        seed=seed,
        report=report_out,
        progress=not (quiet or as_json),
        index=index,
        sample=sample,
        force=force,
    )
    if as_json:
        return emit_json(report.to_dict())
    print_generation(report.generation)
    if report.train_reused:
        out.print("training: reused the adapter in the folder (same data and settings)")
    else:
        style = "yellow" if report.train.shipped_identity else "green"
        out.print(f"[{style}]{escape(report.train.decision)}[/]", highlight=False)
    out.print(comparison_table(report.evaluation, f"{report.test_queries} held-out questions"))
    out.print(f"verdict: {report.evaluation.verdict}", highlight=False)
    out.print(f"adapter, data and report.md written to {report.out}/", highlight=False)
    if getattr(report.evaluation, "report_path", None):
        out.print(
            f"report: {Path(report.evaluation.report_path).resolve()} (open it in a browser)",
            highlight=False,
            soft_wrap=True,
        )
