"""Verbs on a dataset: embed, train, evaluate, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import (
    BACKEND,
    EVALUATION,
    MODEL,
    TRAIN,
    CheckForceOpt,
    DataOpt,
    EvaluationChoice,
    IndexOpt,
    JsonOpt,
    ModelChoice,
    QuietOpt,
    ReportOpt,
    SplitOpt,
    StoreOpt,
    TrainChoice,
    flags,
)
from queryfit.cli.render import comparison_table, print_coverage, print_index, print_trained


@app.command()
@user_errors
@flags(MODEL, BACKEND)
def embed(
    data: Path = DataOpt,
    split: str = SplitOpt,
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    model: ModelChoice = None,
    backend: Any = None,  # a RayBackend, or None for this process
) -> None:
    """Embed a dataset's queries and passages into the store (each text once, ever).

    With `--backend ray` the texts the store lacks are embedded by a pool of Ray actors, each
    loading the model once; this process keeps the store, so an interrupted run resumes.

    Example: `queryfit embed --data train.json --model sentence-transformers:all-MiniLM-L6-v2`
    """
    from queryfit import api

    progress = not (quiet or as_json)
    if backend is None:
        result = api.embed(data, model=model.resolve(), store=store, progress=progress, split=split)
    else:
        # The spec and its options travel to the workers (never the key); checked here first.
        if model.api_key is None:
            model.resolve()
        result = api.embed(
            data,
            model=model.model,
            model_options=model.worker_options,
            store=store,
            progress=progress,
            backend=backend,
            split=split,
        )
    if as_json:
        return emit_json(result.to_dict())
    out.print(
        f"{result.queries} queries, {result.passages} passages with {result.model_id}: "
        f"{result.texts_embedded} embedded in {result.model_calls} model calls, "
        f"{result.texts_from_store} served from {result.store_path}"
    )


@app.command()
@user_errors
@flags(MODEL, TRAIN)
def train(
    data: Path = DataOpt,
    split: str = SplitOpt,
    adapter_out: Path = typer.Option(..., "--out", "-o", help="Adapter folder to write."),
    store: Path = StoreOpt,
    index: str = IndexOpt,
    force: bool = CheckForceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    model: ModelChoice = None,
    training: TrainChoice = None,
) -> None:
    """Train a query adapter on frozen passage vectors and save it as a folder.

    With `--index`, the passage vectors come from your vector store as they are (only the
    questions are embedded), after a check that the model reproduces them.

    Example: `queryfit train --data train.json --out adapter/`
    or `queryfit train --index lancedb:./lance?table=docs --data pairs.json --out adapter/`
    """
    from queryfit import api

    result = api.train(
        data,
        model=model.resolve(),
        out=adapter_out,
        config=training.config,
        store=store,
        dev_fraction=training.dev_fraction,
        split_by=training.split_by,
        search=training.search,
        progress=not (quiet or as_json),
        split=split,
        index=index,
        force=force,
    )
    if as_json:
        return emit_json(result.to_dict())
    print_trained(result)
    print_index(result.index)


@app.command()
@user_errors
@flags(EVALUATION, MODEL)
def evaluate(
    store: Path = StoreOpt,
    html_report: Path = ReportOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    evaluation: EvaluationChoice = None,
    model: ModelChoice = None,
) -> None:
    """Compare base and adapted retrieval on held-out queries, with 95% intervals.

    The model defaults to the adapter's base model, with the prefixes and endpoint it was
    trained with. With `--index`, the passages searched are your index's, with its vectors as
    they are.

    Example: `queryfit evaluate --data test.json --adapter adapter/ --report report.html`
    """
    result = evaluation.evaluate(
        model, store=store, progress=not (quiet or as_json), report=html_report
    )
    if as_json:
        return emit_json(result.to_dict())
    out.print(comparison_table(result, f"{result.queries} queries, {result.passages} passages"))
    out.print(f"verdict: {result.verdict}", highlight=False)
    print_coverage(result)
    print_index(result.index)
    out.print(f"advice: {result.advice}", highlight=False, soft_wrap=True)
    if result.report_path:
        out.print(f"report written to {result.report_path}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
@flags(EVALUATION, MODEL)
def report(
    html_out: Path = typer.Option(
        Path("queryfit-report.html"), "--out", "-o", help="HTML file to write."
    ),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    evaluation: EvaluationChoice = None,
    model: ModelChoice = None,
) -> None:
    """Write one self-contained HTML report: does the adapter help, and where?

    Headline with 95% intervals, the verdict and whether to deploy, hit@k and recall@k curves
    (k = 1..100), how far each query's relevant passage moved, training curves, a sortable and
    searchable table of the queries that gained and lost most, and the run's facts. Opens
    offline in any browser.

    Example: `queryfit report --data test.json --adapter adapter/ --out report.html`
    """
    result = evaluation.evaluate(
        model, store=store, progress=not (quiet or as_json), report=html_out
    )
    if as_json:
        return emit_json(result.to_dict())
    out.print(f"verdict: {result.verdict}", highlight=False)
    out.print(f"advice: {result.advice}", highlight=False, soft_wrap=True)
    out.print(f"report written to {result.report_path}", highlight=False, soft_wrap=True)
