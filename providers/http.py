"""The only place that sends: one client factory, one ``send`` that times, redacts, logs and records.

A wall-clock deadline bounds a whole exchange, not just each read: httpx's timeouts apply per socket
operation, so a provider dripping one byte every few seconds could keep a call alive for ever. ``Http``
wraps the connection pool's network streams so every connect, write and read waits at most
min(configured timeout, time left), and checks the time left between body chunks too.
"""

from __future__ import annotations

import contextvars
import logging
import math
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpcore
import httpx

from providers import __version__
from providers.base import ProviderError, storable_text
from providers.redact import redact_body, redact_headers, redact_url

logger = logging.getLogger("providers.http")

USER_AGENT = f"convadmin/{__version__} httpx/{httpx.__version__}"
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
BODY_CAP = 64 * 1024  # characters of a body kept in an Exchange record; the original size is kept too


@dataclass
class Exchange:
    """One HTTP exchange as stored and shown: everything already redacted."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    request_size: int
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    response_size: int = 0
    duration_ms: int = 0
    error: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    truncated: bool = False
    purpose: str = "create"  # what the caller was doing: create, lookup, refresh, check, sign-in

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~30 ms: build the (read-only) context once, not per client.
    return httpx.create_ssl_context()


#: The monotonic time the exchange under way must end by (None: no deadline); read by the streams below.
_ENDS_AT: contextvars.ContextVar[float | None] = contextvars.ContextVar("provider_deadline", default=None)


def _left(timeout: float | None, late: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``late`` raised when none is left."""
    ends_at = _ENDS_AT.get()
    if ends_at is None:
        return timeout
    left = ends_at - time.monotonic()
    if left <= 0:
        raise late("the deadline has passed")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """A network stream whose every read and write ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            self._stream.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """Opens :class:`_BoundedStream` connections, connecting within the deadline."""

    def __init__(self, backend: httpcore.NetworkBackend):
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _BoundedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _BoundedStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound(transport: Any) -> None:
    """Make an httpx transport's connection pool honour the deadline (other transports: between chunks only)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None and not isinstance(backend, _BoundedBackend):
        pool._network_backend = _BoundedBackend(backend)


def make_client(
    transport: httpx.BaseTransport | None = None, timeout: httpx.Timeout = TIMEOUT
) -> httpx.Client:
    """The one httpx client shape: fixed timeouts, verified TLS, no redirects, our User-Agent, deadlines."""
    client = httpx.Client(
        transport=transport,
        timeout=timeout,
        verify=_ssl_context(),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )
    for mounted in (client._transport, *client._mounts.values()):
        _bound(mounted)
    return client


class _DeadlineBody(httpx.SyncByteStream):
    """A response body that stops with a read timeout once the deadline has passed between two chunks."""

    def __init__(self, stream: Any, ends_at: float):
        self._stream = stream
        self._ends_at = ends_at

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() >= self._ends_at:
                raise httpx.ReadTimeout("the deadline has passed")
            yield chunk

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close:
            close()


def _cap(text: str) -> tuple[str, bool]:
    text = storable_text(text)  # a NUL or lone surrogate in a reply must not stop the record being saved
    return (text, False) if len(text) <= BODY_CAP else (text[:BODY_CAP], True)


class Http:
    """Sends requests for one credential and keeps the redacted record of every exchange.

    ``secrets`` are the credential's known secret values; providers add the tokens they obtain at run
    time with :meth:`add_secret`. ``exchanges`` holds every exchange, also when a call raised, each
    tagged with the ``purpose`` the session had when it was sent (set ``http.purpose`` between steps).

    ``deadline`` (seconds) bounds the whole session by wall-clock time from now: every exchange of a
    multi-call operation (a token refresh and the create, a create and its read-back) shares it. Passing
    it raises ``ProviderError`` code ``deadline`` (``outcome_unknown`` when the request may have been
    processed). :meth:`set_deadline` starts a new one; ``send(deadline=…)`` bounds one exchange.
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        timeout: httpx.Timeout = TIMEOUT,
        deadline: float | None = None,
        purpose: str = "create",
    ):
        self.client = client or make_client(transport, timeout)
        self.purpose = purpose
        if client is not None:
            _bound(getattr(client, "_transport", None))
        self.timeout = timeout
        self.secrets: set[str] = {s for s in secrets if s}
        self.exchanges: list[Exchange] = []
        self.ends_at: float | None = None
        self.set_deadline(deadline)

    def set_deadline(self, seconds: float | None) -> None:
        """Bound every exchange from now on by ``seconds`` of wall-clock time in total (None: no bound)."""
        self.deadline = seconds
        self.ends_at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without one."""
        return None if self.ends_at is None else max(0.0, self.ends_at - time.monotonic())

    def add_secret(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: httpx.Request, *, deadline: float | None = None) -> httpx.Response:
        """Send ``request``; return the response (any status) or raise :class:`ProviderError`.

        Transport failures become ``ProviderError``: a connect failure is retryable (nothing was
        sent); a read timeout, or the deadline passing once the request may have reached the
        provider, leaves the outcome of anything but a GET unknown. ``deadline`` (seconds) bounds this
        exchange, within the session's own deadline.
        """
        ends_at = self.ends_at
        if deadline is not None:
            ends_at = min(ends_at or math.inf, time.monotonic() + deadline)
        request.headers.setdefault("User-Agent", USER_AGENT)
        body = request.content
        req_text, truncated = _cap(redact_body(body, request.headers.get("content-type", ""), self.secrets))
        exchange = Exchange(
            method=request.method,
            url=redact_url(str(request.url), self.secrets),
            request_headers=redact_headers(request.headers.multi_items(), self.secrets),
            request_body=req_text,
            request_size=len(body),
            truncated=truncated,
            purpose=self.purpose,
        )
        self.exchanges.append(exchange)
        start = time.perf_counter()
        token = _ENDS_AT.set(ends_at)
        response: httpx.Response | None = None
        try:
            if ends_at is not None:
                left = ends_at - time.monotonic()
                if left <= 0:
                    raise httpx.PoolTimeout("the deadline passed before the request was sent")
                request.extensions["timeout"] = _cut(self.timeout, left)
            response = self.client.send(request, stream=True)
            if ends_at is not None:
                response.stream = _DeadlineBody(response.stream, ends_at)
            try:
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            exchange.duration_ms = round((time.perf_counter() - start) * 1000)
            exchange.status = response.status_code if response is not None else None
            late = ends_at is not None and time.monotonic() >= ends_at - 0.05
            error = (
                _deadline_error(exc, request, self.deadline if deadline is None else deadline)
                if late and isinstance(exc, httpx.TimeoutException)
                else _transport_error(exc, request)
            )
            exchange.error = error.message
            logger.warning(
                "%s %s failed after %d ms: %s",
                exchange.method,
                exchange.url,
                exchange.duration_ms,
                error.message,
            )
            raise error from None
        finally:
            _ENDS_AT.reset(token)
        exchange.duration_ms = round((time.perf_counter() - start) * 1000)
        exchange.status = response.status_code
        exchange.response_headers = redact_headers(response.headers.multi_items(), self.secrets)
        content = response.content
        exchange.response_size = len(content)
        exchange.response_body, cut = _cap(
            redact_body(content, response.headers.get("content-type", ""), self.secrets)
        )
        exchange.truncated = exchange.truncated or cut
        logger.info(
            "%s %s -> %s in %d ms", exchange.method, exchange.url, exchange.status, exchange.duration_ms
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("request body: %s", exchange.request_body)
            logger.debug("response body: %s", exchange.response_body)
        return response


def _cut(timeout: httpx.Timeout, left: float) -> dict[str, float | None]:
    """``timeout`` with every phase cut to ``left`` seconds (the stream wrapper cuts each read again)."""
    phases = timeout.as_dict()
    return {k: left if v is None else min(v, left) for k, v in phases.items()}


def _deadline_error(exc: httpx.HTTPError, request: httpx.Request, seconds: float | None) -> ProviderError:
    host = request.url.host
    limit = f"the {seconds:g} s deadline" if seconds else "its deadline"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderError(
            f"Could not reach {host} within {limit}; nothing was sent.", code="deadline", permanent=False
        )
    return ProviderError(
        f"{host} did not finish answering within {limit}; the request may or may not have been processed.",
        code="deadline",
        permanent=False,
        outcome_unknown=request.method != "GET",
    )


def _transport_error(exc: httpx.HTTPError, request: httpx.Request) -> ProviderError:
    host = request.url.host
    if isinstance(exc, httpx.ConnectTimeout):
        return ProviderError(
            f"Could not connect to {host}: the connection timed out.", code="connect_timeout", permanent=False
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(
            f"{host} did not answer in time; the request may or may not have been processed.",
            code="timeout",
            permanent=False,
            outcome_unknown=request.method != "GET",
        )
    if isinstance(exc, httpx.ConnectError):
        reason = (
            "TLS handshake failed"
            if "SSL" in str(exc) or "certificate" in str(exc)
            else "connection refused or host unreachable"
        )
        return ProviderError(f"Could not connect to {host}: {reason}.", code="connect_error", permanent=False)
    if isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol):
        return ProviderError(f"Bad address for {host}: {exc}", code="bad_url")
    return ProviderError(
        f"The connection to {host} failed: {exc.__class__.__name__}.",
        code="transport_error",
        permanent=False,
        outcome_unknown=request.method != "GET",
    )


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or ``None`` when it is not JSON (callers map that to a clear error)."""
    try:
        return response.json()
    except (ValueError, RecursionError):  # nested beyond the recursion limit: not a reply we can read
        return None


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    # "nan", "inf" and negatives parse as floats but are no wait a caller can sleep on.
    return seconds if seconds is not None and 0 <= seconds < math.inf else None
