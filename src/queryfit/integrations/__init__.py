"""Adapted models inside other frameworks: LlamaIndex and LangChain.

Each module imports its framework, so import the one you need (``queryfit.integrations.llamaindex``
needs ``pip install 'queryfit[llamaindex]'``, ``queryfit.integrations.langchain`` needs
``pip install 'queryfit[langchain]'``). The rest of queryfit never imports either framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from queryfit.adapters import Adapter, check_fits
from queryfit.errors import QueryfitError


class MissingExtraError(QueryfitError, ImportError):
    """An integration's framework is not installed; the message names the extra to install."""


def require(module: str, extra: str, what: str) -> None:
    """Import ``module`` or raise MissingExtraError saying which extra brings it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs {module.split('.')[0].replace('_', '-')}; install it with "
            f"`pip install 'queryfit[{extra}]'`"
        ) from exc


def adapt_query(adapter: Adapter, vector: Any, *, check: bool) -> list[float]:
    """One base-model query vector through ``adapter``, as a list of floats.

    With ``check`` a vector of another size than the adapter's is refused with check_fits' message
    (the comparison is cheap, so it runs on every query).
    """
    array = np.asarray(vector, dtype=np.float32)
    if check:
        check_fits(adapter, None, int(array.shape[-1]))
    return adapter.transform(array).tolist()
