"""Query-side adapters: numpy to apply, safetensors + JSON to store."""

from .base import FAMILIES, Adapter
from .io import check_fits, load_adapter, save_adapter

__all__ = ["FAMILIES", "Adapter", "check_fits", "load_adapter", "save_adapter"]
