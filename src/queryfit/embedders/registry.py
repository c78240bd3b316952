"""Turn a model spec such as ``"sentence-transformers:all-MiniLM-L6-v2"`` into an embedder.

Specs are ``provider:name``. Providers register a factory here, so new ones (``openai:``,
``cohere:``, ...) plug in without the CLI or the store knowing about them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from queryfit.embedders.base import BaseEmbedder, Embedder
from queryfit.embedders.bundled import BUNDLED_MODEL_ALIASES, DEFAULT_MODEL
from queryfit.errors import EmbedderError

Factory = Callable[[str, dict[str, Any]], Embedder]

_PROVIDERS: dict[str, Factory] = {}
_ALIASES: dict[str, str] = {"st": "sentence-transformers"}
_PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")


#: Providers whose models are called over the network (they take base_url, api_key, dimensions).
API_PROVIDERS = ("openai", "azure-openai", "cohere", "voyage", "litellm")


def provider_of(spec: Any) -> str:
    """The provider of a spec, aliases resolved (``"azure:x"`` -> ``"azure-openai"``); ``""``
    for an embedder object or a spec without one (a local folder or model name)."""
    if not isinstance(spec, str):
        return ""
    head, sep, _ = spec.partition(":")
    return _normalise_provider(head) if sep else ""


def is_api_model(spec: Any) -> bool:
    """Whether ``spec`` names a model behind an API (as opposed to a local one)."""
    return provider_of(spec) in API_PROVIDERS


def _normalise_provider(prefix: str) -> str:
    name = prefix.strip().lower().removesuffix(":")
    return _ALIASES.get(name, name)


def register_provider(prefix: str, factory: Factory) -> None:
    """Make ``prefix:name`` specs resolve through ``factory(name, options)``.

    ``options`` holds ``query_prefix``, ``document_prefix`` and any extra keyword arguments given
    to :func:`get_embedder`. Registering an existing prefix replaces it (useful in tests).
    """
    name = prefix.strip().lower().removesuffix(":")
    if not _PROVIDER_RE.match(name):
        raise ValueError(
            f"provider prefix must be lowercase letters, digits, '_', '-' or '.', not {prefix!r}"
        )
    if not callable(factory):
        raise TypeError("factory must be callable: (name, options) -> Embedder")
    _PROVIDERS[name] = factory


def known_providers() -> list[str]:
    """Registered provider prefixes, aliases included, for error messages and help text."""
    return sorted(set(_PROVIDERS) | set(_ALIASES))


def _sentence_transformers_factory(name: str, options: dict[str, Any]) -> Embedder:
    # Imported here so that resolving other providers never imports the heavier module.
    from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name, **options)


register_provider("sentence-transformers", _sentence_transformers_factory)


def _lazy_factory(module: str, cls: str) -> Factory:
    """A factory that imports its provider module on first use, keeping resolution cheap."""

    def factory(name: str, options: dict[str, Any]) -> Embedder:
        import importlib

        embedder_cls = getattr(importlib.import_module(f"queryfit.embedders.{module}"), cls)
        try:
            return embedder_cls(name, **options)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise EmbedderError(
                f"{embedder_cls.__name__} does not accept that option ({exc}); see "
                f"help({embedder_cls.__module__}.{embedder_cls.__name__})"
            ) from None

    return factory


register_provider("openai", _lazy_factory("openai_compatible", "OpenAIEmbedder"))
register_provider("azure-openai", _lazy_factory("openai_compatible", "AzureOpenAIEmbedder"))
register_provider("cohere", _lazy_factory("cohere", "CohereEmbedder"))
register_provider("voyage", _lazy_factory("voyage", "VoyageEmbedder"))
register_provider("litellm", _lazy_factory("litellm", "LiteLLMEmbedder"))
_ALIASES.update({"azure": "azure-openai", "voyageai": "voyage"})


def _is_embedder(obj: object) -> bool:
    # BaseEmbedder first: the Protocol check reads every attribute, which for lazy embedders
    # (dim) would load the model just to answer isinstance.
    if isinstance(obj, BaseEmbedder):
        return True
    if isinstance(obj, str | Path) or obj is None:
        return False
    return isinstance(obj, Embedder)


def get_embedder(
    spec: str | Path | Embedder | None = None,
    *,
    query_prefix: str = "",
    document_prefix: str = "",
    **options: Any,
) -> Embedder:
    """Resolve a spec to an embedder; nothing is loaded until the first embedding.

    Specs: ``sentence-transformers:<name-or-folder>`` (``st:``), ``openai:<model>`` (any
    OpenAI-compatible endpoint with ``base_url=``), ``azure-openai:<deployment>``,
    ``cohere:<model>``, ``voyage:<model>``, ``litellm:<model>``. Options such as ``base_url``,
    ``api_key``, ``dimensions``, ``batch_size``, ``concurrency``, ``timeout`` go to the provider.
    A LlamaIndex ``BaseEmbedding``, a LangChain ``Embeddings`` or a plain function
    ``list[str] -> vectors`` is wrapped (``model_id=`` names it where it cannot be read off).

    ``None`` means the bundled default. ``"st:"`` is short for ``"sentence-transformers:"``. A
    spec without a provider is tried as a local model folder (or a hub name in the local cache)
    for sentence-transformers. An embedder instance is returned unchanged.
    """
    if spec is not None and not isinstance(spec, str | Path):
        if not _is_embedder(spec):
            # A LlamaIndex BaseEmbedding, a LangChain Embeddings or a plain function.
            from queryfit.embedders.frameworks import wrap_object

            wrapped = wrap_object(
                spec, {"query_prefix": query_prefix, "document_prefix": document_prefix, **options}
            )
            if wrapped is not None:
                return wrapped
            raise EmbedderError(
                f"cannot use {type(spec).__name__} as an embedder: expected a model spec string "
                "such as 'sentence-transformers:all-MiniLM-L6-v2', an Embedder, a LlamaIndex "
                "BaseEmbedding, a LangChain Embeddings or a function list[str] -> vectors"
            )
        if options:
            raise EmbedderError(
                f"options {sorted(options)} cannot be applied to an existing embedder; "
                "set them when creating it"
            )
        for label, given, current in (
            ("query_prefix", query_prefix, spec.query_prefix),
            ("document_prefix", document_prefix, spec.document_prefix),
        ):
            if given and given != current:
                raise EmbedderError(
                    f"{label}={given!r} differs from the embedder's own {current!r}; "
                    "set prefixes when creating the embedder"
                )
        return spec

    text = DEFAULT_MODEL if spec is None else str(spec).strip()
    if not text:
        raise EmbedderError(f"empty model spec; try {DEFAULT_MODEL!r}")
    options = {"query_prefix": query_prefix, "document_prefix": document_prefix, **options}

    head, sep, rest = text.partition(":")
    if sep:
        provider = _normalise_provider(head)
        if provider in _PROVIDERS:
            if not rest.strip():
                raise EmbedderError(f"model spec {text!r} names a provider but no model")
            return _PROVIDERS[provider](rest.strip(), options)

    # No (known) provider: a local folder or a bare model name means sentence-transformers.
    is_dir = Path(text).expanduser().is_dir()
    if is_dir or text in BUNDLED_MODEL_ALIASES:
        return _PROVIDERS["sentence-transformers"](text, options)
    if sep and _PROVIDER_RE.match(head.strip().lower()) and len(head.strip()) > 1:
        raise EmbedderError(
            f"unknown embedding provider {head!r} in model spec {text!r}; known providers: "
            f"{', '.join(known_providers())} (e.g. {DEFAULT_MODEL!r})"
        )
    return _PROVIDERS["sentence-transformers"](text, options)
