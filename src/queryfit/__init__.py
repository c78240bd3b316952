"""queryfit: better retrieval from any embedding model, without re-embedding documents.

``import queryfit`` stays light: names load on first use, so applying an adapter never pulls in
torch or a model library.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "embed": "api",
    "train": "api",
    "evaluate": "api",
    "report": "api",
    "generate": "api",
    "run": "workflow",
    "search": "api",
    "open_source": "sources",
    "train_vectors": "api_vectors",
    "evaluate_vectors": "api_vectors",
    "Adapter": "adapters",
    "load_adapter": "adapters",
    "save_adapter": "adapters",
    "QADataset": "data",
    "load_dataset": "data",
    "save_dataset": "data",
    "split_dataset": "data",
    "get_embedder": "embedders",
    "AdaptedEmbedder": "adapted",
    "export_adapter": "adapters.convert",
    "load_llamaindex_adapter": "adapters.convert",
    "EmbeddingStore": "store",
    "TrainConfig": "training",
    "GenerateConfig": "generation",
    "QueryfitError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'queryfit' has no attribute {name!r}")
