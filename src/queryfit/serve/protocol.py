"""The OpenAI embeddings API as plain functions: request checks, response and error bodies.

Kept apart from the web framework so every rule (what ``input`` may be, which model id means
queries, how an error looks) is testable without a server, and every refusal is an
:class:`ApiError` that the app turns into OpenAI's error shape, never a traceback.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from queryfit.embedders.base import Kind
from queryfit.serve.config import ServeConfig

ENCODINGS = ("float", "base64")
#: ``input_type`` values and the kind each means (Voyage's names, and Cohere's search_ ones).
INPUT_TYPES: dict[str, Kind] = {
    "query": "query",
    "document": "document",
    "search_query": "query",
    "search_document": "document",
}


class ApiError(Exception):
    """A refusal with an HTTP status, in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's clients parse into their exceptions."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI answers errors."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked ``POST /v1/embeddings`` body."""

    model: str
    texts: list[str]
    kind: Kind
    encoding: str


def parse_json(raw: bytes) -> Any:
    """The decoded body, or a 400 saying it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None


def _texts(value: Any, max_inputs: int) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ApiError(
            400, "'input' must be a string or a list of strings", param="input", code="invalid"
        )
    if not value:
        raise ApiError(400, "'input' is an empty list; send at least one text", param="input")
    if len(value) > max_inputs:
        raise ApiError(
            400,
            f"'input' has {len(value)} texts, more than this server's limit of {max_inputs} per "
            "request; split it into several requests",
            param="input",
            code="too_many_inputs",
        )
    for i, text in enumerate(value):
        if isinstance(text, int | list):
            raise ApiError(
                400,
                "'input' holds token ids; token arrays are not supported, send the text itself",
                param="input",
            )
        if not isinstance(text, str):
            raise ApiError(
                400, f"'input[{i}]' is {type(text).__name__}, not a string", param="input"
            )
        if not text:
            raise ApiError(400, f"'input[{i}]' is an empty string", param="input")
    return value


def parse_request(body: Any, config: ServeConfig, dim: int) -> EmbeddingRequest:
    """Check an embeddings request against the API and this server's limits.

    The kind of vector is decided by ``input_type`` when given, else by the model id: the
    server's name means queries (adapted), ``<name>-document`` means documents (base vectors).
    """
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(
            400,
            f"'model' is required: {config.query_model!r} for queries or "
            f"{config.document_model!r} for documents",
            param="model",
        )
    if model not in (config.query_model, config.document_model):
        raise ApiError(
            404,
            f"the model {model!r} does not exist here; this server has {config.query_model!r} "
            f"(queries, adapted) and {config.document_model!r} (documents, base vectors)",
            param="model",
            code="model_not_found",
        )
    if "input" not in body:
        raise ApiError(400, "'input' is required: a string or a list of strings", param="input")
    texts = _texts(body["input"], config.max_inputs)
    encoding = body.get("encoding_format")
    encoding = "float" if encoding is None else encoding
    if encoding not in ENCODINGS:
        raise ApiError(
            400,
            f"'encoding_format' must be 'float' or 'base64', not {encoding!r}",
            param="encoding_format",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != dim:
        raise ApiError(
            400,
            f"'dimensions' is not supported: this model's vectors have {dim} dimensions and an "
            "adapter cannot shorten them; leave 'dimensions' out",
            param="dimensions",
            code="unsupported_parameter",
        )
    input_type = body.get("input_type")
    if input_type is None:
        kind: Kind = "query" if model == config.query_model else "document"
    elif isinstance(input_type, str) and input_type in INPUT_TYPES:
        kind = INPUT_TYPES[input_type]
    else:
        raise ApiError(
            400,
            f"'input_type' must be 'query' or 'document', not {input_type!r}",
            param="input_type",
        )
    return EmbeddingRequest(model=model, texts=texts, kind=kind, encoding=encoding)


def encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    """A float list, or base64 of little-endian float32 bytes (what OpenAI's clients decode)."""
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()
    return np.asarray(vector, dtype=np.float32).tolist()


def response_body(
    request: EmbeddingRequest, vectors: np.ndarray, tokens: list[int]
) -> dict[str, Any]:
    """OpenAI's ``{"object": "list", "data": [...], "model", "usage"}`` for one request."""
    data = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v, request.encoding)}
        for i, v in enumerate(vectors)
    ]
    used = int(sum(tokens))
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }


def models_body(config: ServeConfig, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the query id (adapted) and the document id (base vectors)."""
    return {"object": "list", "data": [model_card(m, created) for m in model_ids(config)]}


def model_ids(config: ServeConfig) -> list[str]:
    return [config.query_model, config.document_model]


def model_card(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "queryfit"}
