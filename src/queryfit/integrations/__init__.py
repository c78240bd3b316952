"""Adapted models inside other frameworks: LlamaIndex and LangChain.

Each module imports its framework, so import the one you need (``queryfit.integrations.llamaindex``
needs ``pip install 'queryfit[llamaindex]'``, ``queryfit.integrations.langchain`` needs
``pip install 'queryfit[langchain]'``). The rest of queryfit never imports either framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from queryfit.adapters import Adapter, check_fits
from queryfit.errors import MissingExtraError, require_extra

# The framework modules ask for their framework through these names.
require = require_extra
__all__ = ["MissingExtraError", "adapt_query", "require"]


def adapt_query(adapter: Adapter, vector: Any, *, check: bool) -> list[float]:
    """One base-model query vector through ``adapter``, as a list of floats.

    With ``check`` a vector of another size than the adapter's is refused with check_fits' message
    (the comparison is cheap, so it runs on every query).
    """
    array = np.asarray(vector, dtype=np.float32)
    if check:
        check_fits(adapter, None, int(array.shape[-1]))
    return adapter.transform(array).tolist()
