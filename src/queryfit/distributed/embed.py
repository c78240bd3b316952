"""Embedding on Ray Data: the store's missing texts go to a pool of actors, vectors come back.

The driver keeps the store. It sends only the texts the store lacks (see
:meth:`EmbeddingStore.embed`'s ``runner``) to ``map_batches`` over an actor pool; each actor
builds the embedder once from its spec string and options (never an API key: actors read keys
from their own environment) and embeds one batch per call. The driver writes each batch into the
store as ``iter_batches`` hands it over, so an interrupted run keeps every batch that arrived.

The model is never loaded on the driver: one Ray task resolves the spec on a worker and reports
what the store needs to key the vectors (model id, size, prefixes, store keys), and every actor
checks that it builds the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.distributed.backend import (
    RayBackend,
    pool_batches,
    pool_size,
    ray_failed,
    ray_session,
    refuse_secrets,
    remote_options,
)
from queryfit.embedders.base import KINDS, Kind, check_kind, check_vectors
from queryfit.errors import BackendError, EmbedderError, QueryfitError

#: Most model batches per Ray Data block. The driver commits what one actor task returns (a
#: block, or two small ones bundled up to a model batch), so this bounds the work an interrupt
#: can lose, while keeping the number of blocks (and their overhead) small; with little work,
#: blocks of one batch spread it over the pool (about 4 blocks per worker).
MAX_BATCHES_PER_BLOCK = 16


def _build(spec: str | None, options: Mapping[str, Any]) -> Any:
    from queryfit.embedders.registry import get_embedder

    return get_embedder(spec, **options)


def describe(spec: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What the driver needs to know of an embedder, computed where the model can load."""
    try:
        embedder = _build(spec, options)
        keys = {kind: embedder.store_key(kind) for kind in KINDS}
        return {
            "model_id": embedder.model_id,
            "dim": int(embedder.dim),
            "query_prefix": embedder.query_prefix,
            "document_prefix": embedder.document_prefix,
            "max_batch_size": int(getattr(embedder, "max_batch_size", 64) or 64),
            "keys": keys,
        }
    except QueryfitError as exc:
        return {"error": str(exc)}


class Describer:
    """Ray actor around :func:`describe`."""

    def describe(self, spec: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
        return describe(spec, options)


@dataclass
class RemoteEmbedder:
    """The driver's stand-in for an embedder that runs on the Ray workers.

    It carries what the store keys and sizes vectors by; embedding itself goes through
    :class:`RayEmbedRunner`, so calling it here is a mistake in queryfit, not in the input.
    """

    spec: str | None
    model_id: str
    dim: int
    query_prefix: str
    document_prefix: str
    max_batch_size: int
    keys: dict[str, str]

    def store_key(self, kind: Kind) -> str:
        return self.keys[check_kind(kind)]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError(f"{self.model_id} runs on Ray workers; embed through the store runner")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError(f"{self.model_id} runs on Ray workers; embed through the store runner")


class EmbedWorker:
    """One actor of the pool: builds the embedder once, then embeds a batch per call.

    Errors a user can cause (a model missing on this node, a provider refusing a key) come back
    as an ``error`` column rather than an exception, so the driver can raise them as one line.
    """

    def __init__(
        self, spec: str | None, options: dict[str, Any], kind: Kind, key: str, dim: int
    ) -> None:
        self.kind, self.dim = kind, dim
        self.error = ""
        try:
            self.embedder = _build(spec, options)
            own = self.embedder.store_key(kind)
            if own != key:
                self.error = (
                    f"this worker builds {own!r} but the driver expected {key!r}; give every "
                    "node the same model files and queryfit version"
                )
        except QueryfitError as exc:
            self.error = str(exc)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = batch["row"]
        texts = [str(t) for t in batch["text"]]
        error = self.error
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not error:
            try:
                fn = (
                    self.embedder.embed_queries
                    if self.kind == "query"
                    else self.embedder.embed_documents
                )
                vectors = check_vectors(fn(texts), len(texts), self.dim, self.embedder.model_id)
            except QueryfitError as exc:
                error = str(exc)
        return {"row": rows, "vector": vectors, "error": np.array([error] * len(texts))}


class RayEmbedRunner:
    """``runner(texts, kind, batch_size)`` for :meth:`EmbeddingStore.embed`: yields
    ``(positions in texts, vectors)`` per block as the workers finish them, in any order."""

    def __init__(
        self,
        ray: Any,
        backend: RayBackend,
        spec: str | None,
        options: dict[str, Any],
        embedder: RemoteEmbedder,
    ) -> None:
        self.ray, self.backend = ray, backend
        self.spec, self.options, self.embedder = spec, options, embedder

    def __call__(
        self, texts: Sequence[str], kind: Kind, batch_size: int
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        ray, n = self.ray, len(texts)
        if n == 0:
            return
        workers = pool_size(ray, self.backend, math.ceil(n / batch_size))
        per_block = batch_size * max(1, min(MAX_BATCHES_PER_BLOCK, n // (batch_size * workers * 4)))
        # Built on the driver, split evenly into blocks of at most per_block rows (from_arrow
        # would start a task per table just to read its schema).
        items = [{"row": i, "text": t} for i, t in enumerate(texts)]
        kwargs = {
            "spec": self.spec,
            "options": self.options,
            "kind": kind,
            "key": self.embedder.store_key(kind),
            "dim": self.embedder.dim,
        }
        for batch in pool_batches(
            ray,
            self.backend,
            items,
            EmbedWorker,
            kwargs,
            batch_size=batch_size,
            blocks=math.ceil(n / per_block),
            workers=workers,
            what="embedding",
        ):
            errors = [e for e in batch["error"].tolist() if e]
            if errors:
                raise EmbedderError(f"on a Ray worker: {errors[0]}")
            yield batch["row"].tolist(), batch["vector"]


@contextmanager
def ray_embedding(
    backend: RayBackend, model: Any, options: Mapping[str, Any] | None = None
) -> Iterator[tuple[RemoteEmbedder, RayEmbedRunner]]:
    """Connect to Ray, resolve ``model`` on a worker, and give the store a runner for it.

    ``model`` is a spec string (``None`` for the bundled default): an embedder object cannot be
    rebuilt on the workers. ``options`` are :func:`get_embedder`'s (``base_url``, ``dimensions``,
    ``batch_size``, ``device``, prefixes...) and travel to the workers, so no ``api_key``.
    """
    if model is not None and not isinstance(model, str | Path):
        raise BackendError(
            f"--backend ray needs a model spec string that each worker can load (e.g. "
            f"'sentence-transformers:all-MiniLM-L6-v2'), not a {type(model).__name__} object; "
            "pass model=<spec> and its settings as model_options"
        )
    options = dict(options or {})
    refuse_secrets(options, "--api-key (api_key=)")
    spec = None if model is None else str(model)
    with ray_session(backend) as ray:
        # An actor, killed once it answered: the model (and any GPU memory) is not held idle
        # for the rest of the run, and the process does not go through an exit of its own.
        probe = ray.remote(**remote_options(backend))(Describer).remote()
        try:
            info = ray.get(probe.describe.remote(spec, options))
        except ray.exceptions.RayError as exc:
            raise ray_failed(exc, "loading the model") from exc
        finally:
            ray.kill(probe)
        if "error" in info:
            raise EmbedderError(f"on a Ray worker: {info['error']}")
        embedder = RemoteEmbedder(spec=spec, **info)
        yield embedder, RayEmbedRunner(ray, backend, spec, options, embedder)
