"""The ``queryfit`` command: a thin shell over :mod:`queryfit.api`.

Every verb prints a readable summary, or one JSON object on stdout with ``--json``. Mistakes in
the user's input print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .console import json_default
from .errors import QueryfitError
from .training.config import TrainConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from the CLI

app = typer.Typer(
    help="Make any embedding model retrieve better on your documents, without re-embedding them.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
_D = TrainConfig()  # option defaults come from the one place that defines them

DataOpt = typer.Option(..., "--data", "-d", help="LlamaIndex JSON, BEIR folder or JSONL pairs.")
ModelOpt = typer.Option(
    None, "--model", "-m", help="Embedding model, e.g. sentence-transformers:<name-or-path>."
)
StoreOpt = typer.Option(
    None, "--store", help="Embedding store file [default: .queryfit/embeddings.sqlite]."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
ReportOpt = typer.Option(
    None, "--report", help="Also write the HTML report (plots, query table) to this file."
)
BaseUrlOpt = typer.Option(
    None,
    "--base-url",
    help="OpenAI-compatible endpoint for openai:MODEL (Ollama, vLLM, TEI, LM Studio, Azure), "
    "e.g. http://localhost:11434/v1.",
)
DimensionsOpt = typer.Option(
    None, "--dimensions", help="Ask an API model for shorter vectors (e.g. 256); own store key."
)
ApiKeyOpt = typer.Option(
    None,
    "--api-key",
    help="API key [default: $OPENAI_API_KEY, $COHERE_API_KEY, $VOYAGE_API_KEY...]; never stored.",
    show_default=False,
)


def user_errors(fn: F) -> F:
    """Turn queryfit's own errors into one line and exit code 2; show warnings briefly."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        def show(message: Any, category: Any, *_: Any, **__: Any) -> None:
            err.print(
                f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True
            )

        previous = warnings.showwarning
        warnings.showwarning = show
        try:
            return fn(*args, **kwargs)
        except QueryfitError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished work is kept in the store, rerun to resume")
            raise typer.Exit(130) from None
        finally:
            warnings.showwarning = previous

    return wrapper  # type: ignore[return-value]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")


def _comparison_table(report: Any, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("metric", "base", "adapted", "Δ (pts)", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("metric", "") else "right")
    for d in report.differences:
        table.add_row(
            d.metric,
            f"{d.base:.4f}",
            f"{d.adapted:.4f}",
            f"{100 * d.delta:+.1f}",
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
            _mark(d),
        )
    return table


def _mark(d: Any) -> str:
    """significant / worse / n.s. for one Difference, coloured."""
    if d.significant:
        return "[green]significant[/]" if d.delta > 0 else "[red]worse[/]"
    return "[dim]n.s.[/]"


def _print_coverage(report: Any) -> None:
    """The headline metric on covered vs uncovered test queries, or the line saying why not.

    Covered: every relevant passage was in a training pair. Nothing for older adapters.
    """
    coverage = report.coverage
    if coverage is None:
        return
    if not coverage.groups:
        out.print(f"coverage: {coverage.note}", highlight=False)
        return
    table = Table(
        title=f"by training coverage: {report.headline} (passages in the training pairs or not)",
        title_justify="left",
    )
    for column in ("test queries", "n", "base", "adapted", "Δ (pts)", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("test queries", "") else "right")
    for group in coverage.groups:
        d = group.difference(report.headline)
        table.add_row(
            group.name,
            str(group.queries),
            f"{d.base:.4f}",
            f"{d.adapted:.4f}",
            f"{100 * d.delta:+.1f}",
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
            _mark(d),
        )
    out.print(table)


@app.command()
@user_errors
def embed(
    data: Path = DataOpt,
    model: str = ModelOpt,
    base_url: str = BaseUrlOpt,
    dimensions: int = DimensionsOpt,
    api_key: str = ApiKeyOpt,
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Embed a dataset's queries and passages into the store (each text once, ever).

    Example: `queryfit embed --data train.json --model sentence-transformers:all-MiniLM-L6-v2`
    """
    from . import api
    from .embedders.options import resolve_model

    model = resolve_model(model, base_url=base_url, dimensions=dimensions, api_key=api_key)
    report = api.embed(data, model=model, store=store, progress=not (quiet or as_json))
    if as_json:
        return _emit_json(report.to_dict())
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
    adapter: str = typer.Option(_D.adapter, help="linear, low_rank or residual_mlp."),
    loss: str = typer.Option(_D.loss, help="corpus (all passages as negatives) or in_batch."),
    epochs: int = typer.Option(None, help="Fixed epoch count [default: chosen on dev]."),
    max_epochs: int = typer.Option(_D.max_epochs, help="Upper bound when dev chooses epochs."),
    lr: float = typer.Option(_D.lr, help="Learning rate."),
    scale: float = typer.Option(_D.scale, help="Inverse temperature on cosine similarities."),
    identity_penalty: float = typer.Option(_D.identity_penalty, help="Pull toward the base."),
    label_smoothing: float = typer.Option(_D.label_smoothing, help="Of the corpus softmax."),
    batch_size: int = typer.Option(_D.batch_size, help="Queries per step."),
    cv_folds: int = typer.Option(
        _D.cv_folds,
        help=f"Cross-validate epochs and the gate over k folds (up to {_D.cv_max_queries} "
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
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a query adapter on frozen passage vectors and save it as a folder.

    Example: `queryfit train --data train.json --out adapter/`
    """
    from . import api
    from .embedders.options import resolve_model

    model = resolve_model(model, base_url=base_url, dimensions=dimensions, api_key=api_key)

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
        return _emit_json(report.to_dict())
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
    store: Path = StoreOpt,
    html_report: Path = ReportOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compare base and adapted retrieval on held-out queries, with 95% intervals.

    Example: `queryfit evaluate --data test.json --adapter adapter/ --report report.html`
    """
    from . import api
    from .embedders.options import resolve_model

    model = resolve_model(
        model, base_url=base_url, dimensions=dimensions, api_key=api_key, adapter=adapter
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
        return _emit_json(report.to_dict())
    out.print(_comparison_table(report, f"{report.queries} queries, {report.passages} passages"))
    out.print(f"verdict: {report.verdict}", highlight=False)
    _print_coverage(report)
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
    from . import api
    from .embedders.options import resolve_model

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
        return _emit_json(result.to_dict())
    out.print(f"verdict: {result.verdict}", highlight=False)
    out.print(f"report written to {result.report_path}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(Path("queryfit-demo"), "--out", help="Folder for the results."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Run the whole loop offline on Python's own reference docs and print the comparison.

    Builds keyword pseudo-questions from the `pydoc_data` topics, holds out a test third of them,
    trains an adapter for the bundled all-MiniLM-L6-v2 on the rest, evaluates it, and writes the
    HTML report (`<out>/report.html`).

    Example: `queryfit demo`
    """
    from . import api
    from .dataset import save_dataset, split_dataset
    from .demo import demo_dataset

    dataset = demo_dataset()
    train_part, test_part = split_dataset(dataset, dev_fraction=0.3, by="query", seed=1)
    workdir.mkdir(parents=True, exist_ok=True)
    save_dataset(train_part, workdir / "train.json")
    save_dataset(test_part, workdir / "test.json")
    progress = not (quiet or as_json)
    if progress:
        out.print(
            f"demo: {len(dataset.queries)} questions over {len(dataset.corpus)} passages "
            f"(Python reference topics); training on {len(train_part.queries)}, "
            f"testing on {len(test_part.queries)}"
        )
    trained = api.train(train_part, out=workdir / "adapter", store=store, progress=progress)
    report = api.evaluate(
        workdir / "test.json",
        workdir / "adapter",
        store=store,
        progress=progress,
        report=workdir / "report.html",
    )
    if as_json:
        return _emit_json({"train": trained.to_dict(), "evaluate": report.to_dict()})
    out.print(trained.decision, highlight=False)
    out.print(_comparison_table(report, "held-out test questions: base vs adapted"))
    out.print(f"verdict: {report.verdict}", highlight=False)
    out.print(f"adapter and data written to {workdir}/")
    out.print(
        f"report: {Path(report.report_path).resolve()} (open it in a browser)",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@user_errors
def export(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="Adapter folder."),
    export_out: Path = typer.Option(..., "--out", "-o", help="Folder to write."),
    fmt: str = typer.Option(
        "npy", "--format", "-f", help="npy (weight.npy + bias.npy), safetensors, or llamaindex."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Export an adapter as a plain matrix pair for any language, or as a LlamaIndex adapter.

    Apply it to query vectors only: `q' = W q + b` (then L2-normalise), as `adapter_export.json`
    in the folder says. `--format llamaindex` writes `config.json` + `pytorch_model.bin` for
    LlamaIndex's `AdapterEmbeddingModel`.

    Example: `queryfit export --adapter adapter/ --out adapter-npy/ --format npy`
    """
    from .adapters import load_adapter
    from .adapters.convert import export_adapter

    files = export_adapter(load_adapter(adapter), export_out, format=fmt)
    if as_json:
        return _emit_json({"format": fmt, "files": [str(f) for f in files]})
    out.print(f"wrote {', '.join(f.name for f in files)} to {export_out}/", highlight=False)


@app.command("import-llamaindex")
@user_errors
def import_llamaindex(
    source: Path = typer.Argument(..., help="LlamaIndex adapter folder (config.json + .bin)."),
    adapter_out: Path = typer.Option(..., "--out", "-o", help="queryfit adapter folder to write."),
    model: str = typer.Option(
        None, "--model", "-m", help="Base model it was trained for, e.g. openai:<model>."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Convert an adapter trained with LlamaIndex into a queryfit adapter folder.

    Reads `pytorch_model.bin` as plain tensors (`weights_only=True`, never pickled code); supports
    LinearLayer and TwoLayerNN (relu). Name the base model with `--model` so the adapter refuses
    any other.

    Example: `queryfit import-llamaindex li/ --out adapter/ --model openai:text-embedding-3-small`
    """
    from .adapters.convert import import_llamaindex_adapter

    result = import_llamaindex_adapter(source, adapter_out, base_model=model)
    if as_json:
        return _emit_json({"out": str(adapter_out), **dict(result.describe())})
    out.print(
        f"converted {source} ({result.kind}, {result.dim} dims, {result.num_parameters:,} "
        f"parameters) to {adapter_out}/"
        + ("" if model else "; no --model given, so it is not tied to a base model"),
        highlight=False,
        soft_wrap=True,
    )


# -- from documents: generate and run ------------------------------------------------------------

DocsOpt = typer.Option(
    ..., "--docs", "-D", help="Folder (searched recursively) or file: .txt, .md, .html, .pdf."
)
LlmOpt = typer.Option(
    None,
    "--llm",
    help="Question writer: openai:MODEL (any OpenAI-compatible endpoint, see --base-url), "
    "ollama:MODEL, smollm2 (offline, small) or heuristic (no model) [default: smollm2 if "
    "installed, else heuristic].",
    show_default=False,
)
LlmBaseUrlOpt = typer.Option(
    None,
    "--base-url",
    help="OpenAI-compatible chat endpoint of the LLM [default: $QUERYFIT_LLM_BASE_URL, "
    "$OPENAI_BASE_URL or OpenAI], e.g. http://localhost:11434/v1 for Ollama.",
    show_default=False,
)
LlmKeyOpt = typer.Option(
    None,
    "--api-key",
    help="LLM API key [default: $QUERYFIT_LLM_API_KEY or $OPENAI_API_KEY]; never logged or saved.",
    show_default=False,
)
PromptOpt = typer.Option(
    None, "--prompt", help="Prompt template file with {passage} and {n} (--- splits off a system)."
)
PerPassageOpt = typer.Option(
    2, "--questions-per-passage", "-n", help="Questions asked per passage."
)
ConcurrencyOpt = typer.Option(8, help="LLM requests in flight at once.")
TimeoutOpt = typer.Option(60.0, help="Seconds one LLM request may take.")
RetriesOpt = typer.Option(5, help="Retries of a failed LLM request (429, 5xx, timeout, junk).")
ChunkOpt = typer.Option(
    None, help="Passage size in the embedder's tokens [default: its max sequence length]."
)
OverlapOpt = typer.Option(None, help="Tokens shared by consecutive passages [default: size/8].")
ConsistencyOpt = typer.Option(
    None,
    "--consistency-k",
    help="Keep a question only if the base model ranks its passage in the top K (off by default).",
)
MaxCopiedOpt = typer.Option(
    10, help="Drop questions copying this many consecutive words of the passage."
)


def _filters(consistency_k: int | None, max_copied_words: int) -> Any:
    from .generate import FilterConfig

    return FilterConfig(consistency_k=consistency_k, max_copied_words=max_copied_words)


def _print_generation(report: Any) -> None:
    docs, stats = report.documents or {}, report.stats
    if docs:
        skipped = docs.get("skipped") or []
        note = (
            f" ({len(skipped)} skipped: "
            + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            + (" ..." if len(skipped) > 3 else "")
            + ")"
            if skipped
            else ""
        )
        chunking = report.chunking or {}
        out.print(
            f"read {docs['files_read']} files{note}: {len(report.passages)} passages of at most "
            f"{chunking.get('max_tokens')} tokens ({chunking.get('tokenizer')})",
            highlight=False,
            soft_wrap=True,
        )
    retries = f", {stats.retries} retries" if stats.retries else ""
    limited = f", {stats.rate_limited} rate-limited" if stats.rate_limited else ""
    out.print(
        f"{report.generator}: {stats.generated} passages asked, {stats.from_journal} from the "
        f"journal, {stats.failed} failed; {stats.requests} requests{retries}{limited}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"questions: {report.filters.summary()}", highlight=False, soft_wrap=True)
    if stats.failed:
        reasons = ", ".join(f"{k} x{v}" for k, v in stats.failures.items())
        err.print(
            f"[yellow]warning:[/] {stats.failed} passages got no questions ({reasons}); rerun "
            "the same command to retry only those",
            highlight=False,
            soft_wrap=True,
        )


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
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write (question, passage) pairs for a folder of documents; rerun to resume.

    Reads and chunks the documents, asks the LLM for questions about each passage, filters
    duplicates, copied spans and odd lengths, and saves the dataset. Progress is journaled as it
    goes: after an interrupt, the same command continues where it stopped.

    Example: `queryfit generate --docs ./my-docs --out pairs.json --llm openai:gpt-4o-mini`
    """
    from . import api

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
        filters=_filters(consistency_k, max_copied_words),
        store=store,
        journal=journal,
        passages_out=passages_out,
        seed=seed,
        progress=not (quiet or as_json),
    )
    if as_json:
        return _emit_json(report.to_dict())
    _print_generation(report)
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
    adapter: str = typer.Option(_D.adapter, help="linear, low_rank or residual_mlp."),
    seed: int = typer.Option(0, help="Random seed (runs are deterministic)."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Documents to an evaluated adapter: generate, split, train, evaluate, in one command.

    Each stage reuses earlier work: finished passages from the generation journal, vectors from
    the store, and the adapter itself when data and settings are unchanged. The folder gets the
    adapter, the data splits, report.md and run.json.

    Example: `queryfit run --docs ./my-docs --out adapter/ --llm openai:gpt-4o-mini`
    """
    from . import api

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
        filters=_filters(consistency_k, max_copied_words),
        test_fraction=test_fraction,
        config=TrainConfig(adapter=adapter, seed=seed),
        seed=seed,
        report=report_out,
        progress=not (quiet or as_json),
    )
    if as_json:
        return _emit_json(report.to_dict())
    _print_generation(report.generation)
    if report.train_reused:
        out.print("training: reused the adapter in the folder (same data and settings)")
    else:
        style = "yellow" if report.train.shipped_identity else "green"
        out.print(f"[{style}]{escape(report.train.decision)}[/]", highlight=False)
    out.print(_comparison_table(report.evaluation, f"{report.test_queries} held-out questions"))
    out.print(f"verdict: {report.evaluation.verdict}", highlight=False)
    out.print(f"adapter, data and report.md written to {report.out}/", highlight=False)
    if getattr(report.evaluation, "report_path", None):
        out.print(
            f"report: {Path(report.evaluation.report_path).resolve()} (open it in a browser)",
            highlight=False,
            soft_wrap=True,
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
