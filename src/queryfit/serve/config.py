"""Settings of the embeddings server: names it answers to, limits, batching, auth.

One frozen object, checked once at start, so a bad limit fails before the port is bound rather
than on the first request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from queryfit.errors import ServeError

#: Suffix of the model id whose vectors are the base model's document vectors.
DOCUMENT_SUFFIX = "-document"


@dataclass(frozen=True)
class ServeConfig:
    """What ``queryfit serve`` needs besides the model.

    ``name`` is the model id of adapted query vectors; ``name + "-document"`` is the id of the base
    model's document vectors. ``api_key``, when set, is the bearer token every ``/v1`` request
    must carry (it is never logged or echoed). ``max_batch`` texts at most go to the model in one
    call, after waiting at most ``max_wait_ms`` for more requests to join the first (only while
    requests overlap; see :mod:`queryfit.serve.batcher`).
    """

    name: str
    api_key: str | None = None
    max_inputs: int = 2048
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 64
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip() or any(c.isspace() for c in self.name):
            raise ServeError(f"model name {self.name!r} must be a non-empty word; pass --name")
        for label, value in (
            ("--max-inputs", self.max_inputs),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-batch", self.max_batch),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ServeError(f"{label} must be a positive whole number, not {value!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait):
            raise ServeError(f"--max-wait-ms must be a number of milliseconds, not {wait!r}")
        if not 0 <= wait <= 1000:
            raise ServeError(f"--max-wait-ms must be between 0 and 1000, not {wait}")
        if self.api_key is not None and not self.api_key.strip():
            raise ServeError("--api-key is empty; pass a token, or leave it out for no auth")

    @property
    def query_model(self) -> str:
        """Model id whose vectors are adapted query vectors."""
        return self.name

    @property
    def document_model(self) -> str:
        """Model id whose vectors are the base model's document vectors."""
        return self.name + DOCUMENT_SUFFIX

    def __repr__(self) -> str:  # never show the token
        key = "set" if self.api_key else None
        return (
            f"ServeConfig(name={self.name!r}, api_key={key!r}, max_inputs={self.max_inputs}, "
            f"max_body_bytes={self.max_body_bytes}, max_batch={self.max_batch}, "
            f"max_wait_ms={self.max_wait_ms})"
        )
