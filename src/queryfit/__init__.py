"""queryfit: make any embedding model retrieve better on your documents without re-embedding them."""

__version__ = "0.1.0"
