"""Errors a user can cause.

Each carries a message that names the input at fault and the way out; the CLI prints it as one
line and exits with code 2. Anything else escaping is a bug in queryfit, not in the user's input.
"""

from __future__ import annotations

import importlib


class QueryfitError(Exception):
    """Base class for every error caused by user input or environment, not by a queryfit bug.

    ``cli`` is the same message for the command line, where a fix names a flag (``--split``)
    rather than a Python argument (``split=``); the CLI prints :attr:`cli_message`.
    """

    def __init__(self, message: str = "", *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = message if cli is None else cli


class DatasetError(QueryfitError):
    """A dataset file is missing, malformed, or inconsistent."""


class EmbedderError(QueryfitError):
    """An embedding model cannot be resolved, loaded, or called."""


class StoreError(QueryfitError):
    """The embedding store cannot be opened or holds unusable entries."""


class AdapterError(QueryfitError):
    """An adapter folder is missing, malformed, or does not fit the model at hand."""


class TrainingError(QueryfitError):
    """Training cannot start with the given data or settings."""


class GenerationError(QueryfitError):
    """Questions cannot be generated: bad LLM settings or prompt, or an unreachable endpoint."""


class EvaluationError(QueryfitError, ValueError):
    """An evaluation cannot be computed with the given data or settings (e.g. one query)."""


class MissingExtraError(QueryfitError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Import ``module`` or raise MissingExtraError naming ``pip install 'queryfit[extra]'``.

    ``what`` says what needs it ("training an adapter"). Heavy libraries are imported only by
    the stages that use them, so a plain ``pip install queryfit`` applies adapters without them.
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs {module.split('.')[0].replace('_', '-')}; install it with "
            f"`pip install 'queryfit[{extra}]'`"
        ) from exc


class BackendError(QueryfitError):
    """A compute backend (Ray) is missing, unreachable, or set up wrongly."""


class ServeError(QueryfitError):
    """The embeddings server cannot start with the given adapter, model or settings."""


class SourceError(QueryfitError):
    """A passage source (vector store, chunk file, Python objects) cannot be read or is unusable."""
