"""The ``serve`` verb: the adapted model behind an OpenAI-compatible embeddings endpoint."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import typer

from queryfit.cli.app import app, emit_json, err, user_errors
from queryfit.cli.options import AdapterOpt, BaseUrlOpt, JsonOpt
from queryfit.errors import ServeError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@user_errors
def serve(
    adapter: Path = AdapterOpt,
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Base model [default: the one recorded in adapter.json], e.g. openai:MODEL.",
        show_default=False,
    ),
    base_url: str = BaseUrlOpt,
    upstream_api_key: str = typer.Option(
        None,
        "--upstream-api-key",
        help="Key for an API base model [default: $OPENAI_API_KEY, $COHERE_API_KEY...]; "
        "never logged.",
        show_default=False,
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", "-p", help="Port to listen on (0: any free port)."),
    api_key: str = typer.Option(
        None,
        "--api-key",
        envvar="QUERYFIT_SERVE_API_KEY",
        help="Bearer token every /v1 request must send [default: $QUERYFIT_SERVE_API_KEY; none: "
        "no auth]; never logged.",
        show_default=False,
        show_envvar=False,
    ),
    name: str = typer.Option(
        None,
        "--name",
        help="Model id of adapted query vectors; documents are NAME-document [default: the "
        "adapter folder's name].",
        show_default=False,
    ),
    max_batch: int = typer.Option(64, help="Most texts in one model call."),
    max_wait_ms: float = typer.Option(
        2.0, help="Longest wait for more requests to join a model call, once requests overlap."
    ),
    max_inputs: int = typer.Option(2048, help="Most texts in one request (400 beyond)."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, help="Largest request body (413 beyond)."),
    drain_timeout: float = typer.Option(
        30.0, help="Seconds in-flight requests get to finish after SIGTERM."
    ),
    upstream_retries: int = typer.Option(
        2, help="Retries of a failed call to an API base model before answering 502."
    ),
    force: bool = typer.Option(False, "--force", help="Skip the adapter's base-model check."),
    log_level: str = typer.Option("warning", help="uvicorn's log level (info shows each request)."),
    as_json: bool = JsonOpt,
) -> None:
    """Serve the adapted model over OpenAI's embeddings API, for clients in any language.

    `POST /v1/embeddings` with model `NAME` gives adapted query vectors, with `NAME-document`
    the base model's document vectors (or set `input_type` to `query` / `document`). Concurrent
    requests share model calls. SIGTERM lets requests in flight finish before exiting.

    Example: `queryfit serve --adapter adapter/ --port 8080`, then
    `curl localhost:8080/v1/embeddings -d '{"model": "adapter", "input": "a question"}'`
    """
    # The model's OpenMP threads sleep between calls instead of spinning, which leaves the CPU to
    # the event loop answering HTTP: on a small or busy machine, spinning made requests up to
    # 10x slower (docs/benchmarks.md). Read once when torch loads, so set before it does.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from queryfit.serve import ServeConfig, create_app, load_model, serve
    from queryfit.serve.runner import bind, require_extra, url_of

    require_extra()

    if drain_timeout < 0:
        raise ServeError(f"--drain-timeout must be 0 or more seconds, not {drain_timeout}")
    if log_level not in LOG_LEVELS:
        raise ServeError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
    config = ServeConfig(
        name=name or adapter.resolve().name,
        api_key=api_key,
        max_inputs=max_inputs,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )
    sock = bind(host, port)  # before the model loads: a busy port fails in a second
    url = url_of(sock)
    loaded = load_model(
        adapter,
        model,
        base_url=base_url,
        api_key=upstream_api_key,
        upstream_retries=upstream_retries,
        force=force,
    )
    if not _is_loopback(host) and not api_key:
        err.print(
            f"[yellow]warning:[/] listening on {host} without --api-key: anyone who can reach "
            "this port can use the model",
            highlight=False,
        )

    def ready() -> None:
        info = {
            "url": f"{url}/v1",
            "models": {"query": config.query_model, "document": config.document_model},
            "base_model": loaded.base.model_id,
            "adapter": loaded.digest,
            "dim": loaded.dim,
            "auth": bool(api_key),
        }
        if as_json:
            emit_json(info)
        else:
            sys.stdout.write(
                f"serving {config.query_model} (queries, adapted) and {config.document_model} "
                f"(documents) of {loaded.base.model_id} at {url}/v1"
                + (" (bearer token required)" if api_key else "")
                + "\n"
            )
        sys.stdout.flush()

    app_ = create_app(loaded, config)
    serve(app_, sock, drain_timeout=drain_timeout, log_level=log_level, on_ready=ready)
    err.print("stopped (requests in flight were answered first)", highlight=False)
