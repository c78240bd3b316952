"""Embedding models behind one small interface, resolved from ``provider:name`` specs.

Importing this package is cheap: no model library is imported until a model is first used.
"""

from __future__ import annotations

from queryfit.embedders.base import BaseEmbedder, CallableEmbedder, Embedder, Kind
from queryfit.embedders.registry import (
    DEFAULT_MODEL,
    default_model_path,
    get_embedder,
    known_providers,
    register_provider,
)
from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder

__all__ = [
    "DEFAULT_MODEL",
    "BaseEmbedder",
    "CallableEmbedder",
    "Embedder",
    "Kind",
    "SentenceTransformerEmbedder",
    "default_model_path",
    "get_embedder",
    "known_providers",
    "register_provider",
]
