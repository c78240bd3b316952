"""``queryfit store check`` and ``queryfit store repair``: the way out of a damaged store file."""

from __future__ import annotations

from pathlib import Path

import typer

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import JsonOpt

store_app = typer.Typer(
    help="Check or repair the embedding store (the SQLite file of stored vectors).",
    no_args_is_help=True,
)
app.add_typer(store_app, name="store")

StorePathOpt = typer.Option(
    None,
    "--store",
    help="Embedding store file [default: $QUERYFIT_STORE, else .queryfit/embeddings.sqlite].",
    show_default=False,
)


@store_app.command()
@user_errors
def check(store: Path = StorePathOpt, as_json: bool = JsonOpt) -> None:
    """Read every page and every vector of the store; change nothing.

    Exits 0 when the store is sound, 1 when it is damaged (then run `queryfit store repair`).

    Example: `queryfit store check --store .queryfit/embeddings.sqlite`
    """
    from queryfit.store_repair import check_store

    result = check_store(store)
    if as_json:
        emit_json(result.to_dict())
    elif result.ok:
        note = (
            f"; {result.bad_entries} damaged entries will be embedded again on their next use"
            if result.bad_entries
            else ""
        )
        out.print(
            f"embedding store {result.path} is sound: {result.entries} entries, "
            f"{result.size_bytes / 2**20:.1f} MiB{note}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print(
            f"embedding store {result.path} is damaged: {'; '.join(result.problems[:3])}. "
            f"Fix: `queryfit store repair --store {result.path}` keeps every readable entry and "
            "moves the damaged file aside",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    if not result.ok:
        raise typer.Exit(1)


@store_app.command()
@user_errors
def repair(store: Path = StorePathOpt, as_json: bool = JsonOpt) -> None:
    """Rebuild a damaged store from every entry that is still readable and intact.

    The damaged file is moved aside as `<name>.damaged-<timestamp>`, never deleted; texts whose
    entries were lost are embedded again by the next run. A sound store is left as it is. Run it
    while no other queryfit command uses the store.

    Example: `queryfit store repair --store .queryfit/embeddings.sqlite`
    """
    from queryfit.store_repair import repair_store

    result = repair_store(store)
    if as_json:
        return emit_json(result.to_dict())
    if not result.repaired:
        out.print(f"embedding store {result.path} is sound; nothing changed", highlight=False)
        return
    out.print(
        f"repaired {result.path}: kept {result.kept.get('embeddings', 0)} entries, dropped "
        f"{result.dropped_entries} damaged ones, {result.unreadable_rows} rows were unreadable; "
        f"the damaged file is now {result.moved_to}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
