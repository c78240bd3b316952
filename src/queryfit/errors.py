"""Errors a user can cause.

Each carries a message that names the input at fault and the way out; the CLI prints it as one
line and exits with code 2. Anything else escaping is a bug in queryfit, not in the user's input.
"""

from __future__ import annotations


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
