"""Embedding-model options from the command line: --base-url, --dimensions, --api-key.

The CLI passes a model spec string through unchanged when no option is given, so the API's own
defaults apply; with options, the spec is resolved here and the embedder object is passed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from queryfit.embedders.base import BaseEmbedder
from queryfit.embedders.registry import get_embedder
from queryfit.errors import EmbedderError

API_PROVIDERS = ("openai", "azure-openai", "cohere", "voyage", "litellm")


def resolve_model(
    model: str | None,
    *,
    base_url: str | None = None,
    dimensions: int | None = None,
    api_key: str | None = None,
    adapter: str | Path | None = None,
    device: str | None = None,
) -> Any:
    """``model`` unchanged when no option is set, else the embedder built with them.

    With ``adapter`` (a folder) and no ``model``, the adapter's own base model and prefixes are
    used, as ``queryfit evaluate`` does by default. ``device`` (other than ``"auto"``, the
    default) places a local sentence-transformers model; API models ignore it.
    """
    options: dict[str, Any] = {
        k: v
        for k, v in (("base_url", base_url), ("dimensions", dimensions), ("api_key", api_key))
        if v is not None
    }
    if not options and device not in (None, "auto"):
        return _local_on_device(model, adapter, device)
    if not options:
        return model
    prefixes: dict[str, str] = {}
    if model is None and adapter is not None:
        from queryfit.adapted import as_adapter

        loaded = as_adapter(adapter, force=True)
        model = loaded.base_model.get("id")
        prefixes = {
            "query_prefix": loaded.base_model.get("query_prefix", ""),
            "document_prefix": loaded.base_model.get("document_prefix", ""),
        }
    provider = (model or "").partition(":")[0].strip().lower() if model and ":" in model else ""
    if provider in ("azure", "voyageai"):
        provider = {"azure": "azure-openai", "voyageai": "voyage"}[provider]
    if provider not in API_PROVIDERS:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        raise EmbedderError(
            f"{flags} apply to API models ({', '.join(p + ':' for p in API_PROVIDERS)}), not "
            f"{model or 'the default local model'}; e.g. --model openai:text-embedding-3-small "
            "--base-url http://localhost:11434/v1"
        )
    embedder = get_embedder(model, **prefixes, **options)
    assert isinstance(embedder, BaseEmbedder)
    return embedder


def _local_on_device(model: str | None, adapter: str | Path | None, device: str) -> Any:
    """The sentence-transformers embedder on ``device``; other providers' specs unchanged."""
    prefixes: dict[str, str] = {}
    if model is None and adapter is not None:
        from queryfit.adapted import as_adapter

        loaded = as_adapter(adapter, force=True)
        model = loaded.base_model.get("id")
        prefixes = {
            "query_prefix": loaded.base_model.get("query_prefix", ""),
            "document_prefix": loaded.base_model.get("document_prefix", ""),
        }
    provider = model.partition(":")[0].strip().lower() if model and ":" in model else ""
    if model and provider not in ("sentence-transformers", "st"):
        return model  # an API model: the device is the provider's business
    return get_embedder(model, **prefixes, device=device)
