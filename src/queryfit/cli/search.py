"""Verb on an index: search, with and without the adapter, side by side."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import JsonOpt, StoreOpt

OPENING = 90


def _cell(hit, other_ranks: dict[str, int], rank: int, mark_moves: bool) -> str:
    from queryfit.report.details import opening

    move = ""
    if mark_moves:
        before = other_ranks.get(hit.id)
        if before is None:
            move = " [green]new[/]"
        elif before != rank:
            move = f" [{'green' if before > rank else 'yellow'}]was {before}[/]"
    return (
        f"[bold]{escape(hit.id)}[/] [dim]{hit.score:.4f}[/]{move}\n"
        f"{escape(opening(hit.text, OPENING))}"
    )


@app.command()
@user_errors
def search(
    question: str = typer.Argument(..., help="The question, in quotes."),
    index: str = typer.Option(
        ...,
        "--index",
        help="Your vector store or chunk file (see `queryfit train --help` for the forms).",
    ),
    adapter: Path = typer.Option(..., "--adapter", "-a", help="Adapter folder."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Passages to show per side."),
    model: str = typer.Option(None, "--model", "-m", help="[default: the adapter's base model]"),
    force: bool = typer.Option(False, help="Use the adapter even with another base model."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Search your index for one question, with and without the adapter, side by side.

    The question is embedded once; the base and the adapted vector go to the index's own search
    (LanceDB, Chroma, Qdrant, FAISS; chunk files are scanned exactly), so you see what the
    adapter changes on your own data.

    Example: `queryfit search --index lancedb:./lance?table=docs --adapter adapter/ "how do I
    reset my password?"`
    """
    from queryfit import api

    result = api.search(index, adapter, question, k=top_k, model=model, store=store, force=force)
    if as_json:
        return emit_json(result.to_dict())
    base_ranks = {hit.id: i for i, hit in enumerate(result.base, 1)}
    table = Table(
        title=f"top {result.k} for {question!r} ({result.score})",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("#", justify="right")
    table.add_column("without the adapter")
    table.add_column("with the adapter")
    for rank in range(1, max(len(result.base), len(result.adapted)) + 1):
        left = _cell(result.base[rank - 1], {}, rank, False) if rank <= len(result.base) else ""
        right = (
            _cell(result.adapted[rank - 1], base_ranks, rank, True)
            if rank <= len(result.adapted)
            else ""
        )
        table.add_row(str(rank), left, right)
    out.print(table)
    same = [h.id for h in result.base] == [h.id for h in result.adapted]
    out.print(
        "same passages in the same order" if same else "the adapter changed the ranking",
        highlight=False,
    )
