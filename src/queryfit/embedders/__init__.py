"""Embedding models behind one small interface, resolved from ``provider:name`` specs.

Importing this package is cheap: no model library is imported until a model is first used.
"""

from __future__ import annotations

from queryfit.embedders.base import BaseEmbedder, CallableEmbedder, Embedder, Kind
from queryfit.embedders.bundled import DEFAULT_MODEL, default_model_path
from queryfit.embedders.cohere import CohereEmbedder
from queryfit.embedders.frameworks import LangChainEmbedder, LlamaIndexEmbedder
from queryfit.embedders.openai_compatible import AzureOpenAIEmbedder, OpenAIEmbedder
from queryfit.embedders.registry import (
    API_PROVIDERS,
    get_embedder,
    is_api_model,
    known_providers,
    register_provider,
)
from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder
from queryfit.embedders.voyage import VoyageEmbedder

__all__ = [
    "API_PROVIDERS",
    "is_api_model",
    "DEFAULT_MODEL",
    "AzureOpenAIEmbedder",
    "BaseEmbedder",
    "CallableEmbedder",
    "CohereEmbedder",
    "Embedder",
    "Kind",
    "LangChainEmbedder",
    "LlamaIndexEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "VoyageEmbedder",
    "default_model_path",
    "get_embedder",
    "known_providers",
    "register_provider",
]
