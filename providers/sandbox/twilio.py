"""Twilio Conversations: ``ConversationWithParticipants`` and the reads behind it (Twilio's Conversations API
reference).

HTTP Basic with the Account SID + Auth Token or an API key (SK…) + secret. Form-encoded creates with
repeated ``Participant`` JSON values; 201 without participants, 202 with (added at once here, not
asynchronously). The HTTP status of each 50xxx code is unverified; the sandbox uses 400, and 409 for
a duplicate ``UniqueName`` (50353).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from providers.sandbox.server import Reply, Request, broken_json_reply, find_trigger, iso, json_reply, now

if TYPE_CHECKING:
    from providers.sandbox.server import Sandbox

STATES = ("initializing", "inactive", "active", "closed")
ADDRESS = re.compile(r"^(?:(whatsapp|rcs|messenger):)?\+[1-9]\d{6,14}$")
DURATION = re.compile(
    r"^P(?!$)(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
PAGE_SIZE_MAX = 100


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        "detail": "",
    }
    return json_reply(status, body, headers)


def _seconds(duration: str) -> float | None:
    match = DURATION.match(duration)
    if not match:
        return None
    weeks, days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()


def _channel(address: str) -> str:
    return address.split(":", 1)[0] if ":" in address else "sms"


class TwilioApi:
    name = "twilio"

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.account_sid = "AC" + sandbox.hex("twilio:account_sid", 32)
        self.auth_token = sandbox.hex("twilio:auth_token", 32)
        self.api_key_sid = "SK" + sandbox.hex("twilio:api_key_sid", 32)
        self.api_key_secret = sandbox.alnum("twilio:api_key_secret", 32)
        self.service_sid = "IS" + sandbox.hex("twilio:chat_service_sid", 32)
        self.messaging_service_sid = "MG" + sandbox.hex("twilio:messaging_service_sid", 32)
        self.role_sid = "RL" + sandbox.hex("twilio:role_sid", 32)
        self.conversations: dict[str, dict[str, Any]] = {}
        self.participants: dict[str, list[dict[str, Any]]] = {}
        self.bindings: dict[tuple[str, str], str] = {}  # (address, proxy) -> conversation sid

    @property
    def base(self) -> str:
        return self.sandbox.url(self.name)

    def credential(self) -> dict[str, str]:
        return {"account_sid": self.account_sid, "auth_token": self.auth_token, "base_url": self.base}

    def api_key_credential(self) -> dict[str, str]:
        return {
            "account_sid": self.account_sid,
            "api_key_sid": self.api_key_sid,
            "api_key_secret": self.api_key_secret,
            "base_url": self.base,
        }

    def internal_error(self) -> Reply:
        return _error(500, 20500, "Internal Server Error")

    def handle(self, request: Request) -> Reply:
        if not self._authenticated(request):
            return _error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        reply = self._route(request)
        reply.headers.setdefault("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        reply.headers.setdefault("Twilio-Concurrent-Requests", "1")
        return reply

    def _authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.header("Authorization").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        secret = {self.account_sid: self.auth_token, self.api_key_sid: self.api_key_secret}.get(user)
        return secret is not None and hmac.compare_digest(password.encode(), secret.encode())

    def _route(self, request: Request) -> Reply:
        method, seg = request.method, list(request.segments)
        if seg[:1] != ["v1"]:
            return self._not_found(request)
        seg = seg[1:]
        if len(seg) >= 2 and seg[0] == "Services":  # /v1/Services/{IS}/… works like the default service
            if seg[1] != self.service_sid:
                return self._not_found(request)
            seg = seg[2:] if len(seg) > 2 else ["Services", seg[1]]
        if method == "POST" and seg == ["ConversationWithParticipants"]:
            return self._create(request)
        if method == "GET" and len(seg) in (2, 3) and seg[0] == "Conversations":
            with self.lock:
                conversation = self._find(seg[1])
            if conversation is None:
                return self._not_found(request)
            if len(seg) == 2:
                return json_reply(200, conversation)
            if seg[2] == "Participants":
                return self._participants(request, conversation)
        if method == "GET" and seg == ["Configuration"]:
            return json_reply(200, self._configuration())
        if method == "GET" and seg in (["Services"], ["Services", self.service_sid]):
            service = self._service()
            if len(seg) == 2:
                return json_reply(200, service)
            return json_reply(
                200, {"services": [service], "meta": self._meta(request, "services", 0, 1, False)}
            )
        return self._not_found(request)

    def _not_found(self, request: Request) -> Reply:
        return _error(404, 20404, f"The requested resource {request.path} was not found")

    def _find(self, sid_or_name: str) -> dict[str, Any] | None:
        if sid_or_name in self.conversations:
            return self.conversations[sid_or_name]
        return next((c for c in self.conversations.values() if c["unique_name"] == sid_or_name), None)

    # -- create ------------------------------------------------------------------------------
    def _create(self, request: Request) -> Reply:
        form = request.form()

        def one(key: str) -> str | None:
            values = form.get(key)
            return values[0] if values else None

        items = form.get("Participant", [])
        if len(items) > 10:
            return _error(400, 50426, "Too many participants: at most 10 can be added in one request")
        participants: list[dict[str, Any]] = []
        for raw in items:
            try:
                item = json.loads(raw)
            except ValueError:
                item = None
            binding = item.get("messaging_binding") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not (item.get("identity") or isinstance(binding, dict)):
                return _error(400, 50424, f"Invalid Participant parameter: {raw[:200]}")
            participants.append(item)
        if problem := self._check_settings(one):
            return problem
        unique_name = one("UniqueName")
        texts = [one("FriendlyName"), unique_name]
        for p in participants:
            binding = p.get("messaging_binding") or {}
            texts += [p.get("identity"), binding.get("address"), binding.get("proxy_address")]
            texts.append(binding.get("projected_address"))
        trigger = find_trigger(*texts)
        if trigger == "fail-500":
            return self.internal_error()
        if trigger == "rate-limit":
            return _error(429, 20429, "Too Many Requests", {"Retry-After": "2"})
        with self.lock:
            if trigger == "duplicate" and unique_name and self._find(unique_name) is None:
                self._store(form, one, [])  # the conversation that "already exists"
            if unique_name and self._find(unique_name) is not None:
                return _error(409, 50353, "Conversation with provided unique name already exists")
            if problem := self._check_participants(participants):
                return problem
            if trigger == "duplicate":  # no UniqueName to clash with: the error alone
                return _error(409, 50353, "Conversation with provided unique name already exists")
            conversation = self._store(form, one, participants)
        status = 202 if participants else 201
        if trigger == "slow":
            self.sandbox.hold()
        if trigger == "invalid-json":
            return broken_json_reply(status, conversation)
        reply = json_reply(status, conversation)
        reply.drip = trigger == "drip"
        return reply

    def _check_settings(self, one: Any) -> Reply | None:
        unique_name = one("UniqueName")
        if unique_name and re.fullmatch(r"CH[0-9a-fA-F]{32}", unique_name):
            return _error(400, 50390, "Unique name cannot look like a conversation SID")
        state = one("State")
        if state is not None and state not in STATES:
            # The code for a bad enum value is unverified; 20001 is Twilio's "invalid parameter".
            return _error(400, 20001, f"Invalid State: {state} is not one of {', '.join(STATES)}")
        if state == "closed":
            return _error(400, 50384, "Conversation cannot be created in the closed state")
        for key, minimum, bad_format, too_short in (
            ("Timers.Inactive", 60, 50376, 50375),
            ("Timers.Closed", 600, 50380, 50379),
        ):
            value = one(key)
            if value is None:
                continue
            if state is None:
                return _error(400, 50382, f"{key} can only be set together with State")
            seconds = _seconds(value)
            if seconds is None:
                return _error(400, bad_format, f"{key} must be an ISO 8601 duration")
            if seconds < minimum:
                return _error(400, too_short, f"{key} must be at least {minimum // 60} minutes")
        return None

    def _check_participants(self, participants: list[dict[str, Any]]) -> Reply | None:
        identities: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        for p in participants:
            identity = p.get("identity")
            if identity:
                if identity in identities:
                    return _error(400, 50433, f"Participant with identity {identity} already exists")
                identities.add(identity)
            binding = p.get("messaging_binding") or {}
            address, proxy = binding.get("address"), binding.get("proxy_address")
            if address is not None and not ADDRESS.match(str(address)):
                return _error(400, 50407, f"Invalid messaging binding address {address}")
            if proxy is not None and not ADDRESS.match(str(proxy)):
                return _error(400, 50408, f"Invalid messaging binding proxy address {proxy}")
            if address and proxy:
                if address == proxy:
                    return _error(400, 50409, "Messaging binding address and proxy address must differ")
                if _channel(address) != _channel(proxy):
                    return _error(400, 50414, "Messaging binding address and proxy address channels differ")
                existing = self.bindings.get((address, proxy))
                if existing or (address, proxy) in pairs:
                    return _error(
                        400,
                        50416,
                        "A binding for this participant and proxy address already exists in Conversation "
                        f"{existing or 'in this request'}",
                    )
                pairs.add((address, proxy))
        return None

    def _store(
        self, form: dict[str, list[str]], one: Any, participants: list[dict[str, Any]]
    ) -> dict[str, Any]:
        sid = "CH" + secrets.token_hex(16)
        url = f"{self.base}/v1/Conversations/{sid}"
        created = one("DateCreated") or iso()
        timers: dict[str, str] = {}
        for key, name in (("Timers.Inactive", "date_inactive"), ("Timers.Closed", "date_closed")):
            if one(key):
                timers[name] = iso(now() + timedelta(seconds=_seconds(one(key)) or 0))
        conversation = {
            "account_sid": self.account_sid,
            "chat_service_sid": self.service_sid,
            "messaging_service_sid": one("MessagingServiceSid") or self.messaging_service_sid,
            "sid": sid,
            "friendly_name": one("FriendlyName"),
            "unique_name": one("UniqueName"),
            "attributes": one("Attributes") or "{}",
            "date_created": created,
            "date_updated": one("DateUpdated") or created,
            "state": one("State") or "active",
            "timers": timers,
            "bindings": None,
            "url": url,
            "links": {name: f"{url}/{name.title()}" for name in ("participants", "messages", "webhooks")},
        }
        self.conversations[sid] = conversation
        self.participants[sid] = [self._participant(sid, p, created) for p in participants]
        for p in participants:
            binding = p.get("messaging_binding") or {}
            if binding.get("address") and binding.get("proxy_address"):
                self.bindings[(binding["address"], binding["proxy_address"])] = sid
        return conversation

    def _participant(self, conversation_sid: str, item: dict[str, Any], created: str) -> dict[str, Any]:
        sid = "MB" + secrets.token_hex(16)
        binding = item.get("messaging_binding")
        if isinstance(binding, dict):
            address = binding.get("address") or binding.get("projected_address") or ""
            binding = {"type": "whatsapp" if address.startswith("whatsapp:") else "sms"} | {
                k: v for k, v in binding.items() if k in ("address", "proxy_address", "projected_address")
            }
        return {
            "account_sid": self.account_sid,
            "chat_service_sid": self.service_sid,
            "conversation_sid": conversation_sid,
            "sid": sid,
            "identity": item.get("identity"),
            "attributes": item.get("attributes") or "{}",
            "messaging_binding": binding or None,
            "role_sid": item.get("role_sid") or self.role_sid,
            "date_created": created,
            "date_updated": created,
            "url": f"{self.base}/v1/Conversations/{conversation_sid}/Participants/{sid}",
            "last_read_message_index": None,
            "last_read_timestamp": None,
        }

    # -- reads -------------------------------------------------------------------------------
    def _participants(self, request: Request, conversation: dict[str, Any]) -> Reply:
        try:
            size = min(max(int(request.arg("PageSize") or 50), 1), PAGE_SIZE_MAX)
            page = max(int(request.arg("Page") or 0), 0)
        except ValueError:
            return _error(400, 20001, "Invalid PageSize or Page")
        with self.lock:
            everyone = list(self.participants.get(conversation["sid"], []))
        items = everyone[page * size : (page + 1) * size]
        more = (page + 1) * size < len(everyone)
        return json_reply(
            200, {"meta": self._meta(request, "participants", page, size, more), "participants": items}
        )

    def _meta(self, request: Request, key: str, page: int, size: int, more: bool) -> dict[str, Any]:
        url = f"{self.base}{request.path}"

        def page_url(n: int) -> str:
            return f"{url}?PageSize={size}&Page={n}" + (f"&PageToken=PT{n}" if n else "")

        return {
            "page": page,
            "page_size": size,
            "first_page_url": page_url(0),
            "previous_page_url": page_url(page - 1) if page else None,
            "url": page_url(page),
            "next_page_url": page_url(page + 1) if more else None,
            "key": key,
        }

    def _configuration(self) -> dict[str, Any]:
        url = f"{self.base}/v1/Configuration"
        return {
            "account_sid": self.account_sid,
            "default_chat_service_sid": self.service_sid,
            "default_messaging_service_sid": self.messaging_service_sid,
            "default_inactive_timer": None,
            "default_closed_timer": None,
            "url": url,
            "links": {"webhooks": f"{url}/Webhooks"},
        }

    def _service(self) -> dict[str, Any]:
        url = f"{self.base}/v1/Services/{self.service_sid}"
        return {
            "sid": self.service_sid,
            "account_sid": self.account_sid,
            "friendly_name": "Sandbox Conversations Service",
            "date_created": "2024-01-01T00:00:00Z",
            "date_updated": "2024-01-01T00:00:00Z",
            "url": url,
            "links": {
                name: f"{url}/{name.title()}" for name in ("conversations", "users", "roles", "bindings")
            },
        }
