"""The ``queryfit`` command: the Typer app, and how every verb turns errors into one line.

Every verb prints a readable summary, or one JSON object on stdout with ``--json``. Mistakes in
the user's input print one line on stderr and exit with code 2. The verbs live in the modules of
this package, each registered on :data:`app`.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from queryfit.console import json_default
from queryfit.errors import QueryfitError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from the CLI

app = typer.Typer(
    help="Make any embedding model retrieve better on your documents, without re-embedding them.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: every word of it shows (markup ate "<name>" and "[default: <out>/...]"), and
    # flags carry no "<bool>" metavar.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
# Piped output is read by programs and logs: long lines stay whole instead of wrapping at 80.
out = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


def _version(value: bool) -> None:
    if value:
        from queryfit import __version__

        out.print(f"queryfit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Make any embedding model retrieve better on your documents, without re-embedding them."""


F = TypeVar("F", bound=Callable[..., Any])


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
            err.print(f"[red]error:[/] {escape(printable(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished work is kept in the store, rerun to resume")
            raise typer.Exit(130) from None
        finally:
            warnings.showwarning = previous

    return wrapper  # type: ignore[return-value]


def printable(exc: QueryfitError) -> str:
    """The command line's spelling of the message (flags, not Python arguments), on one line, with
    anything a terminal cannot encode (a lone surrogate from a JSON file) escaped."""
    message = " ".join(getattr(exc, "cli_message", str(exc)).splitlines())
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def emit_json(data: Any) -> None:
    """The one JSON object ``--json`` prints on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")


def main() -> None:
    """The console script: the verbs are registered when :mod:`queryfit.cli` is imported."""
    app()
