"""The adapter's base model as an embedder: the model its query vectors come from.

``adapter.json`` records the base model's id, prefixes and (for an API model) endpoint and
dimensions; every place that needs the model again (evaluate, search, serve, the CLI's endpoint
options) builds it here, so it is the same model with the same settings everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from queryfit.adapters.base import Adapter
from queryfit.embedders import Embedder, get_embedder


def base_embedder(adapter: Adapter, model: Any = None, **options: Any) -> Embedder:
    """The adapter's base model (``model`` overrides it), with the prefixes, endpoint and
    dimensions it was trained with; ``options`` (e.g. ``api_key``) go to the provider.

    An embedder object given as ``model`` is used as it is.
    """
    if model is not None and not isinstance(model, str | Path):
        return get_embedder(model)
    recorded = adapter.base_model
    spec = model if model is not None else recorded.id
    if spec == recorded.id:
        settings = recorded.model_options()
    else:  # another model: only the prefixes carry over
        settings = {
            "query_prefix": recorded.query_prefix,
            "document_prefix": recorded.document_prefix,
        }
    return get_embedder(spec, **(settings | options))
