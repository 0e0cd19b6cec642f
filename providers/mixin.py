"""Mixin Messenger: ``POST /conversations`` signed with the bot session's key (Mixin's API
documentation, "Conversations" and "Authentication").

Every request carries a fresh JWT (EdDSA, or RS512 for legacy RSA sessions) whose ``sig`` claim is the
SHA-256 of the method, the path with its query and the exact body bytes; the same bytes are sent.
Errors usually arrive inside a 2xx body (``{"error": {...}}``), so success means 2xx, a ``data`` object
and no ``error`` key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from providers.base import (
    Created,
    Credential,
    Fetched,
    Field,
    FieldError,
    InvalidCredential,
    ProviderError,
    Summary,
    base_url,
    bearer_curl_auth,
    check_base_url,
    error_text,
    flatten,
    reply_leaves_outcome_unknown,
    request_method,
    too_deep,
    unflatten,
    unique_errors,
    value_errors,
)
from providers.http import Http, json_body, retry_after

NAME = "mixin"
LABEL = "Mixin Messenger"
DEFAULT_BASE_URL = "https://api.mixin.one"
#: Where the keystore's signatures may be sent: the documented host and the SDKs' mirror.
URL_HOSTS = {"base_url": ("api.mixin.one", "mixin-api.zeromesh.net")}
TOKEN_LIFETIME = 300  # seconds: outlives a slow request, short enough to be useless if leaked
MAX_PARTICIPANTS = 256
#: Hooks the Django layer asks (see providers.base.Provider).
NATURAL_KEY = "conversation_id"
BULK_LIMIT = (10, 1.0)  # no limit is documented: a cautious 10 a second
BULK_CONCURRENCY = 2  # nothing documented: cautious
KEY_IS_UNIQUE = True  # the id is ours: a second create with it returns the existing conversation
NOT_DUPLICATED = ("conversation_id",)
GENERATED = ("random_id",)
PARTICIPANT_IDENTITY = ("user_id",)
KEYSTORE_UPLOAD = True
PREVIEW_HINT = "A blank conversation id is generated afresh when you create; fill it in to fix it."
curl_auth = bearer_curl_auth(
    "MIXIN_JWT",
    "a JWT signed with the bot's session private key for this exact method, path and body "
    "(its sig claim is the SHA-256 of POST/conversations followed by the body), e.g. from a Mixin SDK's "
    "SignAuthenticationToken. It expires within minutes.",
)
MAX_NAME = 512
MAX_ANNOUNCEMENT = 1024  # the limit of the update call; the create docs give none
CATEGORIES = ("GROUP", "CONTACT")
ROLES = ("", "ADMIN")
RETRYABLE_CODES = {429, 500, 7000, 7001}
SERVER_CODES = {500, 7000, 7001}  # internal error, blaze error, blaze timeout: may come after the work
BODY_KEYS = ("category", "conversation_id", "name", "announcement", "participants", "random_id")
PARTICIPANT_KEYS = ("user_id", "role")
UUID_EXAMPLE = "965e5c6e-434c-3fa9-b780-c50f43cd955c"
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")

CREDENTIAL_FIELDS = [
    Field("app_id", "App id", help="The bot's user id (client_id in legacy keystores)."),
    Field("session_id", "Session id"),
    Field(
        "server_public_key",
        "Server public key",
        required=False,
        help="64 hex characters, from the keystore; not used to create conversations.",
    ),
    Field(
        "session_private_key",
        "Session private key",
        secret=True,
        required=False,
        help="64 hex characters (the Ed25519 seed). Legacy keystores give private_key instead.",
    ),
    Field(
        "private_key",
        "Private key (legacy keystore)",
        secret=True,
        required=False,
        widget="textarea",
        help="Base64 Ed25519 key (seed and public key) or an RSA PEM key.",
    ),
    Field("pin_token", "PIN token (legacy keystore)", secret=True, required=False),
    Field("pin", "PIN (legacy keystore)", secret=True, required=False, widget="password"),
]

BODY_FIELDS = [
    Field(
        "category",
        "Category",
        choices=(("GROUP", "Group"), ("CONTACT", "Contact (one-to-one)")),
        widget="select",
    ),
    Field("name", "Group name", required=False, help=f"GROUP only, up to {MAX_NAME} characters."),
    Field(
        "announcement",
        "Announcement",
        required=False,
        widget="textarea",
        help=f"GROUP only, up to {MAX_ANNOUNCEMENT} characters.",
    ),
    Field(
        "conversation_id",
        "Conversation id",
        required=False,
        help="A UUID; generated when blank (CONTACT: from the bot's and the user's ids).",
        placeholder=UUID_EXAMPLE,
    ),
]

PARTICIPANTS_PATH = "participants"
PARTICIPANT_FIELDS = [
    Field("user_id", "User id", help="The Mixin user's UUID.", placeholder=UUID_EXAMPLE),
    Field(
        "role",
        "Role",
        required=False,
        choices=(("", "Member"), ("ADMIN", "Admin")),
        widget="select",
    ),
]


# --- conversation ids and signing -------------------------------------------------------------


def unique_conversation_id(a: str, b: str) -> str:
    """Mixin's UniqueConversationId: MD5 of the byte-wise ordered pair, stamped as a version-3 UUID.

    Case-sensitive like the official SDKs: lower-case UUIDs before calling it.
    """
    low, high = sorted((a, b), key=lambda s: s.encode())
    h = bytearray(hashlib.md5((low + high).encode(), usedforsecurity=False).digest())
    h[6] = (h[6] & 0x0F) | 0x30
    h[8] = (h[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(h)))


def group_conversation_id(owner: str, name: str, participants: list[str], random_id: str) -> str:
    """Mixin's GroupConversationId (official Go SDK); the owner is not among ``participants``."""
    gid = unique_conversation_id(owner, name)
    gid = unique_conversation_id(gid, random_id)
    for participant in sorted(participants):
        gid = unique_conversation_id(gid, participant)
    return gid


def signature(method: str, path_with_query: str, body: bytes) -> str:
    """The ``sig`` claim: hex SHA-256 of upper-case method + path with query + the exact body bytes."""
    return hashlib.sha256(method.upper().encode() + path_with_query.encode() + body).hexdigest()


def sign_token(
    credential: Credential,
    method: str,
    path_with_query: str,
    body: bytes,
    *,
    iat: int | None = None,
    exp: int | None = None,
    jti: str | None = None,
) -> str:
    """A JWT for one request, signed with the session key (EdDSA, or RS512 for a legacy RSA key)."""
    algorithm, key = _signing_key(credential)
    iat = int(time.time()) if iat is None else iat
    claims = {  # this order reproduces the official Node SDK's test token byte for byte
        "uid": credential.settings["app_id"],
        "sid": credential.settings["session_id"],
        "iat": iat,
        "exp": iat + TOKEN_LIFETIME if exp is None else exp,
        "jti": jti or str(uuid.uuid4()),
        "sig": signature(method, path_with_query, body),
        "scp": "FULL",
    }
    return jwt.encode(claims, key, algorithm=algorithm)


def _signing_key(credential: Credential) -> tuple[str, Ed25519PrivateKey | RSAPrivateKey]:
    secrets = credential.secrets
    if secrets.get("session_private_key"):
        return "EdDSA", Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secrets["session_private_key"]))
    key = _legacy_key(secrets.get("private_key", ""))
    return ("RS512" if isinstance(key, RSAPrivateKey) else "EdDSA"), key


def _legacy_key(value: str) -> Ed25519PrivateKey | RSAPrivateKey:
    """Load a legacy ``private_key``; raises ValueError with a user-facing message."""
    if "-----BEGIN" in value:
        pem = value.replace("\\n", "\n").encode()  # a PEM pasted with escaped newlines
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("The PEM key could not be read (damaged, or protected by a password).") from exc
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("A PEM key must be an RSA private key (-----BEGIN RSA PRIVATE KEY-----).")
        return key
    raw = _b64decode(value)
    if raw is None:
        raise ValueError("Not base64: expected an Ed25519 key (86 base64url characters) or an RSA PEM key.")
    if len(raw) != 64:
        raise ValueError(f"An Ed25519 key holds 64 bytes (seed and public key); this one holds {len(raw)}.")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if key.public_key().public_bytes_raw() != raw[32:]:
        raise ValueError("The last 32 bytes are not the public key of the first 32: the key is damaged.")
    return key


def _b64decode(value: str) -> bytes | None:
    """Base64url first (what Mixin writes), then standard base64 (what some tools write)."""
    padded = value + "=" * (-len(value) % 4)
    for altchars in (b"-_", None):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


# --- credential ----------------------------------------------------------------------------------


def parse_credential(data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential:
    """Read a keystore: current (``app_id, session_id, server_public_key, session_private_key``) or
    legacy (``client_id, session_id, private_key, pin_token, pin``). Raises InvalidCredential."""
    if not isinstance(data, Mapping):
        raise InvalidCredential([FieldError("credential", "The keystore must be a JSON object.")])
    errors: list[FieldError] = []
    values: dict[str, str] = {}
    for name in ("app_id", "client_id", *(f.name for f in CREDENTIAL_FIELDS[1:]), "base_url"):
        raw = data.get(name)
        if raw in (None, ""):
            continue
        if not isinstance(raw, str):
            errors.append(FieldError(name, f"{name} must be text."))
        elif raw.strip():
            values[name] = raw.strip()

    app_id = values.get("app_id") or values.get("client_id")
    app_path = "client_id" if "client_id" in values and "app_id" not in values else "app_id"
    if (
        "app_id" in values
        and "client_id" in values
        and values["app_id"].lower() != values["client_id"].lower()
    ):
        errors.append(FieldError("client_id", "client_id and app_id differ; give the bot's user id once."))
    for path, value, label in (
        (app_path, app_id, "App id"),
        ("session_id", values.get("session_id"), "Session id"),
    ):
        if not value:
            if path not in {e.path for e in errors}:  # not already "must be text"
                errors.append(FieldError(path, f"{label} is required."))
        elif not _UUID_RE.fullmatch(value):
            errors.append(FieldError(path, f"{label} must be a UUID such as {UUID_EXAMPLE}."))
    if "server_public_key" in values:
        errors += _hex_errors("server_public_key", values["server_public_key"], "The server public key")

    algorithm = "EdDSA"
    session_key, private_key = values.get("session_private_key"), values.get("private_key")
    if session_key and private_key:
        errors.append(FieldError("private_key", "Give session_private_key or private_key, not both."))
    elif session_key:
        errors += _hex_errors("session_private_key", session_key, "The session private key")
    elif private_key:
        try:
            if isinstance(_legacy_key(private_key), RSAPrivateKey):
                algorithm = "RS512"
        except ValueError as exc:
            errors.append(FieldError("private_key", str(exc)))
    elif not {"session_private_key", "private_key"} & {e.path for e in errors}:
        errors.append(
            FieldError(
                "session_private_key",
                "The session private key is required (private_key in legacy keystores).",
            )
        )
    if "pin_token" in values and _b64decode(values["pin_token"]) is None:
        errors.append(FieldError("pin_token", "The PIN token must be base64."))
    if "pin" in values and not re.fullmatch(r"\d{6}", values["pin"]):
        errors.append(FieldError("pin", "The PIN is 6 digits."))
    if "base_url" in values:
        errors += check_base_url(values["base_url"], "base_url", URL_HOSTS["base_url"], extra_hosts)
    if errors:
        raise InvalidCredential(errors)

    settings: dict[str, Any] = {
        "app_id": app_id.lower(),
        "session_id": values["session_id"].lower(),
        "key_algorithm": algorithm,
    }
    if "server_public_key" in values:
        settings["server_public_key"] = values["server_public_key"].lower()
    if "base_url" in values:
        settings["base_url"] = values["base_url"].rstrip("/")
    secrets = {
        name: values[name]
        for name in ("session_private_key", "private_key", "pin_token", "pin")
        if name in values
    }
    if "session_private_key" in secrets:
        secrets["session_private_key"] = secrets["session_private_key"].lower()
    return Credential(provider=NAME, settings=settings, secrets=secrets)


def _hex_errors(path: str, value: str, label: str) -> list[FieldError]:
    if not _HEX_RE.fullmatch(value):
        return [FieldError(path, f"{label} must be hexadecimal (0-9, a-f).")]
    if len(value) != 64:
        return [FieldError(path, f"{label} must be 64 hex characters (32 bytes); this one has {len(value)}.")]
    return []


# --- body ---------------------------------------------------------------------------------------


def _uuid(value: Any) -> str | None:
    """The lower-cased UUID, or None when ``value`` is not one in its canonical 8-4-4-4-12 form."""
    return value.lower() if isinstance(value, str) and _UUID_RE.fullmatch(value) else None


def _given(value: Any) -> bool:
    return value not in (None, "")


def validate_participant(row: Mapping[str, Any], index: int = 0) -> list[FieldError]:
    """The rules of one ``{user_id, role?}`` row; paths ``participants.<index>.<field>``."""
    prefix = f"{PARTICIPANTS_PATH}.{index}."
    if not isinstance(row, Mapping):
        return [
            FieldError(prefix + "user_id", 'Each participant must be an object such as {"user_id": ...}.')
        ]
    errors = value_errors(row, prefix[:-1])
    if too_deep(errors):
        return errors
    user_id = row.get("user_id")
    if not _given(user_id):
        errors.append(FieldError(prefix + "user_id", "User id is required."))
    elif _uuid(user_id) is None:
        errors.append(FieldError(prefix + "user_id", f"User id must be a UUID such as {UUID_EXAMPLE}."))
    role = row.get("role", "")
    if role is None:
        role = ""
    if role not in ROLES:
        errors.append(FieldError(prefix + "role", 'Role must be "" (member) or "ADMIN".'))
    for key in row:
        if key == "action":
            # An older page of Mixin's API documentation lists ``action`` as a participant field and sends
            # "action":"ADD"; it is really the path segment of /conversations/{id}/participants/{action}.
            errors.append(
                FieldError(
                    prefix + "action",
                    "action is not part of a create: it belongs in the path of "
                    "/conversations/{id}/participants/{ADD|REMOVE|ROLE}. Remove it.",
                )
            )
        elif key not in PARTICIPANT_KEYS:
            errors.append(
                FieldError(prefix + str(key), f"Unknown participant field {key!r}: use user_id and role.")
            )
    return errors


def validate(body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]:
    """Every rule of Mixin's documentation for a create; the credential adds the CONTACT id check and the bot's own id."""
    if not isinstance(body, Mapping):
        return [FieldError("body", "The body must be a JSON object.")]
    errors = value_errors(body)
    if too_deep(errors):
        return errors
    return unique_errors(errors + _rules(body, credential))


def _rules(body: Mapping[str, Any], credential: Credential | None) -> list[FieldError]:
    errors = [
        FieldError(str(key), f"Unknown field {key!r}: use {', '.join(BODY_KEYS)}.")
        for key in body
        if key not in BODY_KEYS
    ]
    category = body.get("category")
    if not _given(category):
        errors.append(FieldError("category", "Category is required: GROUP or CONTACT."))
    elif category not in CATEGORIES:
        errors.append(FieldError("category", "Category must be GROUP or CONTACT (upper case)."))

    conversation_id = body.get("conversation_id")
    if _given(conversation_id) and _uuid(conversation_id) is None:
        errors.append(
            FieldError("conversation_id", f"Conversation id must be a UUID such as {UUID_EXAMPLE}.")
        )
    random_id = body.get("random_id")
    if _given(random_id):
        if _uuid(random_id) is None:
            errors.append(FieldError("random_id", f"random_id must be a UUID such as {UUID_EXAMPLE}."))
        elif category == "CONTACT":
            errors.append(FieldError("random_id", "random_id only applies to GROUP conversations."))

    for key, limit, label in (("name", MAX_NAME, "Name"), ("announcement", MAX_ANNOUNCEMENT, "Announcement")):
        value = body.get(key)
        if not _given(value):
            continue
        if not isinstance(value, str):
            errors.append(FieldError(key, f"{label} must be text."))
        elif category == "CONTACT":
            errors.append(FieldError(key, f"{label} only applies to GROUP conversations; remove it."))
        elif len(value) > limit:
            errors.append(
                FieldError(key, f"{label} is at most {limit} characters; this one has {len(value)}.")
            )

    participants = body.get("participants")
    if participants is None:
        return [*errors, FieldError(PARTICIPANTS_PATH, "Add at least one participant.")]
    if not isinstance(participants, list):
        return [
            *errors,
            FieldError(PARTICIPANTS_PATH, "Participants must be a list of {user_id, role} objects."),
        ]
    if category == "CONTACT" and len(participants) != 1:
        errors.append(
            FieldError(
                PARTICIPANTS_PATH,
                f"A CONTACT conversation has exactly 1 participant (the other user); got {len(participants)}.",
            )
        )
    elif not participants:
        errors.append(FieldError(PARTICIPANTS_PATH, "Add at least one participant."))
    elif len(participants) > MAX_PARTICIPANTS:
        errors.append(
            FieldError(
                PARTICIPANTS_PATH, f"At most {MAX_PARTICIPANTS} participants; got {len(participants)}."
            )
        )

    app_id = credential.settings.get("app_id") if credential else None
    seen: set[str] = set()
    for index, row in enumerate(participants):
        row_errors = validate_participant(row, index)
        errors += row_errors
        user_id = _uuid(row.get("user_id")) if isinstance(row, Mapping) else None
        if user_id is None:
            continue
        path = f"{PARTICIPANTS_PATH}.{index}.user_id"
        if user_id in seen:
            errors.append(FieldError(path, "This user is already listed."))
        seen.add(user_id)
        if user_id == app_id:
            errors.append(
                FieldError(path, "This is the bot itself (the credential's app_id): list only other users.")
            )

    if category == "CONTACT" and app_id and _uuid(conversation_id) and len(participants) == 1 and seen:
        expected = unique_conversation_id(app_id, next(iter(seen)))
        if _uuid(conversation_id) != expected:
            errors.append(
                FieldError(
                    "conversation_id",
                    f"A CONTACT conversation id must be UniqueConversationId(app_id, user_id) = {expected}; "
                    "leave it blank to have it computed.",
                )
            )
    return errors


def prepare(body: Mapping[str, Any], credential: Credential, key: str | None = None) -> dict[str, Any]:
    """A validated body ready to send: ids lower-cased, ``conversation_id`` (and GROUP ``random_id``) filled.

    Role "" (member, the default) is dropped to keep the body minimal; ``name``/``announcement`` only
    when given. ``key`` is not needed: the conversation id itself is the key Mixin can be asked about.
    """
    category = body["category"]
    participants = []
    for row in body["participants"]:
        participant = {"user_id": row["user_id"].lower()}
        if row.get("role"):
            participant["role"] = row["role"]
        participants.append(participant)
    name = body.get("name") or ""
    random_id = (body.get("random_id") or "").lower()
    conversation_id = (body.get("conversation_id") or "").lower()
    app_id = credential.settings["app_id"]
    if not conversation_id:
        if category == "CONTACT":
            conversation_id = unique_conversation_id(app_id, participants[0]["user_id"])
        else:
            # Current docs (and the Go SDK) derive a GROUP id from a random_id sent alongside; an older
            # docs page's plain random UUID still works, but this one lets the server recompute it.
            random_id = random_id or str(uuid.uuid4())
            conversation_id = group_conversation_id(
                app_id, name, [p["user_id"] for p in participants], random_id
            )
    prepared: dict[str, Any] = {"category": category, "conversation_id": conversation_id}
    if name:
        prepared["name"] = name
    if body.get("announcement"):
        prepared["announcement"] = body["announcement"]
    prepared["participants"] = participants
    if random_id:
        prepared["random_id"] = random_id
    return prepared


def summarize(body: Mapping[str, Any]) -> Summary:
    """The group name (empty for CONTACT) and the participants' user ids."""
    if not isinstance(body, Mapping):
        return Summary("", [])
    rows = body.get("participants")
    ids = (
        [str(r.get("user_id")) for r in rows if isinstance(r, Mapping) and r.get("user_id")]
        if isinstance(rows, list)
        else []
    )
    name = body.get("name")
    return Summary(name if isinstance(name, str) else "", ids)


def body_from_fields(fields: Mapping[str, str], participants: list[Mapping[str, str]]) -> dict[str, Any]:
    """The body from the form's flat values; blank values are dropped, every row is kept (its index is
    the error path of its inputs)."""
    body = unflatten(fields, [f.name for f in BODY_FIELDS])
    body["participants"] = [unflatten(row, [f.name for f in PARTICIPANT_FIELDS]) for row in participants]
    return body


def fields_from_body(body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The form's flat values from a body (``random_id`` has no input and is left out)."""
    fields = flatten(body, [f.name for f in BODY_FIELDS])
    rows = [
        flatten(row, [f.name for f in PARTICIPANT_FIELDS], present=bool, blank=True)
        for row in body.get("participants") or []
        if isinstance(row, Mapping)
    ]
    return fields, rows


# --- HTTP -----------------------------------------------------------------------------------------


def _signed_request(credential: Credential, method: str, path: str, body: bytes = b"") -> httpx.Request:
    url = httpx.URL(base_url(credential, DEFAULT_BASE_URL) + path)
    request_id = str(uuid.uuid4())
    token = sign_token(credential, method, url.raw_path.decode("ascii"), body, jti=request_id)
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id, "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    return httpx.Request(method, url, headers=headers, content=body or None)


def _send(request: httpx.Request, http: Http) -> httpx.Response:
    http.add_secret(request.headers["Authorization"].removeprefix("Bearer "))
    response = http.send(request)
    raise_for_response(response)
    return response


def build_request(body: Mapping[str, Any], credential: Credential) -> httpx.Request:
    """``POST /conversations`` with the prepared body serialized once: those bytes are hashed and sent."""
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return _signed_request(credential, "POST", "/conversations", content)


def create(body: Mapping[str, Any], credential: Credential, http: Http) -> Created:
    """Create (or, for the same id, ensure) the conversation; raises ProviderError."""
    response = _send(build_request(body, credential), http)
    return _created(response, fallback_id=str(body.get("conversation_id") or ""))


def _created(response: httpx.Response, fallback_id: str) -> Created:
    data = response.json()["data"]
    participants = data.get("participants")
    return Created(
        external_id=str(data.get("conversation_id") or fallback_id),
        status=response.status_code,
        body=data,
        participants=participants if isinstance(participants, list) else [],
    )


def _get_conversation(conversation_id: str, credential: Credential, http: Http) -> httpx.Response:
    cid = _uuid(conversation_id)
    if cid is None:  # also keeps anything but a UUID out of the signed path
        raise ProviderError(
            f"{conversation_id!r} is not a Mixin conversation id (a UUID).", code="invalid_id"
        )
    return _send(_signed_request(credential, "GET", f"/conversations/{cid}"), http)


def lookup(
    body: Mapping[str, Any], credential: Credential, http: Http, *, sent_at: datetime | None = None
) -> Created | None:
    """After an unknown outcome: ``GET /conversations/{conversation_id}``; None when Mixin has none.

    The id is ours and unique, so what is found is this conversation (``sent_at`` is not needed).
    """
    conversation_id = body.get("conversation_id")
    if not _uuid(conversation_id):
        return None
    try:
        response = _get_conversation(conversation_id, credential, http)
    except ProviderError as exc:
        if exc.code == "404":
            return None
        raise
    return _created(response, fallback_id=conversation_id.lower())


def fetch(
    external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None = None
) -> Fetched:
    """The conversation as Mixin reports it now, with its participants and their roles."""
    data = _get_conversation(external_id, credential, http).json()["data"]
    participants = data.get("participants")
    return Fetched(
        external_id=str(data.get("conversation_id") or external_id.lower()),
        conversation=data,
        participants=participants if isinstance(participants, list) else [],
    )


def check(credential: Credential, http: Http) -> str:
    """``GET /me``: proves the session key signs for the keystore's bot."""
    data = _send(_signed_request(credential, "GET", "/me"), http).json()["data"]
    user_id = str(data.get("user_id") or "")
    if user_id.lower() != credential.settings["app_id"]:
        raise ProviderError(
            f"Mixin authenticated user {user_id or '(none)'}, not the keystore's app_id "
            f"{credential.settings['app_id']}: the keystore's fields belong to different bots.",
            code="wrong_user",
        )
    return f"Authenticated as {data.get('full_name') or '(no name)'} ({user_id})"


def raise_for_response(response: httpx.Response) -> None:
    """Raise ProviderError unless the answer is 2xx with a ``data`` object and no ``error`` key.

    Mixin reports client errors inside the body, often with HTTP 200/202, so the body is read first.
    On a create (the only POST), a server error (5xx, or code 500/7000/7001 in the body) or a reply that
    cannot be read leaves the outcome unknown: a documented refusal or a 429 does not.
    """
    status = response.status_code
    creating = request_method(response) == "POST"
    malformed_unknown = creating and reply_leaves_outcome_unknown(status)
    payload = json_body(response)
    if isinstance(payload, dict) and "error" in payload:
        error = payload["error"]
        if not isinstance(error, dict):
            raise ProviderError(
                error_text(error) or "Mixin returned an error.",
                status=status,
                permanent=status < 500,
                outcome_unknown=malformed_unknown,
            )
        code = error.get("code")
        message = error_text(error.get("description")) or f"Mixin error {code}."
        if error.get("extra"):
            message = error_text(f"{message}: {json.dumps(error['extra'], ensure_ascii=False)}")
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        raise ProviderError(
            message,
            code=code,
            status=status,
            permanent=not retryable,
            retry_after=retry_after(response) if retryable else None,
            outcome_unknown=creating and (code in SERVER_CODES or status >= 500),
        )
    if status >= 500:
        raise ProviderError(
            f"Mixin had a server error (HTTP {status}); try again later.",
            code=status,
            status=status,
            permanent=False,
            outcome_unknown=creating,
        )
    if status == 429:
        raise ProviderError(
            "Mixin is rate limiting (HTTP 429); try again later.",
            code=429,
            status=status,
            permanent=False,
            retry_after=retry_after(response),
        )
    if payload is None:
        # Retrying cannot duplicate (the conversation id is ours), but look it up first all the same.
        raise ProviderError(
            f"Mixin answered HTTP {status} with a body that is not JSON.",
            code="malformed",
            status=status,
            permanent=False,
            outcome_unknown=malformed_unknown,
        )
    if not 200 <= status < 300:
        raise ProviderError(
            f"Mixin answered HTTP {status} without an error description.",
            code=status,
            status=status,
            outcome_unknown=malformed_unknown,
        )
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise ProviderError(
            f"Mixin answered HTTP {status} without a data object.",
            code="malformed",
            status=status,
            permanent=False,
            outcome_unknown=creating,
        )
