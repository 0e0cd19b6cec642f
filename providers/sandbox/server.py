"""The sandbox's plumbing: one loopback HTTP server per emulated API, shared helpers, ``Sandbox``."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import socket
import string
import struct
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger("providers.sandbox")

PROVIDERS = ("mixin", "twilio", "highlevel", "msgraph")

#: Trigger words, in priority order; matched case-insensitively inside user-chosen values, ignoring
#: ``-``, ``_`` and spaces (so ``fail-500``, ``fail500`` and ``FAIL_500`` all match).
TRIGGERS = ("fail-500", "rate-limit", "duplicate", "invalid-json", "slow", "drip")
#: Transport faults, the same for every API, looked for in the raw body of any POST (URL-decoded):
#: ``reset-before`` drops the connection (TCP RST) before the request is handled, so nothing is created;
#: ``reset-after`` handles it (the conversation is created) and drops the connection instead of replying;
#: ``fail-once`` answers the first POST of a given body with the API's HTTP 500 (nothing created) and
#: handles the same body normally after that, so a Retry succeeds.
TRANSPORT_TRIGGERS = ("reset-before", "reset-after", "fail-once")
#: Introspection for fault tests, on every port (loopback only, like the sandbox): ``GET
#: /__sandbox__/state`` lists every API's conversations and the POSTs it received.
ADMIN_PREFIX = "/__sandbox__/"


def find_trigger(*values: object) -> str | None:
    """The first QA trigger contained in any of ``values`` (``None`` values are skipped)."""
    texts = [re.sub(r"[-_\s]", "", str(v).lower()) for v in values if v is not None]
    for trigger in TRIGGERS:
        key = trigger.replace("-", "")
        if any(key in text for text in texts):
            return trigger
    return None


@dataclass
class Request:
    """One request as an emulated API sees it."""

    method: str
    target: str  # the raw request target (path + query) exactly as sent: Mixin signs it
    path: str  # raw path, still percent-encoded
    segments: tuple[str, ...]  # decoded path segments; "/a/" -> ("a", "")
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    @classmethod
    def parse(cls, method: str, target: str, headers: Message, body: bytes) -> Request:
        parts = urlsplit(target)
        path = parts.path or "/"
        segments = tuple(unquote(s) for s in path.split("/")[1:])
        return cls(
            method, target, path, segments, parse_qs(parts.query, keep_blank_values=True), headers, body
        )

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def form(self) -> dict[str, list[str]]:
        if "application/x-www-form-urlencoded" not in self.header("Content-Type").lower():
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def bearer(self) -> str:
        scheme, _, token = self.header("Authorization").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    drip: bool = False  # the ``drip`` trigger: the body goes out one byte every ``drip_seconds``


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), dict(headers or {}))


def broken_json_reply(status: int, data: Any) -> Reply:
    """The ``invalid-json`` trigger: the success status with a truncated JSON body."""
    text = json.dumps(data)
    return Reply(status, text[: max(1, len(text) // 2)].encode())


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None = None) -> str:
    """``2025-01-31T12:00:00Z`` (Twilio, Graph)."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(moment: datetime | None = None) -> str:
    """``2025-01-31T12:00:00.123Z`` (HighLevel, JavaScript's toISOString)."""
    moment = moment or now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Api(Protocol):
    """What each emulated API module offers the server."""

    name: str

    def handle(self, request: Request) -> Reply: ...
    def internal_error(self) -> Reply: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid a 40 ms delayed-ACK stall
    server_version = "convadmin-sandbox"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.server.api.name, format % args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        api = self.server.api
        sandbox: Sandbox = api.sandbox  # type: ignore[attr-defined]
        request = Request.parse(self.command, self.path, self.headers, self._read_body())
        if request.path.startswith(ADMIN_PREFIX):
            reply = json_reply(200, sandbox.state()) if request.method == "GET" else json_reply(405, {})
            self._send(reply, sandbox)
            return
        transport = sandbox.received(api.name, request) if request.method == "POST" else None
        if transport == "reset-before":
            self._reset()
            return
        try:
            reply = api.internal_error() if transport == "fail-once" else api.handle(request)
        except Exception:  # a sandbox bug must still answer in the provider's shape
            logger.exception("%s: %s %s failed", api.name, request.method, request.path)
            reply = api.internal_error()
        if transport == "reset-after":
            self._reset()
            return
        self._send(reply, sandbox)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0), no reply."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send(self, reply: Reply, sandbox: Sandbox) -> None:
        try:
            self.send_response(reply.status)
            if reply.body or reply.status not in (204, 304):
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD" and reply.drip:
                self._drip(reply.body, sandbox)
            elif self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (the ``slow`` trigger): the work is done, nobody listens.
            self.close_connection = True

    def _drip(self, body: bytes, sandbox: Sandbox) -> None:
        """Each byte within any read timeout, the whole reply far beyond it: only a deadline stops the wait."""
        self.wfile.flush()
        for index in range(len(body)):
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
            if sandbox.pause(sandbox.drip_seconds):
                self.close_connection = True
                return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: Api):
        self.api = api
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class Sandbox:
    """Four loopback servers emulating Mixin, Twilio, HighLevel and Microsoft Graph.

    ``port=0`` lets the OS choose each port; ``port=N`` uses N (mixin), N+1 (twilio), N+2
    (highlevel), N+3 (msgraph). ``seed`` makes every credential and key reproducible (random when
    omitted). ``slow_seconds`` is how long the ``slow`` trigger holds a create's reply;
    ``drip_seconds`` the pause between the bytes of a ``drip`` reply.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: str | None = None,
        slow_seconds: float = 25.0,
        drip_seconds: float = 1.0,
    ):
        from providers.sandbox import highlevel, mixin, msgraph, twilio

        self.host = host
        self.port = port
        self.seed = seed if seed is not None else secrets.token_hex(16)
        self.slow_seconds = slow_seconds
        self.drip_seconds = drip_seconds
        self._token_key = self.derive("sandbox:token-key")
        self._stopping = threading.Event()
        self._received: deque[dict[str, Any]] = deque(maxlen=20000)
        self._failed_once: set[bytes] = set()
        self._received_lock = threading.Lock()
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []
        self.apis: dict[str, Any] = {
            "mixin": mixin.MixinApi(self),
            "twilio": twilio.TwilioApi(self),
            "highlevel": highlevel.HighLevelApi(self),
            "msgraph": msgraph.GraphApi(self),
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Bind the four servers and serve each in a daemon thread."""
        if self._servers:
            return self
        self._stopping.clear()
        try:
            for offset, name in enumerate(PROVIDERS):
                port = self.port + offset if self.port else 0
                self._servers[name] = _Server((self.host, port), self.apis[name])
        except OSError:
            self._close_servers()
            raise
        for name, server in self._servers.items():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"sandbox-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving; requests held by the ``slow`` trigger are released at once."""
        self._stopping.set()
        for server in self._servers.values():
            server.shutdown()
        self._close_servers()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _close_servers(self) -> None:
        for server in self._servers.values():
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses and credentials -----------------------------------------------------------
    def url(self, provider: str) -> str:
        """The base URL (scheme + host + port) of one emulated API; the sandbox must be started."""
        server = self._servers.get(provider)
        if server is None:
            raise RuntimeError(
                f"The sandbox is not running (no server for {provider!r}); call start() first."
            )
        host, port = server.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    @property
    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in PROVIDERS}

    def credentials(self, variants: bool = False) -> dict[str, dict[str, str]]:
        """``{provider: credential JSON}`` ready for ``providers.<p>.parse_credential``.

        The rotating secrets (HighLevel OAuth and Graph refresh tokens) are the newest ones issued.
        ``variants=True`` adds ``twilio-api-key`` (an SK… key) and ``highlevel-oauth``.
        """
        creds = {name: self.apis[name].credential() for name in PROVIDERS}
        if variants:
            creds["twilio-api-key"] = self.apis["twilio"].api_key_credential()
            creds["highlevel-oauth"] = self.apis["highlevel"].oauth_credential()
        return creds

    # -- helpers for the emulated APIs -------------------------------------------------------
    def derive(self, label: str, size: int = 32) -> bytes:
        """``size`` bytes fixed by the seed and ``label``."""
        out = b""
        counter = 0
        while len(out) < size:
            out += hashlib.sha256(f"{self.seed}\0{label}\0{counter}".encode()).digest()
            counter += 1
        return out[:size]

    def uuid(self, label: str) -> str:
        """A version-4-shaped UUID fixed by the seed."""
        return str(uuid.UUID(bytes=self.derive(label, 16), version=4))

    def hex(self, label: str, length: int) -> str:
        return self.derive(label, (length + 1) // 2).hex()[:length]

    def alnum(self, label: str, length: int) -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(alphabet[b % len(alphabet)] for b in self.derive(label, length))

    def sign(self, claims: dict[str, Any]) -> str:
        """A token this sandbox issued (HS256 JWT): stateless, so it survives a restart with the same seed."""
        return jwt.encode(claims, self._token_key, algorithm="HS256")

    def unsign(self, token: str, typ: str, *, verify_exp: bool = True) -> dict[str, Any] | None:
        """The claims of a token this sandbox issued with ``typ``; ``None`` if forged, expired or other."""
        options = {"verify_aud": False, "verify_exp": verify_exp}
        try:
            claims = jwt.decode(token, self._token_key, algorithms=["HS256"], options=options)
        except jwt.PyJWTError:
            return None
        return claims if claims.get("typ") == typ else None

    # -- introspection and transport faults ----------------------------------------------------
    def received(self, api: str, request: Request) -> str | None:
        """Note a POST (for :meth:`state`); the transport trigger in its body, if any."""
        text = unquote(request.body.decode("utf-8", "replace").replace("+", " "))
        normal = re.sub(r"[-_\s]", "", text.lower())
        trigger = next((t for t in TRANSPORT_TRIGGERS if t.replace("-", "") in normal), None)
        with self._received_lock:
            self._received.append({"api": api, "path": request.path, "body": text[:4000], "at": iso()})
            if trigger == "fail-once":
                if request.body in self._failed_once:
                    trigger = None
                else:
                    self._failed_once.add(request.body)
        return trigger

    def state(self) -> dict[str, Any]:
        """Every API's conversations (as stored) and the POSTs received, for fault tests to count."""
        conversations: dict[str, list[Any]] = {}
        for name, api in self.apis.items():
            with api.lock:
                stored = list(api.conversations.values())
            items = [c for group in stored for c in group] if name == "msgraph" else stored
            conversations[name] = json.loads(json.dumps(items, default=str))
        with self._received_lock:
            received = list(self._received)
        return {"conversations": conversations, "received": received}

    def hold(self) -> None:
        """The ``slow`` trigger's pause; cut short by :meth:`stop`."""
        self._stopping.wait(self.slow_seconds)

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; True when the sandbox is stopping (cut short)."""
        return self._stopping.wait(seconds)
