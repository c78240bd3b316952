"""Adapted models inside other frameworks: LlamaIndex and LangChain.

Each module imports its framework, so import the one you need (``queryfit.integrations.llamaindex``
needs ``pip install 'queryfit[llamaindex]'``, ``queryfit.integrations.langchain`` needs
``pip install 'queryfit[langchain]'``). The rest of queryfit never imports either framework.
"""

from __future__ import annotations

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
