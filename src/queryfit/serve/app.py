"""The HTTP app: OpenAI's embeddings API in front of an adapted model (FastAPI).

``POST /v1/embeddings`` answers with adapted query vectors for the server's name and with the
base model's document vectors for ``<name>-document`` (or as ``input_type`` says); ``GET
/v1/models`` lists both; ``GET /health`` needs no token. Every refusal is OpenAI's error shape
with a one-line message, so OpenAI's clients raise their usual exceptions; nothing a client
sends can produce a traceback in its answer.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at run
time, and ``fastapi`` is imported lazily, inside :func:`create_app`.
"""

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from queryfit.adapted import AdaptedEmbedder
from queryfit.errors import QueryfitError, ServeError
from queryfit.serve.batcher import MicroBatcher
from queryfit.serve.config import ServeConfig
from queryfit.serve.model import ModelRunner, is_remote
from queryfit.serve.protocol import (
    ApiError,
    error_body,
    model_card,
    model_ids,
    models_body,
    parse_json,
    parse_request,
    response_body,
)

logger = logging.getLogger("queryfit.serve")
#: Bytes of an oversized body read and dropped before answering 413, so that the client, still
#: sending, reads the answer instead of a reset connection (nginx's "lingering close").
DISCARD_LIMIT = 64 * 1024 * 1024


def _require_fastapi() -> Any:
    try:
        import fastapi
    except ImportError as exc:
        raise ServeError(
            f"queryfit serve needs FastAPI and uvicorn ({exc}); install them with "
            "`pip install 'queryfit[serve]'`"
        ) from None
    return fastapi


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import Response

    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _error_response(exc: ApiError) -> Any:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(exc.status, exc.body(), headers)


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, or a 413 once it passes ``limit`` bytes (the rest is read and dropped)."""
    declared = request.headers.get("content-length")
    too_big = ApiError(
        413,
        f"the request body is larger than this server's limit of {limit:,} bytes; send fewer "
        "or shorter texts per request",
        code="request_too_large",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit + DISCARD_LIMIT:
        raise too_big  # too big even to drain: answer now, the connection closes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit + DISCARD_LIMIT:
            break
    if size > limit:
        raise too_big
    return b"".join(chunks)


def create_app(model: AdaptedEmbedder, config: ServeConfig) -> Any:
    """A FastAPI app serving ``model``; the micro-batcher starts and stops with the app.

    ``model`` should be loaded and checked already (:func:`queryfit.serve.model.load_model`).
    Run it with uvicorn (:func:`queryfit.serve.runner.serve`), or any ASGI server.
    """
    fastapi = _require_fastapi()
    from starlette.exceptions import HTTPException

    runner = ModelRunner(model)
    batcher = MicroBatcher(runner, max_batch=config.max_batch, max_wait=config.max_wait_ms / 1000)
    remote = is_remote(model)
    dim = int(model.dim)
    created = int(time.time())
    expected = hashlib.sha256(config.api_key.encode()).digest() if config.api_key else None

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()  # uvicorn has drained the connections by now
            close = getattr(model.base, "close", None)
            if callable(close):
                close()

    app = fastapi.FastAPI(
        title="queryfit serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.batcher = batcher
    app.state.config = config
    app.state.model = model

    def authorize(request: Any) -> None:
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # Hashing first makes the comparison constant-time in the token's length as well.
        given = hashlib.sha256(token.strip().encode()).digest()
        if not (hmac.compare_digest(given, expected) and scheme.lower() == "bearer"):
            raise ApiError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' with "
                "the key this server was started with (--api-key)",
                code="invalid_api_key",
            )

    def failure(exc: Exception) -> ApiError:
        if isinstance(exc, QueryfitError) and remote:
            return ApiError(
                502,
                f"the upstream embedding model failed: {exc}",
                type="api_error",
                code="upstream_error",
            )
        if isinstance(exc, QueryfitError):
            return ApiError(500, f"the model failed: {exc}", type="server_error")
        logger.error("embedding failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return ApiError(
            500, "internal error in queryfit serve; see the server's log", type="server_error"
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: HTTPException) -> Any:
        message = {404: f"no route {request.url.path}; use POST /v1/embeddings"}.get(
            exc.status_code, str(exc.detail)
        )
        return _json(
            exc.status_code,
            error_body(message, type="invalid_request_error"),
            getattr(exc, "headers", None),
        )

    @app.get("/health")
    async def health() -> Any:
        stats = batcher.stats
        return _json(
            200,
            {
                "status": "ok",
                "models": model_ids(config),
                "base_model": model.base.model_id,
                "adapter": model.digest,
                "dim": dim,
                "requests": stats.requests,
                "texts": stats.texts,
                "model_calls": stats.model_calls,
                "largest_call": stats.largest_call,
            },
        )

    @app.get("/v1/models")
    async def list_models(request: fastapi.Request) -> Any:
        try:
            authorize(request)
        except ApiError as exc:
            return _error_response(exc)
        return _json(200, models_body(config, created))

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: fastapi.Request) -> Any:
        try:
            authorize(request)
            if model_id not in model_ids(config):
                raise ApiError(
                    404,
                    f"the model {model_id!r} does not exist here; see GET /v1/models",
                    param="model",
                    code="model_not_found",
                )
        except ApiError as exc:
            return _error_response(exc)
        return _json(200, model_card(model_id, created))

    @app.post("/v1/embeddings")
    async def embeddings(request: fastapi.Request) -> Any:
        try:
            authorize(request)
            raw = await _read_body(request, config.max_body_bytes)
            parsed = parse_request(parse_json(raw), config, dim)
            try:
                vectors, tokens = await batcher.embed(parsed.texts, parsed.kind)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error
                raise failure(exc) from None
            return _json(200, response_body(parsed, vectors, tokens))
        except ApiError as exc:
            return _error_response(exc)

    return app
