"""The one HTTP layer for every outbound call: embedding providers and the LLM client alike.

A paid or rate-limited API is only pleasant to use when a few things are done the same way
everywhere, so they live here once, on top of ``httpx``:

* one **pooled, thread-safe** ``httpx.Client`` per user object, opened on first use;
* a **per-request timeout** (the connect phase capped at 10 s, so a dead host fails quickly);
* **retries** with exponential backoff and full jitter on retryable statuses
  (:data:`RETRY_STATUSES`), timeouts, dropped connections and answers the caller cannot parse; a
  refused connection gets fewer retries (:data:`CONNECT_RETRIES`): a server that is down
  stays down a while;
* the server's own pace: ``Retry-After`` (seconds or an HTTP date) and ``retry-after-ms``, up to
  ``max_retry_wait``; a server that asks for longer fails the request at once, saying so;
* **cancellation**: :meth:`HTTPClient.close` stops the retries of requests still in flight;
* **stats** (requests, retries, rate_limited, waited_seconds) kept under a lock, and an
  ``on_wait(reason, seconds)`` hook so a progress bar can show waits as they happen;
* **secret masking**: :func:`mask_secrets` is applied to every message, exception, log line and
  server-error excerpt that leaves this module. A proxy that answers 401 may echo the request's
  ``Authorization`` header in its body; that text reaches the user only with the key replaced.

Callers keep their own words: the layer raises :class:`RequestFailed` (gave up) and
:class:`HTTPStatusError` (a status retrying cannot fix) and each caller turns them into its own
one-line :class:`~queryfit.errors.QueryfitError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

log = logging.getLogger("queryfit.http")

#: HTTP statuses worth another try: rate limits, timeouts at a proxy, and server trouble.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
#: Retries after a refused connection (a server that is down stays down for a while).
CONNECT_RETRIES = 2
#: What a secret is replaced with.
MASK = "***"
#: Secrets at least this long are masked wherever they appear; shorter ones (test keys such as
#: ``"k"``) only as a whole word, so that masking them does not garble every message.
_MIN_ANYWHERE = 8
#: Request headers whose values are credentials, whatever the provider calls them.
_SECRET_HEADER = re.compile(r"auth|api[-_]?key|token|secret|cookie|password|signature", re.I)
#: Environment variables whose values are credentials (LiteLLM reads its keys from these).
_SECRET_ENV = re.compile(r"(API_?KEY|_KEY|TOKEN|SECRET|PASSWORD)$", re.I)
#: Characters of the server's own error message shown to the user.
EXCERPT_CHARS = 200

#: ``on_wait(reason, seconds)``: called before each pause between tries.
WaitHook = Callable[[str, float], None]
T = TypeVar("T")


# -- secrets ----------------------------------------------------------------------------------


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (and its URL- and JSON-escaped forms) replaced by ``***``.

    The one masking helper: every text that may carry something a server echoed goes through it
    before it is shown, raised, logged or written. Mask *before* shortening a text, or half a key
    could survive the cut.
    """
    text = str(text)
    forms: set[str] = set()
    for secret in secrets:
        if not secret or not isinstance(secret, str):
            continue
        for s in {secret, secret.strip()}:
            if s:
                forms.update({s, quote(s, safe=""), json.dumps(s)[1:-1]})
    for form in sorted(forms, key=len, reverse=True):  # longest first: "Bearer k" before "k"
        if len(form) >= _MIN_ANYWHERE:
            text = text.replace(form, MASK)
        else:
            text = re.sub(rf"(?<![\w-]){re.escape(form)}(?![\w-])", MASK, text)
    return text


def header_secrets(headers: Mapping[str, str] | None) -> list[str]:
    """The credential values among request headers (``Authorization``, ``api-key``, ...).

    ``Bearer <key>`` yields the key as well, so a server that echoes only the key is caught too.
    """
    out: list[str] = []
    for name, value in (headers or {}).items():
        if value and _SECRET_HEADER.search(name):
            out.append(value)
            scheme, _, rest = value.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token"):
                out.append(rest)
    return out


def env_secrets() -> list[str]:
    """Values of environment variables named like credentials (``*_API_KEY``, ``*_TOKEN``...).

    For code that hands credentials to a library through the environment (LiteLLM) and so never
    holds the key itself. Short values are left out: they are not keys, and masking them would
    garble messages.
    """
    return [
        v.strip()
        for k, v in os.environ.items()
        if _SECRET_ENV.search(k) and len(v.strip()) >= _MIN_ANYWHERE
    ]


# -- small helpers shared by every caller -----------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def server_wait(headers: Mapping[str, str]) -> float | None:
    """The wait a server asks for: ``retry-after-ms`` (OpenAI, Azure), else ``Retry-After``."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if not math.isnan(value):
            return max(0.0, value)
    return parse_retry_after(headers.get("retry-after"))


def endpoint_label(url: str) -> str:
    """``host[:port]/path`` of a URL, without scheme, credentials or query: for keys and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path.rstrip('/')}"


def env_or(value: str | None, *names: str) -> str | None:
    """``value`` if given, else the first non-empty environment variable among ``names``."""
    if value:
        return value
    for name in names:
        found = os.environ.get(name, "").strip()
        if found:
            return found
    return None


def server_message(response: Any, secrets: Iterable[str | None] = ()) -> str:
    """``": <excerpt>"`` of the server's own error message (masked, one line), or ``""``."""
    try:
        payload = response.json()
    except ValueError:
        message: Any = response.text
    else:
        message = None
        if isinstance(payload, dict):
            message = payload.get("error") or payload.get("message") or payload.get("detail")
            if isinstance(message, dict):
                message = message.get("message") or message
        elif payload is not None:
            message = payload
    # Mask first, then shorten: a key cut in half by the excerpt would escape the mask.
    text = " ".join(mask_secrets(str(message or ""), secrets).split())
    return f": {text[:EXCERPT_CHARS]}" if text else ""


# -- stats -------------------------------------------------------------------------------------


@dataclass
class HTTPStats:
    """Counters across all threads of one client; callers subclass it to add their own."""

    requests: int = 0  # requests sent, retries included
    retries: int = 0  # requests that were a retry of a failed one
    rate_limited: int = 0  # HTTP 429 answers
    waited_seconds: float = 0.0  # time spent pausing between tries
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def add(self, **counts: float) -> None:
        """Add to counters, atomically across threads."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            for f in fields(self):
                if not f.name.startswith("_"):
                    setattr(self, f.name, type(getattr(self, f.name))())

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return out | {"waited_seconds": round(self.waited_seconds, 2)}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


# -- errors ------------------------------------------------------------------------------------


class _Failure(Exception):
    """A failure with a short, groupable ``reason`` ("HTTP 500", "timeout") and a ``detail``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason
        self.detail = detail


class Retryable(_Failure):
    """Raised by a caller's ``parse`` (or by the layer) for a failure worth another try.

    ``wait`` is what the server asked for, if anything; ``connect`` marks a refused connection.
    """

    def __init__(
        self, reason: str, detail: str = "", wait: float | None = None, *, connect: bool = False
    ) -> None:
        super().__init__(reason, detail)
        self.wait = wait
        self.connect = connect


class RequestFailed(_Failure):
    """A request gave up: its retries are spent, the server asks for too long a wait, or the
    client was closed. Its text is masked.

    ``why`` says which: ``"retries"``, ``"server_wait"`` or ``"cancelled"``; ``tries`` counts the
    requests sent; ``connect`` marks a server that could not be reached at all.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        why: Literal["retries", "server_wait", "cancelled"] = "retries",
        tries: int = 1,
        connect: bool = False,
    ) -> None:
        super().__init__(reason, detail)
        self.why = why
        self.tries = tries
        self.connect = connect


class HTTPStatusError(Exception):
    """An answer retrying cannot fix (a rejected key, a wrong URL, a bad request).

    ``said`` is the server's masked excerpt (``": ..."`` or ``""``); ``url`` a safe label.
    :meth:`explain` words it the same way for every caller.
    """

    def __init__(self, status: int, said: str, url: str) -> None:
        super().__init__(f"HTTP {status}{said}")
        self.status = status
        self.said = said
        self.url = url

    def explain(
        self,
        where: str,
        *,
        key_env: Sequence[str],
        key_given: bool,
        other_hint: str,
        url_flag: str = "--base-url",
    ) -> str:
        """One line: who refused what, what the server said, and the fix.

        ``key_env`` names the environment variables the key is read from; ``other_hint`` is the
        caller's advice for any other rejected request (a 400, a 422...).
        """
        if self.status in (401, 403):
            env = " or ".join(f"${name}" for name in key_env) or "the API key option"
            if key_given:
                fix = f"check the key in {env} (or --api-key)"
            else:
                fix = f"set {env} (or pass --api-key)"
            return f"{where} refused the request (HTTP {self.status}{self.said}); {fix}"
        if self.status == 404:
            return (
                f"{where}: HTTP 404 for {self.url}{self.said}; check the model name and "
                f"{url_flag} (OpenAI-compatible servers usually end in /v1)"
            )
        return f"{where} rejected the request (HTTP {self.status}{self.said}); {other_hint}"


def _cancelled(tries: int) -> RequestFailed:
    return RequestFailed("cancelled", "the client was closed", why="cancelled", tries=tries)


# -- the client --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPSettings:
    """How long to wait and how often to retry: one set of names for every outbound call.

    ``timeout``: seconds for one request. ``max_retries``: further tries after a retryable
    failure, at most ``connect_retries`` of them after a refused connection. Between tries,
    a uniform draw below ``backoff_base * 2**attempt`` seconds (full jitter), capped at
    ``backoff_max``, unless the server says how long (``Retry-After``); a server asking for more
    than ``max_retry_wait`` seconds fails the request at once.
    """

    timeout: float = 60.0
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_wait: float = 300.0
    connect_retries: int = CONNECT_RETRIES

    def __post_init__(self) -> None:
        """Raise ValueError naming the first bad setting (callers word it as their own error)."""

        def number(value: Any) -> bool:
            return not isinstance(value, bool) and isinstance(value, int | float)

        if not number(self.timeout) or not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number, not {self.timeout!r}")
        for name in ("max_retries", "connect_retries"):
            value = getattr(self, name)
            if not number(value) or value != int(value) or value < 0:
                raise ValueError(f"{name} must be 0 or more, not {value!r}")
        for name in ("backoff_base", "backoff_max", "max_retry_wait"):
            value = getattr(self, name)
            if not number(value) or not value >= 0:
                raise ValueError(f"{name} must be 0 or more seconds, not {value!r}")


class HTTPClient:
    """POST JSON with retries, a timeout, the server's pace, cancellation, stats and masking.

    ``settings`` (:class:`HTTPSettings`) say how long to wait and how often to retry.
    ``max_connections`` sizes the pool. ``secrets`` are masked in addition to the credential
    headers of each request. ``stats`` lets a caller count into its own :class:`HTTPStats`
    subclass. ``client`` lends an ``httpx.Client`` (then never closed here).
    """

    def __init__(
        self,
        settings: HTTPSettings | None = None,
        *,
        max_connections: int = 32,
        secrets: Iterable[str | None] = (),
        stats: HTTPStats | None = None,
        client: Any = None,
    ) -> None:
        whole = isinstance(max_connections, int) and not isinstance(max_connections, bool)
        if not whole or max_connections < 1:
            raise ValueError(f"max_connections must be 1 or more, not {max_connections!r}")
        self.settings = settings if settings is not None else HTTPSettings()
        self.max_connections = max_connections
        self.secrets = [s for s in secrets if s]
        self.stats = stats if stats is not None else HTTPStats()
        self._client = client
        self._own_client = client is None
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by close(): requests of an earlier epoch stop retrying
        self._cancel = threading.Event()

    # -- connections -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The pooled ``httpx.Client``, shared by all threads; opened on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx

                    timeout = float(self.settings.timeout)
                    self._client = httpx.Client(
                        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                        limits=httpx.Limits(max_connections=self.max_connections),
                    )
        return self._client

    def close(self) -> None:
        """Close pooled connections and stop the retries of requests still in flight.

        The client stays usable: the next request opens new connections.
        """
        with self._lock:
            self._epoch += 1
            cancel, self._cancel = self._cancel, threading.Event()
            client = self._client
            if self._own_client:
                self._client = None
        cancel.set()
        if client is not None and self._own_client:
            client.close()

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle live connections, locks or secrets.
        state = self.__dict__.copy()
        state.update(_client=None, _own_client=True, _lock=None, _cancel=None, secrets=[])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    # -- one request, with retries -----------------------------------------------------------

    def post(
        self,
        url: str,
        body: Any,
        *,
        parse: Callable[[Any], T],
        headers: Mapping[str, str] | None = None,
        on_wait: WaitHook | None = None,
    ) -> T:
        """POST ``body`` as JSON; return ``parse(response)`` of the first good answer.

        ``parse`` gets an ``httpx.Response`` with a status below 400 and may raise
        :class:`Retryable` to try again (other exceptions pass through untouched). Raises
        :class:`RequestFailed` once giving up, :class:`HTTPStatusError` at once for an error
        status retrying cannot fix. Every text they carry is masked.
        """
        headers = {"Content-Type": "application/json", **(headers or {})}
        secrets = [*self.secrets, *header_secrets(headers)]
        where = mask_secrets(endpoint_label(url), secrets)
        with self._lock:
            epoch, cancel = self._epoch, self._cancel
        attempt = 0
        while True:
            if self._epoch != epoch:
                raise _cancelled(attempt)
            self.stats.add(requests=1, retries=1 if attempt else 0)
            try:
                return self._attempt(url, body, headers, parse, secrets)
            except Retryable as exc:
                failure = exc
            reason = mask_secrets(failure.reason, secrets)
            detail = mask_secrets(failure.detail, secrets)
            failure_text = f"{reason}: {detail}" if detail else reason
            limit = self.settings.max_retries
            if failure.connect:  # a refused connection is rarely cured by waiting long
                limit = min(limit, self.settings.connect_retries)
            if self._epoch != epoch:
                raise _cancelled(attempt + 1)
            if attempt >= limit:
                raise RequestFailed(reason, detail, tries=attempt + 1, connect=failure.connect)
            wait = self._backoff(attempt, failure.wait)
            if wait > self.settings.max_retry_wait:
                detail += (
                    f"{'; ' if detail else ''}the server asks to wait {wait:.0f}s, more than "
                    f"max_retry_wait={self.settings.max_retry_wait:.0f}s; try again later or raise "
                    "max_retry_wait"
                )
                raise RequestFailed(reason, detail, why="server_wait", tries=attempt + 1)
            log.debug("%s: %s; retry %d in %.2fs", where, failure_text, attempt + 1, wait)
            if on_wait is not None:
                on_wait(reason, wait)
            self.stats.add(waited_seconds=wait)
            if cancel.wait(wait):
                raise _cancelled(attempt + 1)
            attempt += 1

    def _backoff(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return asked
        # Full jitter: spread the retries of concurrent requests instead of synchronising them.
        ceiling = self.settings.backoff_base * (2**attempt)
        return random.uniform(0.0, min(self.settings.backoff_max, ceiling))

    def _attempt(
        self,
        url: str,
        body: Any,
        headers: dict[str, str],
        parse: Callable[[Any], T],
        secrets: list[str],
    ) -> T:
        import httpx

        try:
            response = self.client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise Retryable("timeout", f"no answer within {self.settings.timeout:g}s") from None
        except httpx.TransportError as exc:
            # Connection refused / reset: a server restarting is worth a retry or two.
            raise Retryable(
                "connection failed",
                f"cannot connect ({type(exc).__name__})",
                connect=isinstance(exc, httpx.ConnectError),
            ) from None
        status = response.status_code
        if status in RETRY_STATUSES:
            if status == 429:
                self.stats.add(rate_limited=1)
            reason = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
            said = server_message(response, secrets).removeprefix(": ")
            raise Retryable(reason, said, server_wait(response.headers))
        if status >= 400:
            said = server_message(response, secrets)
            raise HTTPStatusError(status, said, mask_secrets(endpoint_label(url), secrets))
        return parse(response)


class HTTPUser:
    """What every object calling an API through this layer shares (embedders, the LLM client):
    its :class:`HTTPClient` in ``http``, ``close()``, masking with its own key, and a pickled
    form without the key."""

    http: HTTPClient
    _api_key: str | None = None

    @property
    def client(self) -> Any:
        """The pooled ``httpx.Client``, shared by all threads."""
        return self.http.client

    def close(self) -> None:
        """Close pooled connections and stop the retries of requests still in flight.

        The object stays usable: the next request opens new connections.
        """
        self.http.close()

    def mask(self, text: str) -> str:
        """``text`` with this object's key (and its client's secrets) masked."""
        return mask_secrets(text, [self._api_key, *self.http.secrets])

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the key (the HTTP client drops its connections and locks itself).
        return self.__dict__ | {"_api_key": None}
