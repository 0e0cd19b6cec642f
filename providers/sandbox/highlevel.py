"""HighLevel (LeadConnector): ``POST /conversations/`` and the reads behind it (HighLevel's API
reference).

Bearer token (a private integration token ``pit-…`` or an OAuth access token from
``POST /oauth/token``) of one location, plus the per-product ``Version`` header. NestJS-style error
bodies; ``X-RateLimit-*`` headers on every authenticated reply (100 requests per 10 s per token).

Sandbox choices where the real behaviour is unverified: a missing or wrong ``Version`` gets 400
``Version header was not found`` / ``… is not valid for this route``; an id that is not 16-32
alphanumerics gets 400 ``Contact not found``; ``/oauth/token`` errors carry both the NestJS keys and
the OAuth ``error`` code (``invalid_grant``, ``invalid_client``).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from providers.sandbox.server import Reply, Request, broken_json_reply, find_trigger, iso_ms, json_reply, now

if TYPE_CHECKING:
    from providers.sandbox.server import Sandbox

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"
ALPHANUMERIC = string.ascii_letters + string.digits
ID = re.compile(r"^[A-Za-z0-9]{16,32}$")
BURST, WINDOW, DAILY = 100, 10.0, 200_000
ACCESS_SECONDS = 86399
SCOPES = "conversations.readonly conversations.write contacts.readonly locations.readonly"
FAR_FUTURE = 4102444800  # 2100-01-01: the seeded OAuth access token must stay usable and deterministic


def _error(status: int, message: str | list[str], error: str | None = None) -> Reply:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error:
        body["error"] = error
    return json_reply(status, body)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class HighLevelApi:
    name = "highlevel"

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.location_id = sandbox.alnum("highlevel:location_id", 20)
        self.company_id = sandbox.alnum("highlevel:company_id", 20)
        self.user_id = sandbox.alnum("highlevel:user_id", 20)
        self.pit = "pit-" + sandbox.uuid("highlevel:pit")
        self.client_id = (
            sandbox.hex("highlevel:client_id", 24) + "-" + sandbox.alnum("highlevel:suffix", 8).lower()
        )
        self.client_secret = sandbox.uuid("highlevel:client_secret")
        self.conversations: dict[str, dict[str, Any]] = {}
        self.used_refresh: set[str] = set()
        self.latest_refresh = sandbox.sign(
            {"typ": "hl-refresh", "client_id": self.client_id, "loc": self.location_id, "chain": "seed"}
        )
        self.seed_access = sandbox.sign({"typ": "hl-access", "loc": self.location_id, "exp": FAR_FUTURE})
        self.calls: dict[str, deque[float]] = {}
        self.daily: dict[str, int] = {}

    @property
    def base(self) -> str:
        return self.sandbox.url(self.name)

    def credential(self) -> dict[str, str]:
        return {"token": self.pit, "location_id": self.location_id, "base_url": self.base}

    def oauth_credential(self) -> dict[str, str]:
        with self.lock:
            refresh = self.latest_refresh
        return {
            "token": self.seed_access,
            "location_id": self.location_id,
            "refresh_token": refresh,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "base_url": self.base,
        }

    def internal_error(self) -> Reply:
        return _error(500, "Internal server error")

    def handle(self, request: Request) -> Reply:
        method, seg, path = request.method, request.segments, request.path
        if method == "POST" and path == "/oauth/token":
            return self._token(request)
        # NestJS answers an unknown route with 404 before any guard runs, so the path comes first.
        if method == "POST" and path == "/conversations/":
            route, version = self._create, CONVERSATIONS_VERSION
        elif method == "GET" and seg == ("conversations", "search"):
            route, version = self._search, CONVERSATIONS_VERSION
        elif method == "GET" and len(seg) == 2 and seg[0] == "conversations" and seg[1]:
            route, version = self._read, CONVERSATIONS_VERSION
        elif method == "GET" and len(seg) == 2 and seg[0] == "contacts" and seg[1]:
            route, version = self._contact, CONTACTS_VERSION
        else:
            return _error(404, f"Cannot {method} {path}", "Not Found")
        token = request.bearer()
        location = self._location_of(token)
        if isinstance(location, Reply):
            return location
        limited = self._count(token)
        if limited.status == 429:
            return limited
        given = request.header("Version")
        if not given:
            reply = _error(400, "Version header was not found", "Bad Request")
        elif given != version:
            reply = _error(
                400, f"Version header is not valid for this route: expected {version}", "Bad Request"
            )
        else:
            reply = route(request, location)
        reply.headers.update(limited.headers)
        return reply

    def _location_of(self, token: str) -> str | Reply:
        if token and hmac.compare_digest(token.encode(), self.pit.encode()):
            return self.location_id
        claims = self.sandbox.unsign(token, "hl-access")
        if claims:
            return claims["loc"]
        if token.count(".") == 2:
            return _error(401, "Invalid JWT", "Unauthorized")
        return _error(401, "Invalid token: access token is invalid", "Unauthorized")

    def _count(self, token: str) -> Reply:
        """Rate-limit bookkeeping; a Reply carrying the headers (status 429 when over the burst)."""
        moment = time.monotonic()
        with self.lock:
            calls = self.calls.setdefault(token, deque())
            while calls and calls[0] <= moment - WINDOW:
                calls.popleft()
            over = len(calls) >= BURST
            if not over:
                calls.append(moment)
                self.daily[token] = self.daily.get(token, 0) + 1
            used = self.daily.get(token, 0)
            headers = self._limit_headers(BURST - len(calls), DAILY - used)
        if over:
            return Reply(
                429, json.dumps({"statusCode": 429, "message": "Too Many Requests"}).encode(), headers
            )
        return Reply(200, b"", headers)

    def _limit_headers(self, remaining: int, daily_remaining: int) -> dict[str, str]:
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return {
            "X-RateLimit-Limit-Daily": str(DAILY),
            "X-RateLimit-Daily-Remaining": str(max(daily_remaining, 0)),
            "X-RateLimit-Interval-Milliseconds": str(int(WINDOW * 1000)),
            "X-RateLimit-Max": str(BURST),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Daily-Reset": str(_ms(midnight)),
        }

    # -- conversations -----------------------------------------------------------------------
    def _create(self, request: Request, location: str) -> Reply:
        try:
            body = json.loads(request.body)
        except ValueError:
            return _error(400, "Unexpected token in JSON at position 0", "Bad Request")
        if not isinstance(body, dict):
            return _error(400, "Bad Request")
        messages = [
            f"property {key} should not exist" for key in body if key not in ("locationId", "contactId")
        ]
        for key in ("locationId", "contactId"):
            value = body.get(key)
            if not isinstance(value, str):
                messages.append(f"{key} must be a string")
            if not value:
                messages.append(f"{key} should not be empty")
        if messages:
            return _error(422, messages, "Unprocessable Entity")
        if body["locationId"] != location:
            return _error(403, "The token does not have access to this location.", "Forbidden")
        contact_id = body["contactId"]
        trigger = find_trigger(contact_id)
        if trigger == "fail-500":
            return self.internal_error()
        if trigger == "rate-limit":
            reply = _error(429, "Too Many Requests")
            reply.headers.update(self._limit_headers(0, DAILY) | {"Retry-After": "2"})
            return reply
        if not ID.match(contact_id):
            return _error(400, "Contact not found", "Bad Request")
        with self.lock:
            if trigger == "duplicate" and self._by_contact(location, contact_id) is None:
                self._store(location, contact_id, now() - timedelta(hours=1))  # the one that "already exists"
            if self._by_contact(location, contact_id) is not None:
                return _error(400, f"Conversation with the contact id:{contact_id} already exists!")
            conversation = self._store(location, contact_id, now())
        if trigger == "slow":
            self.sandbox.hold()
        body = {
            "success": True,
            "conversation": self._created_view(conversation),
            "traceId": str(uuid.uuid4()),
        }
        if trigger == "invalid-json":
            return broken_json_reply(201, body)
        reply = json_reply(201, body)
        reply.drip = trigger == "drip"
        return reply

    def _store(self, location: str, contact_id: str, created: datetime) -> dict[str, Any]:
        conversation = {
            "id": "".join(secrets.choice(ALPHANUMERIC) for _ in range(20)),
            "locationId": location,
            "contactId": contact_id,
            "created": created,
        }
        self.conversations[conversation["id"]] = conversation
        return conversation

    def _by_contact(self, location: str, contact_id: str) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in self.conversations.values()
                if c["locationId"] == location and c["contactId"] == contact_id
            ),
            None,
        )

    def _created_view(self, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": c["id"],
            "dateUpdated": iso_ms(c["created"]),
            "dateAdded": iso_ms(c["created"]),
            "deleted": False,
            "contactId": c["contactId"],
            "locationId": c["locationId"],
            "lastMessageDate": iso_ms(c["created"]),
        }

    def _contact_view(self, location: str, contact_id: str) -> dict[str, Any]:
        digits = str(int.from_bytes(self.sandbox.derive(f"highlevel:phone:{contact_id}", 4)))[-7:].rjust(
            7, "0"
        )
        return {
            "id": contact_id,
            "locationId": location,
            "firstName": "Sandbox",
            "lastName": f"Contact {contact_id[:4]}",
            "contactName": f"Sandbox Contact {contact_id[:4]}",
            "email": f"{contact_id.lower()}@contacts.sandbox.test",
            "phone": f"+1555{digits}",
            "type": "lead",
            "source": "convadmin sandbox",
            "tags": [],
            "dateAdded": "2024-01-01T00:00:00.000Z",
        }

    def _search_view(self, c: dict[str, Any]) -> dict[str, Any]:
        contact = self._contact_view(c["locationId"], c["contactId"])
        return {
            "id": c["id"],
            "contactId": c["contactId"],
            "locationId": c["locationId"],
            "type": "TYPE_PHONE",
            "lastMessageBody": "",
            "lastMessageType": "TYPE_SMS",
            "unreadCount": 0,
            "inbox": True,
            "starred": False,
            "deleted": False,
            "fullName": contact["contactName"],
            "contactName": contact["contactName"],
            "email": contact["email"],
            "phone": contact["phone"],
            "dateAdded": _ms(c["created"]),
            "dateUpdated": _ms(c["created"]),
            "lastMessageDate": _ms(c["created"]),
        }

    def _search(self, request: Request, location: str) -> Reply:
        wanted = request.arg("locationId")
        if not wanted:
            return _error(422, ["locationId should not be empty"], "Unprocessable Entity")
        if wanted != location:
            return _error(403, "The token does not have access to this location.", "Forbidden")
        try:
            limit = min(max(int(request.arg("limit") or 20), 1), 100)
        except ValueError:
            return _error(422, ["limit must be a number"], "Unprocessable Entity")
        contact_id = request.arg("contactId")
        with self.lock:
            found = [
                c
                for c in self.conversations.values()
                if c["locationId"] == location and (not contact_id or c["contactId"] == contact_id)
            ]
        found.sort(key=lambda c: c["created"], reverse=True)
        body = {
            "conversations": [self._search_view(c) for c in found[:limit]],
            "total": len(found),
            "traceId": str(uuid.uuid4()),
        }
        return json_reply(200, body)

    def _read(self, request: Request, location: str) -> Reply:
        with self.lock:
            c = self.conversations.get(request.segments[1])
        if c is None:
            return _error(400, "Conversation not found", "Bad Request")
        if c["locationId"] != location:
            return _error(403, "The token does not have access to this location.", "Forbidden")
        view = self._search_view(c) | {"type": 1, "traceId": str(uuid.uuid4())}
        return json_reply(200, view)

    def _contact(self, request: Request, location: str) -> Reply:
        contact_id = request.segments[1]
        if not ID.match(contact_id):
            return _error(400, "Contact not found", "Bad Request")
        return json_reply(200, {"contact": self._contact_view(location, contact_id)})

    # -- OAuth -------------------------------------------------------------------------------
    def _token(self, request: Request) -> Reply:
        form = {k: v[0] for k, v in request.form().items()}
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            return self._oauth_error(401, "invalid_client", "Invalid client: client is invalid")
        if form.get("grant_type") != "refresh_token":
            return self._oauth_error(
                400, "unsupported_grant_type", "Unsupported grant type: grant type is invalid"
            )
        old = form.get("refresh_token", "")
        claims = self.sandbox.unsign(old, "hl-refresh")
        with self.lock:
            if not claims or claims.get("client_id") != self.client_id or old in self.used_refresh:
                return self._oauth_error(400, "invalid_grant", "Invalid grant: refresh token is invalid")
            self.used_refresh.add(old)  # each refresh token works once: the reply carries the next one
            new = self.sandbox.sign(claims | {"jti": str(uuid.uuid4())})
            if claims.get("chain") == "seed":
                self.latest_refresh = new
        access = self.sandbox.sign(
            {
                "typ": "hl-access",
                "loc": claims["loc"],
                "exp": int(time.time()) + ACCESS_SECONDS,
                "jti": str(uuid.uuid4()),
            }
        )
        return json_reply(
            200,
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": ACCESS_SECONDS,
                "refresh_token": new,
                "scope": SCOPES,
                "userType": "Location",
                "companyId": self.company_id,
                "locationId": claims["loc"],
                "userId": self.user_id,
                "isBulkInstallation": False,
            },
        )

    def _oauth_error(self, status: int, error: str, message: str) -> Reply:
        return json_reply(
            status, {"statusCode": status, "error": error, "error_description": message, "message": message}
        )
