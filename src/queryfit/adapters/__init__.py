"""Query-side adapters: numpy to apply, safetensors + JSON to store, other formats in and out."""

from queryfit.adapters.base import FAMILIES, Adapter
from queryfit.adapters.convert import as_adapter
from queryfit.adapters.io import check_fits, load_adapter, save_adapter
from queryfit.adapters.record import BaseModel

__all__ = [
    "FAMILIES",
    "Adapter",
    "BaseModel",
    "as_adapter",
    "check_fits",
    "load_adapter",
    "save_adapter",
]
