"""Errors a user can cause.

Each carries a message that names the input at fault and the way out; the CLI prints it as one
line and exits with code 2. Anything else escaping is a bug in queryfit, not in the user's input.
"""

from __future__ import annotations


class QueryfitError(Exception):
    """Base class for every error caused by user input or environment, not by a queryfit bug."""


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


class SourceError(QueryfitError):
    """A passage source (vector store, chunk file, Python objects) cannot be read or is unusable."""
