"""Verbs on a dataset: embed, train, evaluate, report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import (
    DEFAULTS,
    ApiKeyOpt,
    BaseUrlOpt,
    DataOpt,
    DeviceOpt,
    DimensionsOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    ReportOpt,
    StoreOpt,
)
from queryfit.cli.render import comparison_table, print_coverage
from queryfit.training.config import TrainConfig


@app.command()
@user_errors
def embed(
    data: Path = DataOpt,
    model: str = ModelOpt,
    base_url: str = BaseUrlOpt,
    dimensions: int = DimensionsOpt,
    api_key: str = ApiKeyOpt,
    device: str = DeviceOpt,
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Embed a dataset's queries and passages into the store (each text once, ever).

    Example: `queryfit embed --data train.json --model sentence-transformers:all-MiniLM-L6-v2`
    """
    from queryfit import api
    from queryfit.cli.model_options import resolve_model

    model = resolve_model(
        model, base_url=base_url, dimensions=dimensions, api_key=api_key, device=device
    )
    report = api.embed(data, model=model, store=store, progress=not (quiet or as_json))
    if as_json:
        return emit_json(report.to_dict())
    out.print(
        f"{report.queries} queries, {report.passages} passages with {report.model_id}: "
        f"{report.texts_embedded} embedded in {report.model_calls} model calls, "
        f"{report.texts_from_store} served from {report.store_path}"
    )


@app.command()
@user_errors
def train(
    data: Path = DataOpt,
    adapter_out: Path = typer.Option(..., "--out", "-o", help="Adapter folder to write."),
    model: str = ModelOpt,
    adapter: str = typer.Option(DEFAULTS.adapter, help="linear, low_rank or residual_mlp."),
    loss: str = typer.Option(
        DEFAULTS.loss,
        help="auto (corpus while affordable, else sampled), corpus (every passage a negative), "
        "sampled (shared random + mined hard negatives, logQ-corrected) or in_batch.",
    ),
    epochs: int = typer.Option(None, help="Fixed epoch count [default: chosen on dev]."),
    max_epochs: int = typer.Option(
        DEFAULTS.max_epochs, help="Upper bound when dev chooses epochs."
    ),
    lr: float = typer.Option(DEFAULTS.lr, help="Learning rate."),
    scale: float = typer.Option(DEFAULTS.scale, help="Inverse temperature on cosine similarities."),
    identity_penalty: float = typer.Option(DEFAULTS.identity_penalty, help="Pull toward the base."),
    label_smoothing: float = typer.Option(DEFAULTS.label_smoothing, help="Of the corpus softmax."),
    batch_size: int = typer.Option(DEFAULTS.batch_size, help="Queries per step."),
    cv_folds: int = typer.Option(
        DEFAULTS.cv_folds,
        help=f"Cross-validate epochs and the gate over k folds (up to {DEFAULTS.cv_max_queries} "
        "queries, with --split-by coverage); 0 = one dev split.",
    ),
    dev_fraction: float = typer.Option(0.2, help="Share of queries held out to choose and gate."),
    split_by: str = typer.Option(
        "coverage",
        help="Dev split: coverage (new questions over covered passages, else held-out "
        "questions), query (same corpus) or passage.",
    ),
    search: bool = typer.Option(
        False, "--search", help="Try a small grid of settings on the dev split; report each try."
    ),
    seed: int = typer.Option(0, help="Random seed (runs are deterministic)."),
    base_url: str = BaseUrlOpt,
    dimensions: int = DimensionsOpt,
    api_key: str = ApiKeyOpt,
    device: str = DeviceOpt,
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a query adapter on frozen passage vectors and save it as a folder.

    Example: `queryfit train --data train.json --out adapter/`
    """
    from queryfit import api
    from queryfit.cli.model_options import resolve_model

    model = resolve_model(
        model, base_url=base_url, dimensions=dimensions, api_key=api_key, device=device
    )

    config = TrainConfig(
        adapter=adapter,
        loss=loss,
        epochs=epochs,
        max_epochs=max_epochs,
        lr=lr,
        scale=scale,
        identity_penalty=identity_penalty,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        cv_folds=cv_folds,
        seed=seed,
        device=device,
    )
    report = api.train(
        data,
        model=model,
        out=adapter_out,
        config=config,
        store=store,
        dev_fraction=dev_fraction,
        split_by=split_by,
        search=search,
        progress=not (quiet or as_json),
    )
    if as_json:
        return emit_json(report.to_dict())
    if report.adapter.config.get("search"):
        out.print("search on the dev split (* = chosen):", highlight=False)
        out.print(report.adapter.config["search"], highlight=False, markup=False)
    style = "yellow" if report.shipped_identity else "green"
    out.print(f"[{style}]{escape(report.decision)}[/]", highlight=False)
    out.print(
        f"adapter ({report.adapter.kind}, {report.adapter.num_parameters:,} parameters) "
        f"saved to {report.out}; trained in {report.seconds:.1f}s; "
        f"{report.model_calls} model calls, {report.texts_from_store} texts from the store"
    )


@app.command()
@user_errors
def evaluate(
    data: Path = DataOpt,
    adapter: Path = typer.Option(..., "--adapter", "-a", help="Adapter folder."),
    model: str = typer.Option(None, "--model", "-m", help="[default: the adapter's base model]"),
    force: bool = typer.Option(False, help="Use the adapter even with another base model."),
    resamples: int = typer.Option(10_000, help="Bootstrap resamples for the intervals."),
    base_url: str = BaseUrlOpt,
    dimensions: int = DimensionsOpt,
    api_key: str = ApiKeyOpt,
    device: str = DeviceOpt,
    store: Path = StoreOpt,
    html_report: Path = ReportOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compare base and adapted retrieval on held-out queries, with 95% intervals.

    Example: `queryfit evaluate --data test.json --adapter adapter/ --report report.html`
    """
    from queryfit import api
    from queryfit.cli.model_options import resolve_model

    model = resolve_model(
        model,
        base_url=base_url,
        dimensions=dimensions,
        api_key=api_key,
        adapter=adapter,
        device=device,
    )

    report = api.evaluate(
        data,
        adapter,
        model=model,
        store=store,
        force=force,
        n_resamples=resamples,
        progress=not (quiet or as_json),
        report=html_report,
    )
    if as_json:
        return emit_json(report.to_dict())
    out.print(comparison_table(report, f"{report.queries} queries, {report.passages} passages"))
    out.print(f"verdict: {report.verdict}", highlight=False)
    print_coverage(report)
    if report.report_path:
        out.print(f"report written to {report.report_path}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def report(
    data: Path = DataOpt,
    adapter: Path = typer.Option(..., "--adapter", "-a", help="Adapter folder."),
    html_out: Path = typer.Option(
        Path("queryfit-report.html"), "--out", "-o", help="HTML file to write."
    ),
    model: str = typer.Option(None, "--model", "-m", help="[default: the adapter's base model]"),
    force: bool = typer.Option(False, help="Use the adapter even with another base model."),
    resamples: int = typer.Option(10_000, help="Bootstrap resamples for the intervals."),
    base_url: str = BaseUrlOpt,
    dimensions: int = DimensionsOpt,
    api_key: str = ApiKeyOpt,
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write one self-contained HTML report: does the adapter help, and where?

    Headline with 95% intervals and the verdict, hit@k and recall@k curves (k = 1..100), how far
    each query's relevant passage moved, training curves, a sortable and searchable table of the
    queries that gained and lost most, and the run's facts. Opens offline in any browser.

    Example: `queryfit report --data test.json --adapter adapter/ --out report.html`
    """
    from queryfit import api
    from queryfit.cli.model_options import resolve_model

    model = resolve_model(
        model, base_url=base_url, dimensions=dimensions, api_key=api_key, adapter=adapter
    )
    result = api.report(
        data,
        adapter,
        html_out,
        model=model,
        store=store,
        force=force,
        n_resamples=resamples,
        progress=not (quiet or as_json),
    )
    if as_json:
        return emit_json(result.to_dict())
    out.print(f"verdict: {result.verdict}", highlight=False)
    out.print(f"report written to {result.report_path}", highlight=False, soft_wrap=True)
