"""Error bodies that echo the request's headers, as some proxies answer a rejected key.

Used by the test servers' ``echo_headers`` mode: a client that shows the server's error message
must mask the API key found in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Echoed first, so that a client's 200-character excerpt of the body reaches them.
CREDENTIALS = ("authorization", "api-key", "x-api-key")


def error_body(
    status: int, message: str, headers: Iterable[tuple[str, str]], mode: str | None
) -> tuple[Any, str]:
    """``(payload, content type)`` of an error answer; ``mode`` is None, "json" or "text"."""
    if mode is None:
        return {"error": {"message": message}}, "application/json"
    items = sorted(headers, key=lambda kv: kv[0].lower() not in CREDENTIALS)
    echoed = "; ".join(f"{k}: {v}" for k, v in items)
    if mode == "text":
        return f"{status} {message}. Request headers: {echoed}\n".encode(), "text/plain"
    return {"error": {"message": f"{message}; headers: {echoed}"}}, "application/json"
