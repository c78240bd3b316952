"""Query-side adapters: numpy to apply, safetensors + JSON to store."""

from queryfit.adapters.base import FAMILIES, Adapter
from queryfit.adapters.io import check_fits, load_adapter, save_adapter

__all__ = ["FAMILIES", "Adapter", "check_fits", "load_adapter", "save_adapter"]
