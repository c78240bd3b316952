"""Any OpenAI-compatible ``/v1/embeddings`` endpoint: OpenAI, Azure OpenAI, Ollama, vLLM, TEI...

``openai:<model>`` talks to OpenAI by default; ``base_url`` (``--base-url``) points it at any server
speaking the same protocol, such as Ollama (``http://localhost:11434/v1``), vLLM
(``http://localhost:8000/v1``), Hugging Face TEI or LM Studio. ``azure-openai:<deployment>`` talks
to an Azure OpenAI resource. Only ``httpx`` is used: no vendor SDK is needed.

Example::

    from queryfit.embedders import get_embedder
    emb = get_embedder("openai:text-embedding-3-small", dimensions=512)        # $OPENAI_API_KEY
    local = get_embedder("openai:nomic-embed-text", base_url="http://localhost:11434/v1")
"""

from __future__ import annotations

from typing import Any

from queryfit._http import endpoint_label, env_or
from queryfit.embedders.base import Kind
from queryfit.embedders.http import HTTPEmbedder
from queryfit.errors import EmbedderError

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Sizes of OpenAI's own models (before any ``dimensions`` shortening).
OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: Models that accept the ``dimensions`` request field.
_SHORTENABLE = ("text-embedding-3",)
AZURE_API_VERSION = "2024-10-21"


class OpenAIEmbedder(HTTPEmbedder):
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings``.

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` or OpenAI's own; ``api_key`` to
    ``$OPENAI_API_KEY`` (required for OpenAI itself, optional for local servers). ``dimensions``
    asks the server for shorter vectors (text-embedding-3 models and servers that support it);
    ``dim`` declares the size without sending anything, which saves the one probe request that an
    unknown model otherwise costs. OpenAI accepts up to 2048 inputs per request.
    """

    provider = "openai"
    provider_max_batch = 2048
    key_env = ("OPENAI_API_KEY",)
    known_dims = OPENAI_DIMS

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        **options: Any,
    ) -> None:
        base_url = env_or(base_url, "OPENAI_BASE_URL") or OPENAI_BASE_URL
        api_key = env_or(api_key, *self.key_env)
        super().__init__(model, base_url=base_url, api_key=api_key, **options)
        if self._is_default_endpoint() and not self._api_key:
            raise EmbedderError(
                f"{self.model_id} needs an API key: set $OPENAI_API_KEY or pass --api-key; "
                "for a local OpenAI-compatible server pass --base-url (e.g. "
                "http://localhost:11434/v1 for Ollama)"
            )
        if (
            self.dimensions is not None
            and self._is_default_endpoint()
            and not self.model.startswith(_SHORTENABLE)
        ):
            raise EmbedderError(
                f"{self.model_id} cannot shorten its vectors; drop --dimensions or use a "
                "text-embedding-3 model"
            )

    def _is_default_endpoint(self) -> bool:
        return endpoint_label(self.base_url) == endpoint_label(OPENAI_BASE_URL)

    def _url(self) -> str:
        return f"{self.base_url}/embeddings"

    def _body(self, texts: list[str], kind: Kind) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        return body

    def _parse(self, payload: Any, n: int) -> list[list[float]]:
        return parse_openai_data(payload, n)


def parse_openai_data(payload: Any, n: int) -> list[list[float]]:
    """Vectors from ``{"data": [{"index": i, "embedding": [...]}, ...]}``, in input order."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise ValueError("no 'data' list in the answer")
    data = payload["data"]
    if len(data) != n:
        raise ValueError(f"{len(data)} embeddings for {n} inputs")
    if all(isinstance(item, dict) and "index" in item for item in data):
        data = sorted(data, key=lambda item: item["index"])
        if [item["index"] for item in data] != list(range(n)):
            raise ValueError("embedding indices do not match the inputs")
    out = []
    for item in data:
        vector = item["embedding"]
        if not isinstance(vector, list):
            raise ValueError("an embedding is not a list of numbers (use encoding_format=float)")
        out.append(vector)
    return out


class AzureOpenAIEmbedder(OpenAIEmbedder):
    """An Azure OpenAI deployment: ``azure-openai:<deployment>``.

    ``base_url`` is the resource endpoint (``$AZURE_OPENAI_ENDPOINT``, e.g.
    ``https://my-resource.openai.azure.com``); ``api_key`` defaults to ``$AZURE_OPENAI_API_KEY``;
    ``api_version`` to ``$AZURE_OPENAI_API_VERSION`` or 2024-10-21. The model behind the deployment
    can be named with ``model`` so its size is known without a probe.
    """

    provider = "azure-openai"
    key_env = ("AZURE_OPENAI_API_KEY",)

    def __init__(
        self,
        deployment: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_version: str | None = None,
        model: str | None = None,
        **options: Any,
    ) -> None:
        endpoint = env_or(base_url, "AZURE_OPENAI_ENDPOINT")
        if not endpoint:
            raise EmbedderError(
                f"azure-openai:{deployment} needs the resource endpoint: set "
                "$AZURE_OPENAI_ENDPOINT or pass --base-url https://<resource>.openai.azure.com"
            )
        key = env_or(api_key, *self.key_env)
        if not key:
            raise EmbedderError(
                f"azure-openai:{deployment} needs an API key: set $AZURE_OPENAI_API_KEY or pass "
                "--api-key"
            )
        self.api_version = env_or(api_version, "AZURE_OPENAI_API_VERSION") or AZURE_API_VERSION
        if model and "dim" not in options and "dimensions" not in options:
            options["dim"] = OPENAI_DIMS.get(model)
        super().__init__(deployment, base_url=endpoint, api_key=key, **options)

    def _is_default_endpoint(self) -> bool:
        return False

    def _url(self) -> str:
        return (
            f"{self.base_url}/openai/deployments/{self.model}/embeddings"
            f"?api-version={self.api_version}"
        )

    def _auth_headers(self) -> dict[str, str]:
        return {"api-key": self._api_key} if self._api_key else {}
