"""Running the app with uvicorn: in the foreground (the CLI) or in a thread (tests, notebooks).

On SIGTERM or Ctrl-C uvicorn stops listening, lets every request in flight finish (up to
``drain_timeout`` seconds), then the app's shutdown finishes the micro-batcher's queue: a
rolling restart loses no request that was already accepted.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from queryfit.errors import ServeError


def _require_uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ServeError(
            f"queryfit serve needs uvicorn ({exc}); install it with `pip install 'queryfit[serve]'`"
        ) from None
    return uvicorn


def require_extra() -> None:
    """Fail at once, before any model loads, when the ``serve`` extra is not installed."""
    from queryfit.serve.app import _require_fastapi

    _require_fastapi()
    _require_uvicorn()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), or a one-line error."""
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be between 0 and 65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(
            f"cannot listen on {host} ({exc.strerror}); pass an address of this machine with "
            "--host, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        # create_server's own message repeats the address: the errno says enough.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ServeError(
            f"cannot listen on {host}:{port} ({reason}); choose another --port or --host"
        ) from None


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: Any, drain_timeout: float, log_level: str, on_ready: Callable[[], None] | None):
    uvicorn = _require_uvicorn()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready()

    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level=log_level,
        access_log=log_level in ("debug", "trace"),
        timeout_graceful_shutdown=drain_timeout,
        server_header=False,
    )
    return Server(config)


def serve(
    app: Any,
    sock: socket.socket,
    *,
    drain_timeout: float = 30.0,
    log_level: str = "warning",
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or SIGINT, then drain and return normally.

    ``on_ready`` runs once the app has started and the socket accepts requests.
    """
    server = _server(app, drain_timeout, log_level, on_ready)
    # uvicorn re-raises the signal it stopped on after its graceful shutdown, to the handler that
    # was in place before it; a quiet handler makes a drained stop a normal return (exit 0).
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise ServeError("the server did not start; see the messages above")


class BackgroundServer:
    """The app on ``127.0.0.1`` (any free port) in a thread: ``with BackgroundServer(app) as s:``.

    ``s.url`` is ``http://127.0.0.1:PORT``; leaving the block drains and stops it.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, *, drain_timeout: float = 5.0
    ) -> None:
        self._ready = threading.Event()
        self._sock = bind(host, port)
        self.url = url_of(self._sock)
        self._server = _server(app, drain_timeout, "warning", self._ready.set)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="queryfit-serve", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None or not self._server.started:
            raise ServeError(f"the server did not start: {self._error or 'see the log above'}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
