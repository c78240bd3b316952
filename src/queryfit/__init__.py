"""queryfit: better retrieval from any embedding model, without re-embedding documents."""

__version__ = "0.1.0"
