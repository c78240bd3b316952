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
from rich.table import Table

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


def user_errors(fn: F) -> F:
    """Turn queryfit's own errors into one line and exit code 2; show warnings briefly."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        def show(message: Any, category: Any, *_: Any, **__: Any) -> None:
            err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

        previous = warnings.showwarning
        warnings.showwarning = show
        try:
            return fn(*args, **kwargs)
        except QueryfitError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished work is kept in the store, rerun to resume")
            raise typer.Exit(130) from None
        finally:
            warnings.showwarning = previous

    return wrapper  # type: ignore[return-value]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _comparison_table(report: Any, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("metric", "base", "adapted", "Δ (pts)", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("metric", "") else "right")
    for d in report.differences:
        mark = (
            "[green]significant[/]"
            if d.significant and d.delta > 0
            else ("[red]worse[/]" if d.significant else "[dim]n.s.[/]")
        )
        table.add_row(
            d.metric,
            f"{d.base:.4f}",
            f"{d.adapted:.4f}",
            f"{100 * d.delta:+.1f}",
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
            mark,
        )
    return table


@app.command()
@user_errors
def embed(
    data: Path = DataOpt,
    model: str = ModelOpt,
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Embed a dataset's queries and passages into the store (each text once, ever).

    Example: `queryfit embed --data train.json --model sentence-transformers:all-MiniLM-L6-v2`
    """
    from . import api

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
    batch_size: int = typer.Option(_D.batch_size, help="Queries per step."),
    dev_fraction: float = typer.Option(0.2, help="Share of queries held out to choose and gate."),
    split_by: str = typer.Option("query", help="Dev split: query (same corpus) or passage."),
    seed: int = typer.Option(0, help="Random seed (runs are deterministic)."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a query adapter on frozen passage vectors and save it as a folder.

    Example: `queryfit train --data train.json --out adapter/`
    """
    from . import api

    config = TrainConfig(
        adapter=adapter,
        loss=loss,
        epochs=epochs,
        max_epochs=max_epochs,
        lr=lr,
        scale=scale,
        identity_penalty=identity_penalty,
        batch_size=batch_size,
        seed=seed,
    )
    if split_by not in ("query", "passage"):
        from .errors import TrainingError

        raise TrainingError(f"--split-by must be query or passage, not {split_by!r}")
    report = api.train(
        data,
        model=model,
        out=adapter_out,
        config=config,
        store=store,
        dev_fraction=dev_fraction,
        split_by=split_by,
        progress=not (quiet or as_json),
    )
    if as_json:
        return _emit_json(report.to_dict())
    style = "yellow" if report.shipped_identity else "green"
    out.print(f"[{style}]{report.decision}[/]", highlight=False)
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
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compare base and adapted retrieval on held-out queries, with 95% intervals.

    Example: `queryfit evaluate --data test.json --adapter adapter/`
    """
    from . import api

    report = api.evaluate(
        data,
        adapter,
        model=model,
        store=store,
        force=force,
        n_resamples=resamples,
        progress=not (quiet or as_json),
    )
    if as_json:
        return _emit_json(report.to_dict())
    out.print(_comparison_table(report, f"{report.queries} queries, {report.passages} passages"))
    out.print(f"verdict: {report.verdict}", highlight=False)


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(Path("queryfit-demo"), "--out", help="Folder for the results."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Run the whole loop offline on Python's own reference docs and print the comparison.

    Builds pseudo-questions from the `pydoc_data` topics, holds out a test third of them, trains
    an adapter for the bundled all-MiniLM-L6-v2 on the rest and evaluates it.

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
    report = api.evaluate(test_part, workdir / "adapter", store=store, progress=progress)
    if as_json:
        return _emit_json({"train": trained.to_dict(), "evaluate": report.to_dict()})
    out.print(trained.decision, highlight=False)
    out.print(_comparison_table(report, "held-out test questions: base vs adapted"))
    out.print(f"verdict: {report.verdict}", highlight=False)
    out.print(f"adapter and data written to {workdir}/")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
