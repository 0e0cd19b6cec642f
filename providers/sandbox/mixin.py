"""Mixin Messenger: ``POST /conversations``, ``GET /conversations/{id}``, ``GET /me`` (Mixin's API
documentation).

Every request must carry a fresh EdDSA JWT of the keystore's session whose ``sig`` claim is the
SHA-256 of method + request target + body. Client errors come back as HTTP 202 with
``{"error": {"status": 202, "code": …}}``, as Mixin's error-code page says (only 20x and 500).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from providers.sandbox.server import Reply, Request, broken_json_reply, find_trigger, json_reply, now

if TYPE_CHECKING:
    from datetime import datetime

    from providers.sandbox.server import Sandbox

#: User ids are UUIDs, so a CONTACT conversation carries its trigger in the participant id itself.
TRIGGER_USER_IDS = {
    "00000000-0000-4000-8000-000000000500": "fail-500",
    "00000000-0000-4000-8000-000000000429": "rate-limit",
    "00000000-0000-4000-8000-000000000409": "duplicate",
    "00000000-0000-4000-8000-000000000bad": "invalid-json",
    "00000000-0000-4000-8000-000000000408": "slow",
    "00000000-0000-4000-8000-0000000000d1": "drip",
}
UNAUTHORIZED = "Unauthorized, maybe invalid token."
INVALID_FIELD = "The request data has invalid field."


def unique_conversation_id(a: str, b: str) -> str:
    """Mixin's UniqueConversationId (Java ``UUID.nameUUIDFromBytes`` of the ordered concatenation)."""
    low, high = sorted([a, b])
    digest = bytearray(hashlib.md5((low + high).encode(), usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x30
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def _rfc3339_ns(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _error(code: int, description: str, *, status: int = 202, extra: Any = None) -> Reply:
    error: dict[str, Any] = {"status": status, "code": code, "description": description}
    if extra is not None:
        error["extra"] = extra
    return json_reply(status, {"error": error})


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


class MixinApi:
    name = "mixin"

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.app_id = sandbox.uuid("mixin:app_id")
        self.session_id = sandbox.uuid("mixin:session_id")
        self.session_seed = sandbox.derive("mixin:session_private_key")
        session_key = Ed25519PrivateKey.from_private_bytes(self.session_seed)
        self.public_key = session_key.public_key()
        server_key = Ed25519PrivateKey.from_private_bytes(sandbox.derive("mixin:server_private_key"))
        self.server_public_key = server_key.public_key().public_bytes_raw().hex()
        self.conversations: dict[str, dict[str, Any]] = {}
        self.used_jti: set[str] = set()

    def credential(self) -> dict[str, str]:
        """The keystore in the current dashboard format, plus ``base_url``."""
        return {
            "app_id": self.app_id,
            "session_id": self.session_id,
            "server_public_key": self.server_public_key,
            "session_private_key": self.session_seed.hex(),
            "base_url": self.sandbox.url(self.name),
        }

    def internal_error(self) -> Reply:
        return _error(500, "Internal Server Error.", status=500)

    def handle(self, request: Request) -> Reply:
        reply = self._authenticate(request) or self._route(request)
        if request_id := request.header("X-Request-Id"):
            reply.headers["X-Request-Id"] = request_id
        return reply

    def _route(self, request: Request) -> Reply:
        method, seg = request.method, request.segments
        if method == "GET" and seg in (("me",), ("safe", "me")):
            return json_reply(200, {"data": self._me()})
        if method == "POST" and seg == ("conversations",):
            return self._create(request)
        if method == "GET" and len(seg) == 2 and seg[0] == "conversations":
            with self.lock:
                conversation = self.conversations.get((_uuid(seg[1]) or seg[1]).lower())
            if conversation is None:
                return _error(404, "The endpoint is not found.")
            return json_reply(200, {"data": conversation})
        return _error(404, "The endpoint is not found.")

    def _authenticate(self, request: Request) -> Reply | None:
        token = request.bearer()
        try:
            if jwt.get_unverified_header(token).get("alg") != "EdDSA":
                return _error(401, UNAUTHORIZED)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["EdDSA"],
                options={"require": ["uid", "sid", "iat", "exp", "sig"]},
                leeway=5,
            )
        except jwt.PyJWTError:
            return _error(401, UNAUTHORIZED)
        expected = hashlib.sha256(
            request.method.encode() + request.target.encode() + request.body
        ).hexdigest()
        if claims["uid"] != self.app_id or claims["sid"] != self.session_id or claims["sig"] != expected:
            return _error(401, UNAUTHORIZED)
        jti = claims.get("jti")
        with self.lock:
            if jti in self.used_jti:  # Mixin forbids reusing a token
                return _error(401, UNAUTHORIZED)
            if jti:
                self.used_jti.add(jti)
        return None

    def _me(self) -> dict[str, Any]:
        return {
            "type": "user",
            "user_id": self.app_id,
            "identity_number": "7000" + str(int(self.app_id.replace("-", "")[:8], 16))[:6],
            "full_name": "Sandbox Bot",
            "biography": "Mixin emulated by the convadmin sandbox",
            "avatar_url": "",
            "relationship": "ME",
            "mute_until": "0001-01-01T00:00:00Z",
            "created_at": "2024-01-01T00:00:00.000000000Z",
            "is_verified": False,
            "is_scam": False,
            "app_id": self.app_id,
            "session_id": self.session_id,
        }

    def _validate(self, body: Any) -> Reply | None:
        """Server-side rules: code 10002 with the field in ``extra``, 20116 for a full group."""

        def invalid(field: str, reason: str) -> Reply:
            return _error(10002, INVALID_FIELD, extra={"field": field, "reason": reason})

        if not isinstance(body, dict):
            return invalid("body", "must be a JSON object")
        category = body.get("category")
        if category not in ("GROUP", "CONTACT"):
            return invalid("category", "must be GROUP or CONTACT")
        if _uuid(body.get("conversation_id")) is None:
            return invalid("conversation_id", "must be a UUID")
        participants = body.get("participants")
        if not isinstance(participants, list) or not participants:
            return invalid("participants", "must be a non-empty list")
        for i, p in enumerate(participants):
            if not isinstance(p, dict) or _uuid(p.get("user_id")) is None:
                return invalid(f"participants.{i}.user_id", "must be a UUID")
            if p.get("role", "") not in ("", "ADMIN"):
                return invalid(f"participants.{i}.role", "must be empty or ADMIN")
        if category == "CONTACT":
            if len(participants) != 1:
                return invalid("participants", "a CONTACT conversation has exactly one participant")
            expected = unique_conversation_id(self.app_id, _uuid(participants[0]["user_id"]) or "")
            if _uuid(body["conversation_id"]) != expected:
                return invalid("conversation_id", f"must be {expected} for this contact")
        elif len(participants) > 256:
            return _error(20116, "The group chat is full.")
        if len(str(body.get("name") or "")) > 512:
            return invalid("name", "at most 512 characters")
        if len(str(body.get("announcement") or "")) > 1024:
            return invalid("announcement", "at most 1024 characters")
        return None

    def _create(self, request: Request) -> Reply:
        try:
            body = json.loads(request.body)
        except ValueError:
            return _error(400, "The request body can\u2019t be pasred as valid data.")  # Mixin's own wording
        if problem := self._validate(body):
            return problem
        user_ids = [_uuid(p["user_id"]) or "" for p in body["participants"]]
        trigger = find_trigger(
            body.get("name"), body.get("announcement"), *(TRIGGER_USER_IDS.get(u) for u in user_ids)
        )
        if trigger == "fail-500":
            return self.internal_error()
        if trigger == "rate-limit":
            # Mixin sends client errors as HTTP 202 (error-code page); the header is a sandbox courtesy.
            reply = _error(429, "Too Many Requests.")
            reply.headers["Retry-After"] = "2"
            return reply
        conversation_id = _uuid(body["conversation_id"]) or ""
        with self.lock:
            conversation = self.conversations.get(conversation_id)
            if conversation is None:
                # Mixin has no duplicate error: an existing id is "ensured" and returned as it is.
                created = now() - timedelta(hours=1) if trigger == "duplicate" else now()
                conversation = self._new_conversation(body, conversation_id, created)
                self.conversations[conversation_id] = conversation
        if trigger == "slow":
            self.sandbox.hold()
        if trigger == "invalid-json":
            return broken_json_reply(200, {"data": conversation})
        reply = json_reply(200, {"data": conversation})
        reply.drip = trigger == "drip"
        return reply

    def _new_conversation(
        self, body: dict[str, Any], conversation_id: str, created: datetime
    ) -> dict[str, Any]:
        stamp = _rfc3339_ns(created)
        group = body["category"] == "GROUP"
        members = [(self.app_id, "OWNER" if group else "")]
        members += [(_uuid(p["user_id"]) or "", p.get("role") or "") for p in body["participants"]]
        code_id = str(uuid.uuid4())
        return {
            "type": "conversation",
            "conversation_id": conversation_id,
            "creator_id": self.app_id,
            "category": body["category"],
            "name": (body.get("name") or "") if group else "",
            "icon_url": "",
            "announcement": (body.get("announcement") or "") if group else "",
            "created_at": stamp,
            "code_id": code_id,
            "code_url": f"https://mixin.one/codes/{code_id}",
            "mute_until": "0001-01-01T00:00:00Z",
            "expire_in": 0,
            "participants": [
                {"type": "participant", "user_id": user_id, "role": role, "created_at": stamp}
                for user_id, role in members
            ],
            "participant_sessions": [
                {
                    "type": "participant_session",
                    "user_id": user_id,
                    "session_id": self.session_id if user_id == self.app_id else str(uuid.uuid4()),
                    "public_key": base64.urlsafe_b64encode(
                        self.public_key.public_bytes_raw()
                        if user_id == self.app_id
                        else secrets.token_bytes(32)
                    )
                    .rstrip(b"=")
                    .decode(),
                }
                for user_id, _ in members
            ],
            "circles": [],
        }
