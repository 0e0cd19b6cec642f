"""The wall-clock deadline of ``Http``, against a real loopback server that drips its reply."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from providers.base import ProviderError
from providers.http import Http

MARGIN = 0.5  # seconds a call may overrun its deadline (scheduling, closing the socket)


class DripServer:
    """Loopback HTTP/1.1: waits ``pause`` s, then sends ``head`` and the body one byte every ``every`` s.

    ``drip_head`` drips the status line and headers too.
    """

    def __init__(self, *, every: float = 0.2, pause: float = 0.0, drip_head: bool = False, size: int = 200):
        self.every, self.pause, self.drip_head, self.size = every, pause, drip_head, size
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/conversations"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.requests += 1
                time.sleep(self.pause)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {self.size}\r\n\r\n"
                if self.drip_head:
                    data, self.size = (head.encode() + b" " * self.size), 0
                else:
                    conn.sendall(head.encode())
                    data = b" " * self.size
                for byte in data:
                    if self.stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every)
            except OSError:
                return  # the client gave up: what the deadline is for

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[DripServer]:
    started = DripServer()
    yield started
    started.close()


def timed_send(http: Http, request: httpx.Request, **kwargs: float) -> tuple[float, ProviderError]:
    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        http.send(request, **kwargs)
    return time.monotonic() - start, info.value


SHORT_READS = httpx.Timeout(0.5, connect=0.5)  # each drip arrives well within one read timeout


def test_a_dripping_reply_to_a_create_ends_at_the_deadline_with_the_outcome_unknown(server: DripServer):
    with Http(timeout=SHORT_READS, deadline=1.0) as http:
        elapsed, error = timed_send(http, httpx.Request("POST", server.url, content=b"{}"))
    assert elapsed < 1.0 + MARGIN  # without the deadline: 200 bytes x 0.2 s = 40 s
    assert (error.code, error.outcome_unknown, error.permanent) == ("deadline", True, False)
    assert "1 s deadline" in error.message and "may or may not" in error.message
    [exchange] = http.exchanges
    assert exchange.status == 200 and "deadline" in exchange.error


def test_dripped_headers_end_at_the_deadline_too():
    server = DripServer(drip_head=True, every=0.1)
    try:
        with Http(timeout=SHORT_READS, deadline=0.8) as http:
            elapsed, error = timed_send(http, httpx.Request("POST", server.url, content=b"{}"))
    finally:
        server.close()
    assert elapsed < 0.8 + MARGIN
    assert (error.code, error.outcome_unknown) == ("deadline", True)


def test_a_read_passing_its_deadline_is_no_unknown_outcome(server: DripServer):
    with Http(timeout=SHORT_READS) as http:
        elapsed, error = timed_send(http, httpx.Request("GET", server.url), deadline=0.7)
    assert elapsed < 0.7 + MARGIN
    assert (error.code, error.outcome_unknown) == ("deadline", False)


def test_one_deadline_covers_every_call_of_a_session():
    slow_but_whole = DripServer(pause=0.4, every=0, size=2)
    dripping = DripServer(every=0.2)
    try:
        with Http(timeout=SHORT_READS, deadline=1.0) as http:
            start = time.monotonic()
            assert http.send(httpx.Request("GET", slow_but_whole.url)).status_code == 200
            with pytest.raises(ProviderError) as info:
                http.send(httpx.Request("POST", dripping.url, content=b"{}"))
            elapsed = time.monotonic() - start
    finally:
        slow_but_whole.close()
        dripping.close()
    assert elapsed < 1.0 + MARGIN
    assert info.value.code == "deadline"


def test_nothing_is_sent_once_the_deadline_has_passed(server: DripServer):
    with Http(deadline=0.0) as http:
        _, error = timed_send(http, httpx.Request("POST", server.url, content=b"{}"))
    assert (error.code, error.outcome_unknown) == ("deadline", False)
    assert "nothing was sent" in error.message
    time.sleep(0.05)
    assert server.requests == 0


def test_a_reply_within_the_deadline_is_read_whole():
    quick = DripServer(every=0, size=50)
    try:
        with Http(deadline=5.0) as http:
            response = http.send(httpx.Request("GET", quick.url))
            assert http.remaining() is not None and 0 < http.remaining() <= 5.0
    finally:
        quick.close()
    assert response.content == b" " * 50


def test_without_a_deadline_the_read_timeout_still_applies(server: DripServer):
    server.every = 0.8  # longer than a read timeout
    with Http(timeout=httpx.Timeout(0.3, connect=0.5)) as http:
        _, error = timed_send(http, httpx.Request("POST", server.url, content=b"{}"))
    assert (error.code, error.outcome_unknown) == ("timeout", True)
    assert http.remaining() is None


def test_a_mock_transport_body_is_checked_between_chunks():
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.05)
            yield b"x"

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=chunks()))
    with Http(transport=transport, deadline=0.5) as http:
        elapsed, error = timed_send(http, httpx.Request("POST", "https://api.example.com/c", content=b"{}"))
    assert elapsed < 0.5 + MARGIN
    assert (error.code, error.outcome_unknown) == ("deadline", True)
