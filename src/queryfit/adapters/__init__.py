"""Query-side adapters: numpy to apply, safetensors + JSON to store."""

from .base import FAMILIES, Adapter
from .io import load_adapter, save_adapter

__all__ = ["FAMILIES", "Adapter", "load_adapter", "save_adapter"]
