"""The model behind the server: the adapter and its base model, loaded and checked once.

The base vectors come from queryfit's own providers, so the server can sit in front of a local
sentence-transformers model or of any API (OpenAI, Ollama, vLLM, TEI...) and add the adapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.adapted import AdaptedEmbedder, as_adapter
from queryfit.embedders.base import Kind
from queryfit.embedders.registry import is_api_model, provider_of
from queryfit.errors import ServeError

#: The API providers built on queryfit's HTTP layer, which take ``max_retries``.
_RETRYING = ("openai", "azure-openai", "cohere", "voyage")


def load_model(
    adapter: str | Path,
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    upstream_retries: int | None = None,
    force: bool = False,
) -> AdaptedEmbedder:
    """The adapter folder with its base model (``model`` overrides the recorded one), checked.

    The adapter must have been trained for that model and its dimension (unless ``force``): the
    model is loaded, or the API probed once, here, so a mismatch stops the server before it
    listens rather than on the first request. ``base_url``, ``api_key`` and
    ``upstream_retries`` go to an API model only.
    """
    loaded = as_adapter(adapter, force=force)
    spec = model or loaded.base_model.id
    if not spec:
        raise ServeError(
            f"{adapter} does not record its base model; pass --model provider:name "
            "(e.g. --model openai:text-embedding-3-small --base-url http://localhost:11434/v1)"
        )
    options: dict[str, Any] = {}
    remote = is_api_model(spec)
    given = {"--base-url": base_url, "--upstream-api-key": api_key}
    if not remote and any(v is not None for v in given.values()):
        flags = ", ".join(k for k, v in given.items() if v is not None)
        raise ServeError(
            f"{flags} apply to API models (openai:, azure-openai:, cohere:, voyage:, litellm:), "
            f"not {spec}; e.g. --model openai:nomic-embed-text --base-url http://localhost:11434/v1"
        )
    if base_url is not None:
        options["base_url"] = base_url
    if api_key is not None:
        options["api_key"] = api_key
    if upstream_retries is not None and provider_of(spec) in _RETRYING:
        if upstream_retries < 0:
            raise ServeError(f"--upstream-retries must be 0 or more, not {upstream_retries}")
        options["max_retries"] = upstream_retries
    embedder = AdaptedEmbedder.from_pretrained(loaded, spec, force=force, **options)
    _ = embedder.dim  # loads the model or probes the API once; checks the adapter's dimension
    return embedder


def is_remote(embedder: AdaptedEmbedder) -> bool:
    """True when the base vectors come from an API: its failures are a bad gateway's (502)."""
    return is_api_model(embedder.base.model_id)


def _tokenizer(embedder: AdaptedEmbedder) -> Any:
    """The base model's own tokenizer when it is a local sentence-transformers model."""
    from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder

    base = embedder.base
    if isinstance(base, SentenceTransformerEmbedder):
        return getattr(base.model, "tokenizer", None), base.model.max_seq_length
    return None, None


class ModelRunner:
    """``(texts, kind) -> (vectors, tokens)``: what the micro-batcher calls on its thread.

    Tokens are counted with the base model's tokenizer (as many as the model reads, truncation
    included) for a local model; for an API model, which does not report them through queryfit,
    they are estimated as one per four characters, OpenAI's rule of thumb.
    """

    def __init__(self, embedder: AdaptedEmbedder) -> None:
        self.embedder = embedder
        self._tokenizer, self._max_length = _tokenizer(embedder)

    def count_tokens(self, texts: Sequence[str], kind: Kind) -> list[int]:
        base = self.embedder.base
        prefix = base.query_prefix if kind == "query" else base.document_prefix
        full = [prefix + t for t in texts]
        if self._tokenizer is not None:
            ids = self._tokenizer(
                full, add_special_tokens=True, truncation=True, max_length=self._max_length
            )["input_ids"]
            return [len(x) for x in ids]
        return [max(1, math.ceil(len(t) / 4)) for t in full]

    def __call__(self, texts: list[str], kind: Kind) -> tuple[np.ndarray, list[int]]:
        if kind == "query":
            vectors = self.embedder.embed_queries(texts)
        else:
            vectors = self.embedder.embed_documents(texts)
        return vectors, self.count_tokens(texts, kind)
