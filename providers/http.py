"""The only place that sends: one client factory, one ``send`` that times, redacts, logs and records."""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx

from providers import __version__
from providers.base import ProviderError
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~30 ms: build the (read-only) context once, not per client.
    return httpx.create_ssl_context()


def make_client(
    transport: httpx.BaseTransport | None = None, timeout: httpx.Timeout = TIMEOUT
) -> httpx.Client:
    """The one httpx client shape: fixed timeouts, verified TLS, no redirects, our User-Agent."""
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        verify=_ssl_context(),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def _cap(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= BODY_CAP else (text[:BODY_CAP], True)


class Http:
    """Sends requests for one credential and keeps the redacted record of every exchange.

    ``secrets`` are the credential's known secret values; providers add the tokens they obtain at run
    time with :meth:`add_secret`. ``exchanges`` holds every exchange, also when a call raised.
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ):
        self.client = client or make_client(transport, timeout)
        self.secrets: set[str] = {s for s in secrets if s}
        self.exchanges: list[Exchange] = []

    def add_secret(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; return the response (any status) or raise :class:`ProviderError`.

        Transport failures become ``ProviderError``: a connect failure is retryable (nothing was
        sent); a read timeout leaves the outcome unknown.
        """
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
        )
        self.exchanges.append(exchange)
        start = time.perf_counter()
        try:
            response = self.client.send(request)
            response.read()
        except httpx.HTTPError as exc:
            exchange.duration_ms = round((time.perf_counter() - start) * 1000)
            error = _transport_error(exc, request)
            exchange.error = error.message
            logger.warning(
                "%s %s failed after %d ms: %s",
                exchange.method,
                exchange.url,
                exchange.duration_ms,
                error.message,
            )
            raise error from None
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
    except ValueError:
        return None


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    # "nan", "inf" and negatives parse as floats but are no wait a caller can sleep on.
    return seconds if seconds is not None and 0 <= seconds < math.inf else None
