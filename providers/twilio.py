"""Twilio Conversations: create a conversation and its participants in one call.

``POST {base}/v1/ConversationWithParticipants`` (or ``/v1/Services/{IS…}/…`` for a Conversation
Service), form-encoded, one repeated ``Participant`` field per participant holding a compact JSON
object (snake_case keys, nested ``messaging_binding``). HTTP Basic with the Account SID + Auth Token or
an API key SID + secret. Participants are added asynchronously (202): the conversation is read back
and a ``closed`` one means they failed.

Where older write-ups of this call and the real API differ, this module follows Twilio's Conversations API
reference: API keys work as well
as the Auth Token; participant JSON uses snake_case keys with a nested ``messaging_binding``, one
repeated form field each; ``closed`` is refused at creation; timers need ``State``; 201 (no
participants) and 202 (participants being added) are both success. ``X-Twilio-Webhook-Enabled`` ("true" or
"false") is an HTTP header of the call, not a form field: a body may carry it under that name and
:func:`build_request` sends it as the header.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

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
    error_text,
    flatten,
    reply_leaves_outcome_unknown,
    request_method,
    require_fields,
    too_deep,
    unflatten,
    unique_errors,
    value_errors,
)
from providers.http import Http, json_body, retry_after

logger = logging.getLogger("providers.twilio")

NAME = "twilio"
LABEL = "Twilio Conversations"
DEFAULT_BASE_URL = "https://conversations.twilio.com"
PARTICIPANTS_PATH = "Participant"
MAX_PARTICIPANTS = 10
#: Hooks the Django layer asks (see providers.base.Provider).
NATURAL_KEY = "UniqueName"
BULK_LIMIT = (10, 1.0)  # conversation creates: 30 a second per Service documented; a cautious 10
BULK_CONCURRENCY = 4  # the account's REST concurrency cap is not published (20429 past it)
KEY_IS_UNIQUE = True  # a second create with the same UniqueName is refused (error 50353)
DUPLICATE_CODES = ("50353",)
KEY_PREFIX = "convadmin-"  # UniqueName filled by prepare(key=…) when the body has none
NOT_DUPLICATED = ("UniqueName",)
PARTICIPANT_IDENTITY = ("sid", "identity", "messaging_binding.address")
PAGE_SIZE = 50
MAX_PAGES = 40  # far above any participant limit; stops a next_page_url that never ends

#: Regions that offer Conversations (AU1 has none; IE1 has the chat channel only).
REGIONS = ("us1", "ie1")
EDGES = ("ashburn", "dublin", "frankfurt", "roaming", "sao-paulo", "singapore", "sydney", "tokyo", "umatilla")
#: Where the Auth Token may be sent: the default host and every conversations.{edge}.{region}.twilio.com.
URL_HOSTS = {
    "base_url": (
        "conversations.twilio.com",
        *(f"conversations.{edge}.{region}.twilio.com" for region in REGIONS for edge in EDGES),
    )
}
# The API also knows "closed", but Twilio refuses it at creation (error 50384), so it is not offered.
STATES = ("initializing", "inactive", "active")

SCALAR_KEYS = (
    "FriendlyName",
    "UniqueName",
    "DateCreated",
    "DateUpdated",
    "MessagingServiceSid",
    "Attributes",
    "State",
    "Timers.Inactive",
    "Timers.Closed",
    "Bindings.Email.Address",
    "Bindings.Email.Name",
)
#: Not a form field: sent as the request header of that name (Twilio's reference lists it with the parameters).
WEBHOOK_HEADER = "X-Twilio-Webhook-Enabled"
BODY_KEYS = (*SCALAR_KEYS, PARTICIPANTS_PATH, WEBHOOK_HEADER)
PARTICIPANT_KEYS = ("identity", "messaging_binding", "attributes", "role_sid")
BINDING_KEYS = ("address", "proxy_address", "projected_address")
#: A participant row's form names (``role_sid`` has no input but survives "duplicate as new").
ROW_FIELDS = ("identity", *(f"messaging_binding.{k}" for k in BINDING_KEYS), "attributes", "role_sid")

MAX_NAME = 256
MAX_ATTRIBUTES = 16 * 1024
MAX_PARTICIPANT_ATTRIBUTES = 4 * 1024
MIN_BOUND_GROUP_MMS = 3
TIMER_MINIMUM = {"Timers.Inactive": (60, "PT1M", "1 minute"), "Timers.Closed": (600, "PT10M", "10 minutes")}

E164 = re.compile(r"\+[1-9]\d{1,14}")
TOLL_FREE = re.compile(r"\+1(800|833|844|855|866|877|888)\d{7}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DURATION = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?"
)
CONVERSATION_SID = re.compile(r"CH[0-9a-fA-F]{32}")

SMS_EXAMPLE = '{"address": "+15558675310", "proxy_address": "+15017122661"}'
PARTICIPANT_EXAMPLE = f'{{"identity": "alice"}} or {{"messaging_binding": {SMS_EXAMPLE}}}'

CREDENTIAL_FIELDS = [
    Field(
        "account_sid",
        "Account SID",
        help="Starts with AC; shown on the Twilio Console home page.",
        placeholder="AC…",
    ),
    Field(
        "auth_token",
        "Auth Token",
        secret=True,
        required=False,
        widget="password",
        help="The account's Auth Token. Leave empty when you use an API key instead.",
    ),
    Field(
        "api_key_sid",
        "API key SID",
        required=False,
        help="Starts with SK; give it with its secret instead of the Auth Token.",
        placeholder="SK…",
    ),
    Field(
        "api_key_secret",
        "API key secret",
        secret=True,
        required=False,
        widget="password",
        help="Shown once, when the API key was created.",
    ),
    Field(
        "service_sid",
        "Conversation Service SID",
        required=False,
        help="Starts with IS; leave empty to use the account's default Conversation Service.",
        placeholder="IS…",
    ),
    Field(
        "region",
        "Region",
        required=False,
        widget="select",
        choices=(("", "US1 (default)"), ("us1", "US1"), ("ie1", "IE1 (Ireland, chat only)")),
        help="Where the account's data lives; keys and tokens work in their own region only.",
    ),
    Field(
        "edge",
        "Edge location",
        required=False,
        widget="select",
        choices=(("", "None"), *((edge, edge) for edge in EDGES)),
        help="Required with region IE1 (use dublin).",
    ),
]

BODY_FIELDS = [
    Field("FriendlyName", "Friendly name", required=False, help="Up to 256 characters."),
    Field(
        "UniqueName",
        "Unique name",
        required=False,
        help="Your own key for the conversation, unique in the service. Left empty, one is made from the create key "
        "(convadmin-…; the preview shows it), so a create with no answer can always be looked up.",
    ),
    Field(
        "MessagingServiceSid",
        "Messaging Service SID",
        required=False,
        help="MG…; needed for SMS and WhatsApp participants unless the account has a default one.",
        placeholder="MG…",
    ),
    Field(
        "State",
        "State",
        required=False,
        widget="select",
        choices=(("", "Default (active)"), *((s, s) for s in STATES)),
        help="Required when a timer is set.",
    ),
    Field(
        "Timers.Inactive",
        "Inactive after",
        required=False,
        help="ISO 8601 duration, at least PT1M, e.g. PT1H.",
        placeholder="PT1H",
    ),
    Field(
        "Timers.Closed",
        "Closed after",
        required=False,
        help="ISO 8601 duration, at least PT10M, e.g. P1D.",
        placeholder="P1D",
    ),
    Field(
        "Attributes",
        "Attributes",
        required=False,
        widget="textarea",
        help="JSON, up to 16 KB.",
        placeholder='{"order": 123}',
    ),
]

PARTICIPANT_FIELDS = [
    Field(
        "identity", "Chat identity", required=False, help="A Conversations SDK user, up to 256 characters."
    ),
    Field(
        "messaging_binding.address",
        "Address",
        required=False,
        help="The participant's phone number (+15558675310) or whatsapp:+15558675310.",
    ),
    Field(
        "messaging_binding.proxy_address",
        "Proxy address",
        required=False,
        help="Your Twilio number or WhatsApp sender, same channel as the address.",
    ),
    Field(
        "messaging_binding.projected_address",
        "Projected address",
        required=False,
        help="Group MMS only: your +1 Twilio number that texters see for a chat user.",
    ),
    Field("attributes", "Attributes", required=False, help="JSON, up to 4 KB."),
]

#: The form's label of each body field, for messages (the command line still keys them by parameter).
LABELS = {spec.name: spec.label for spec in BODY_FIELDS}

# --- credential ------------------------------------------------------------------------------------


def _sid_error(value: str, prefix: str, label: str) -> str | None:
    if re.fullmatch(rf"{prefix}[0-9a-fA-F]{{32}}", value):
        return None
    hint = ""
    if value[:2].upper() == "SK" and prefix == "AC":
        hint = " SK… is an API key SID: put it in api_key_sid."
    elif value[:2].upper() == "AC" and prefix == "SK":
        hint = " AC… is the Account SID: put it in account_sid."
    return f"{label} must be {prefix} followed by 32 hexadecimal characters.{hint}"


def parse_credential(data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential:
    """``{account_sid, auth_token}`` or ``{account_sid, api_key_sid, api_key_secret}``.

    Optional settings: ``service_sid`` (IS…), ``region`` + ``edge``, or ``base_url`` (which replaces
    ``https://conversations.twilio.com`` for every call).
    """
    if not isinstance(data, Mapping):
        raise InvalidCredential(
            [
                FieldError(
                    "account_sid",
                    'The credential must be a JSON object such as {"account_sid": "AC…", "auth_token": "…"}.',
                )
            ]
        )
    errors: list[FieldError] = []
    credential: Credential | None
    try:
        credential = require_fields(data, CREDENTIAL_FIELDS, NAME, URL_HOSTS, extra_hosts)
    except InvalidCredential as exc:
        errors, credential = list(exc.errors), None
    failed = {e.path for e in errors}
    given = {
        f.name: data[f.name].strip()
        for f in CREDENTIAL_FIELDS
        if f.name not in failed and isinstance(data.get(f.name), str) and data[f.name].strip()
    }

    def add(path: str, message: str | None) -> None:
        if message:
            errors.append(FieldError(path, message))

    if "account_sid" in given:
        add("account_sid", _sid_error(given["account_sid"], "AC", "The Account SID"))
    token, key_sid, key_secret = (given.get(k) for k in ("auth_token", "api_key_sid", "api_key_secret"))
    if token and (key_sid or key_secret):
        add(
            "auth_token", "Give either the Auth Token or an API key (api_key_sid + api_key_secret), not both."
        )
    elif not (token or key_sid or key_secret) and not failed & {
        "auth_token",
        "api_key_sid",
        "api_key_secret",
    }:
        add("auth_token", "Give the Auth Token, or an API key: api_key_sid and api_key_secret.")
    elif key_sid and not key_secret:
        add("api_key_secret", "The API key secret is required with an API key SID.")
    elif key_secret and not key_sid:
        add("api_key_sid", "The API key SID (SK…) is required with an API key secret.")
    if key_sid:
        add("api_key_sid", _sid_error(key_sid, "SK", "The API key SID"))
    if "service_sid" in given:
        add("service_sid", _sid_error(given["service_sid"], "IS", "The Conversation Service SID"))

    region, edge = given.get("region", "").lower(), given.get("edge", "").lower()
    if region == "au1":
        add("region", "Twilio's AU1 region has no Conversations; use us1 or ie1.")
    elif region and region not in REGIONS:
        add("region", f"Unknown region {region!r}; Conversations is offered in {' and '.join(REGIONS)}.")
    if edge and edge not in EDGES:
        add("edge", f"Unknown edge {edge!r}; use one of {', '.join(EDGES)}.")
    elif region and region != "us1" and not edge:
        add(
            "edge",
            f"Region {region} needs an edge location, e.g. dublin (conversations.dublin.{region}.twilio.com).",
        )
    if "base_url" not in failed and data.get("base_url") and (region or edge):
        add("base_url", "base_url replaces the Twilio host: leave region and edge empty, or drop base_url.")

    if errors or credential is None:
        raise InvalidCredential(errors)
    for key, value in (("region", region), ("edge", edge)):
        if value:
            credential.settings[key] = value
    return credential


def _user_and_secret(credential: Credential) -> tuple[str, str]:
    if credential.secrets.get("api_key_secret"):
        return credential.settings.get("api_key_sid", ""), credential.secrets["api_key_secret"]
    return credential.settings.get("account_sid", ""), credential.secrets.get("auth_token", "")


def _authorize(credential: Credential, http: Http) -> None:
    """Make ``http`` mask the secret and its ``user:secret`` pair, whose base64 is the Basic value."""
    user, secret = _user_and_secret(credential)
    http.add_secret(secret, f"{user}:{secret}")


def _headers(credential: Credential) -> dict[str, str]:
    user, secret = _user_and_secret(credential)
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {basic}", "Accept": "application/json"}


def _base(credential: Credential) -> str:
    settings = credential.settings
    if settings.get("base_url"):
        return base_url(credential, DEFAULT_BASE_URL)
    region, edge = settings.get("region") or "", settings.get("edge") or ""
    if edge:
        return f"https://conversations.{edge}.{region or 'us1'}.twilio.com"
    if region and region != "us1":
        return f"https://conversations.{region}.twilio.com"
    return DEFAULT_BASE_URL


def _scope(credential: Credential) -> str:
    service = credential.settings.get("service_sid")
    return f"{_base(credential)}/v1/Services/{service}" if service else f"{_base(credential)}/v1"


def _conversation_url(id_or_name: str, credential: Credential) -> str:
    return f"{_scope(credential)}/Conversations/{quote(id_or_name, safe='')}"


def _get(url: str, credential: Credential) -> httpx.Request:
    return httpx.Request("GET", url, headers=_headers(credential))


# --- validation ------------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_text(value: Any) -> str:
    """Attributes as sent: a JSON string kept as given, an object serialised compactly."""
    return value if isinstance(value, str) else _compact(value)


def _not_json(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number")
    return number


def _json_error(value: Any, limit: int, label: str) -> str | None:
    """Why ``value`` is not strict JSON within ``limit`` bytes: no NaN, Infinity or overflowing numbers."""
    if isinstance(value, str):
        try:
            json.loads(value, parse_constant=_not_json, parse_float=_finite)
        except RecursionError:
            return f"{label} is nested too deeply."
        except ValueError:
            return (
                f'{label} must be valid JSON, e.g. {{"order": 123}} (NaN, Infinity and numbers too large '
                "for JSON are not allowed)."
            )
        text = value
    elif isinstance(value, dict | list):
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return f"{label} must be JSON (text, numbers, true/false/null, lists and objects; no NaN)."
    else:
        return f'{label} must be JSON text or a JSON object, e.g. {{"order": 123}}.'
    size = len(text.encode())
    if size > limit:
        return f"{label} is {size} bytes long; Twilio allows at most {limit} bytes ({limit // 1024} KB)."
    return None


def _duration_seconds(value: str) -> float | None:
    match = DURATION.fullmatch(value)
    if not match or value in ("P", "PT") or value.endswith("T"):
        return None
    years, months, weeks, days, hours, minutes, seconds = match.groups()
    total = float((seconds or "0").replace(",", "."))
    for part, size in (
        (years, 365 * 86400),
        (months, 30 * 86400),
        (weeks, 7 * 86400),
        (days, 86400),
        (hours, 3600),
        (minutes, 60),
    ):
        total += int(part or 0) * size
    return total


def _datetime_error(value: str, label: str) -> str | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value.upper() or parsed.tzinfo is None:
        return f"{label} must be an ISO 8601 date and time with its time zone, e.g. 2015-12-16T22:18:37Z."
    return None


def _is_address(value: str) -> bool:
    return E164.fullmatch(value.removeprefix("whatsapp:")) is not None


def _channel(address: str) -> str:
    return "whatsapp" if address.startswith("whatsapp:") else "sms"


def _binding(row: Any) -> dict[str, str]:
    """The usable (string, non-empty) values of a participant's ``messaging_binding``."""
    binding = row.get("messaging_binding") if isinstance(row, Mapping) else None
    if not isinstance(binding, Mapping):
        return {}
    return {k: binding[k] for k in BINDING_KEYS if isinstance(binding.get(k), str) and binding[k]}


def _identity(row: Any) -> str:
    identity = row.get("identity") if isinstance(row, Mapping) else None
    return identity if isinstance(identity, str) else ""


def _suggest(key: str, known: tuple[str, ...]) -> str:
    def squash(text: str) -> str:
        return re.sub(r"[^a-z]", "", text.lower()).removesuffix("s")

    matches = [k for k in known if squash(k) == squash(key)]
    return f" Did you mean {matches[0]}?" if matches else ""


def validate_participant(row: Mapping[str, Any], index: int = 0) -> list[FieldError]:
    """The rules of one participant object, with paths ``Participant.{index}.…``."""
    path = f"{PARTICIPANTS_PATH}.{index}"
    if isinstance(row, str):
        return [
            FieldError(path, f"Give the participant as a JSON object, not a string: {PARTICIPANT_EXAMPLE}.")
        ]
    if not isinstance(row, Mapping):
        return [FieldError(path, f"Each participant must be an object such as {PARTICIPANT_EXAMPLE}.")]
    errors = value_errors(row, path)
    if too_deep(errors):
        return errors

    def add(field: str, message: str | None) -> None:
        if message:
            errors.append(FieldError(f"{path}.{field}", message))

    for key in row:
        if key not in PARTICIPANT_KEYS:
            hint = _suggest(str(key), PARTICIPANT_KEYS)
            if not hint and "." in str(key):
                hint = ' Write the binding as a nested object: {"messaging_binding": {"address": "…"}}.'
            add(key, f"Unknown participant field {key!r}; use {', '.join(PARTICIPANT_KEYS)}.{hint}")
    identity = row.get("identity")
    if _present(identity) and not isinstance(identity, str):
        add("identity", "The identity must be text.")
    elif _present(identity) and len(identity) > MAX_NAME:
        add("identity", f"The identity is {len(identity)} characters; at most 256 are allowed.")
    binding = row.get("messaging_binding")
    if _present(binding) and not isinstance(binding, Mapping):
        add("messaging_binding", f"messaging_binding must be an object, e.g. {SMS_EXAMPLE}.")
    elif _present(binding):
        for key, value in binding.items():
            if key not in BINDING_KEYS:
                hint = _suggest(str(key), BINDING_KEYS)
                add(
                    f"messaging_binding.{key}",
                    f"Unknown messaging_binding field {key!r}; use {', '.join(BINDING_KEYS)}.{hint}",
                )
            elif _present(value) and not isinstance(value, str):
                add(f"messaging_binding.{key}", f"{key} must be text.")

    bound = _binding(row)
    address, proxy, projected = (bound.get(k, "") for k in BINDING_KEYS)
    has_identity = isinstance(identity, str) and identity != ""
    if not has_identity and not bound and not errors:
        add(
            "identity",
            "Give a chat identity (a chat user) or an address (an SMS or WhatsApp contact).",
        )
    for key, value in (("address", address), ("proxy_address", proxy)):
        if value and not _is_address(value):
            add(
                f"messaging_binding.{key}",
                f"{value!r} is not a phone number in E.164 form (+, country code and number, e.g. +15558675310) "
                "nor a WhatsApp address (whatsapp:+15558675310).",
            )
    if projected and not E164.fullmatch(projected):
        add(
            "messaging_binding.projected_address",
            f"Projected address {projected!r} is not a phone number in E.164 form; give your +1 Twilio number, "
            "e.g. +15017122661.",
        )
    if proxy and not address:
        add(
            "messaging_binding.address",
            "A proxy address needs an address: the participant's own phone number or WhatsApp address.",
        )
    if address and projected:
        add(
            "messaging_binding.projected_address",
            "Give either an address (with its proxy address) or a projected address, not both: "
            "a projected address is for chat users in a Group MMS.",
        )
    if has_identity and address:
        add(
            "identity",
            "A participant is either a chat user (chat identity) or an SMS/WhatsApp contact (address), not both; "
            "add them as two participants.",
        )
    if _is_address(address) and _is_address(proxy) and address == proxy:
        add(
            "messaging_binding.proxy_address",
            "The proxy address must be your Twilio number, not the participant's own address (Twilio error 50409).",
        )
    elif _is_address(address) and _is_address(proxy) and _channel(address) != _channel(proxy):
        add(
            "messaging_binding.proxy_address",
            "The address and proxy address must use the same channel: both whatsapp:+… or both plain phone "
            "numbers (Twilio error 50414).",
        )
    if _channel(address) == "whatsapp" and not proxy:
        add(
            "messaging_binding.proxy_address",
            "A WhatsApp address needs a proxy address: your WhatsApp sender, e.g. whatsapp:+15017122661.",
        )
    if _present(row.get("attributes")):
        add(
            "attributes",
            _json_error(row["attributes"], MAX_PARTICIPANT_ATTRIBUTES, "The participant's attributes"),
        )
    role = row.get("role_sid")
    if _present(role):
        add(
            "role_sid",
            _sid_error(role, "RL", "The role SID") if isinstance(role, str) else "The role SID must be text.",
        )
    return errors


def _is_group_mms(rows: list[Any]) -> bool:
    """A projected address, or a phone number without a proxy, makes the conversation a Group MMS."""
    for row in rows:
        bound = _binding(row)
        if bound.get("projected_address"):
            return True
        address = bound.get("address", "")
        if address and not address.startswith("whatsapp:") and not bound.get("proxy_address"):
            return True
    return False


def _group_mms_errors(rows: list[Any]) -> list[FieldError]:
    errors: list[FieldError] = []

    def add(index: int, field: str, message: str) -> None:
        errors.append(FieldError(f"{PARTICIPANTS_PATH}.{index}.messaging_binding.{field}", message))

    bound_count = sum(1 for row in rows if _binding(row).keys() & {"address", "projected_address"})
    if bound_count < MIN_BOUND_GROUP_MMS:
        errors.append(
            FieldError(
                PARTICIPANTS_PATH,
                "A participant with a projected address, or a phone number without a proxy address, makes this "
                f"a Group MMS, which needs at least {MIN_BOUND_GROUP_MMS} participants with a phone number or "
                f"projected address (this request has {bound_count}). For one-to-one SMS, give each address "
                "a proxy address (your Twilio number).",
            )
        )
    for index, row in enumerate(rows):
        bound = _binding(row)
        for key in ("address", "projected_address"):
            value = bound.get(key, "")
            if not E164.fullmatch(value):
                continue  # empty, or already reported by validate_participant
            if not value.startswith("+1"):
                add(index, key, f"Group MMS works only with US and Canada (+1) numbers; {value} is not one.")
            elif TOLL_FREE.fullmatch(value):
                add(index, key, f"Group MMS needs +1 long codes; {value} is a toll-free number.")
        if _identity(row) and not bound:
            add(
                index,
                "projected_address",
                "In a Group MMS a chat user needs a projected address: your +1 Twilio number that the texters "
                "see (Twilio error 50434).",
            )
    return errors


def _scalar_errors(values: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []

    def add(path: str, message: str | None) -> None:
        if message:
            errors.append(FieldError(path, message))

    name = values.get("FriendlyName")
    if name and len(name) > MAX_NAME:
        add("FriendlyName", f"The friendly name is {len(name)} characters; at most 256 are allowed.")
    unique = values.get("UniqueName")
    if unique:
        if CONVERSATION_SID.fullmatch(unique):
            add(
                "UniqueName",
                "The unique name must not look like a conversation SID (CH + 32 hex; Twilio error 50390).",
            )
        elif len(unique) > MAX_NAME:  # Twilio states no limit; 256 as for the friendly name (unverified)
            add("UniqueName", f"The unique name is {len(unique)} characters; at most 256 are allowed.")
    for key in ("DateCreated", "DateUpdated"):
        if values.get(key):
            add(key, _datetime_error(values[key], key))
    if values.get("MessagingServiceSid"):
        add(
            "MessagingServiceSid",
            _sid_error(values["MessagingServiceSid"], "MG", "The Messaging Service SID"),
        )
    if "Attributes" in values:
        add("Attributes", _json_error(values["Attributes"], MAX_ATTRIBUTES, "Attributes"))
    state = values.get("State")
    if state:
        if state.lower() == "closed":
            add(
                "State",
                "A conversation cannot be created closed (Twilio error 50384); choose initializing, inactive or active.",
            )
        elif state.lower() not in STATES:
            add("State", f"Unknown state {state!r}; choose initializing, inactive or active.")
    for key, (minimum, example, words) in TIMER_MINIMUM.items():
        label = LABELS[key]
        if not values.get(key):
            continue
        seconds = _duration_seconds(values[key])
        if seconds is None:
            add(key, f"{label} must be an ISO 8601 duration such as PT1H (1 hour) or P1D (1 day).")
        elif seconds < minimum:
            add(key, f"{label} must be at least {words} ({example}).")
    if (values.get("Timers.Inactive") or values.get("Timers.Closed")) and not state:
        add(
            "State",
            "Choose a State when a timer is set (Twilio error 50382); active starts the timers now.",
        )
    email = values.get("Bindings.Email.Address")
    if email and not EMAIL.fullmatch(email):
        add("Bindings.Email.Address", f"{email!r} is not an e-mail address.")
    return errors


def validate(body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]:
    """Every documented rule of a create body, keyed by Twilio's parameter names and participant paths."""
    if not isinstance(body, Mapping):
        example = '{"FriendlyName": "Order 123", "Participant": [{"identity": "alice"}]}'
        return [FieldError("body", f"The body must be a JSON object of Twilio parameters, e.g. {example}.")]
    errors = value_errors(body)
    if too_deep(errors):
        return errors

    def add(path: str, message: str) -> None:
        errors.append(FieldError(path, message))

    for key in body:
        if key not in BODY_KEYS:
            add(
                str(key),
                f"Twilio has no parameter {key!r}; use {', '.join(BODY_KEYS)}.{_suggest(str(key), BODY_KEYS)}",
            )
    values: dict[str, Any] = {}
    for key in SCALAR_KEYS:
        value = body.get(key)
        if isinstance(value, str) or (key == "Attributes" and isinstance(value, dict | list)):
            values[key] = value
        elif _present(value):
            add(
                key,
                'Attributes must be JSON text or an object, e.g. {"order": 123}.'
                if key == "Attributes"
                else f"{key} must be text.",
            )
    errors += _scalar_errors({k: v for k, v in values.items() if _present(v)})
    webhook = body.get(WEBHOOK_HEADER)
    if _present(webhook) and _webhook_value(webhook) is None:
        add(
            WEBHOOK_HEADER, f"{WEBHOOK_HEADER} must be true or false (whether this call fires your webhooks)."
        )

    rows = body.get(PARTICIPANTS_PATH)
    if rows is not None and not isinstance(rows, list):
        add(
            PARTICIPANTS_PATH,
            f"Participant must be a list of participant objects such as {PARTICIPANT_EXAMPLE}.",
        )
    rows = rows if isinstance(rows, list) else []
    if len(rows) > MAX_PARTICIPANTS:
        add(
            PARTICIPANTS_PATH,
            f"Twilio takes at most {MAX_PARTICIPANTS} participants per request; this one has {len(rows)}. "
            "Add the others once the conversation exists.",
        )
    identities: set[str] = set()
    addresses: set[str] = set()
    for index, row in enumerate(rows):
        errors += validate_participant(row, index)
        identity, address = _identity(row), _binding(row).get("address", "")
        if identity and identity in identities:
            add(
                f"{PARTICIPANTS_PATH}.{index}.identity",
                "This identity is already given for another participant of this request (Twilio error 50433).",
            )
        if address and address in addresses:
            add(
                f"{PARTICIPANTS_PATH}.{index}.messaging_binding.address",
                "This address is already given for another participant of this request.",
            )
        identities.add(identity)
        addresses.add(address)
    if _is_group_mms(rows):
        errors += _group_mms_errors(rows)

    if credential is not None and credential.settings.get("region") == "ie1":
        if values.get("MessagingServiceSid"):
            add("MessagingServiceSid", "Twilio's IE1 region has no Messaging Services; leave this empty.")
        for index, row in enumerate(rows):
            for key in list(_binding(row))[:1]:
                add(
                    f"{PARTICIPANTS_PATH}.{index}.messaging_binding.{key}",
                    "Twilio's IE1 region has chat participants only (no SMS, WhatsApp or Group MMS); use an "
                    "identity, or a US1 credential.",
                )
    return unique_errors(errors)


# --- body helpers ----------------------------------------------------------------------------------


def _webhook_value(value: Any) -> str | None:
    """``"true"`` or ``"false"`` for a JSON boolean or that text (any case); None for anything else."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    return None


def _wire_participant(row: Mapping[str, Any]) -> dict[str, Any]:
    """A participant in the order and form sent: identity, messaging_binding, attributes (string), role_sid."""
    out: dict[str, Any] = {}
    if _present(row.get("identity")):
        out["identity"] = row["identity"]
    binding = row.get("messaging_binding")
    if isinstance(binding, Mapping):
        nested = {k: binding[k] for k in BINDING_KEYS if _present(binding.get(k))}
        if nested:
            out["messaging_binding"] = nested
    if _present(row.get("attributes")):
        out["attributes"] = _json_text(row["attributes"])
    if _present(row.get("role_sid")):
        out["role_sid"] = row["role_sid"]
    return out


def unique_name_for(key: str) -> str:
    """The ``UniqueName`` prepare gives a body without one: ``convadmin-<key>``, letters, digits, ``.-_``.

    Twilio documents no character set; this stays within the 256 characters allowed for names and never
    looks like a conversation SID (50390).
    """
    return KEY_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "-", key)[: MAX_NAME - len(KEY_PREFIX)]


def prepare(body: Mapping[str, Any], credential: Credential, key: str | None = None) -> dict[str, Any]:
    """The validated body as it will be sent: blanks dropped, State lower-cased, attributes as JSON text.

    An empty ``UniqueName`` is filled from ``key`` (:func:`unique_name_for`): a create Twilio can then be
    asked about, and that it refuses to make twice.
    """
    prepared: dict[str, Any] = {}
    for name in SCALAR_KEYS:
        value = body.get(name)
        if name == "UniqueName" and not _present(value) and key:
            value = unique_name_for(key)
        if not _present(value):
            continue
        if name == "Attributes":
            value = _json_text(value)
        elif name == "State":
            value = value.lower()
        prepared[name] = value
    rows = body.get(PARTICIPANTS_PATH)
    if rows:
        prepared[PARTICIPANTS_PATH] = [_wire_participant(row) for row in rows]
    webhook = _webhook_value(body.get(WEBHOOK_HEADER))
    if webhook:
        prepared[WEBHOOK_HEADER] = webhook
    return prepared


def summarize(body: Mapping[str, Any]) -> Summary:
    """FriendlyName (or UniqueName) and each participant's identity, address or projected address."""
    if not isinstance(body, Mapping):
        return Summary("", [])
    name = next(
        (v for v in (body.get("FriendlyName"), body.get("UniqueName")) if isinstance(v, str) and v), ""
    )
    people: list[str] = []
    rows = body.get(PARTICIPANTS_PATH)
    for row in rows if isinstance(rows, list) else []:
        bound = _binding(row)
        who = _identity(row) or bound.get("address") or bound.get("projected_address")
        if who:
            people.append(who)
    return Summary(name, people)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else _compact(value)


def body_from_fields(fields: Mapping[str, str], participants: list[Mapping[str, str]]) -> dict[str, Any]:
    """The body from the form's flat values; each participant row stays (even empty) so paths match rows."""
    body = unflatten(fields, SCALAR_KEYS, nested=False)
    rows = [unflatten(flat, ROW_FIELDS) for flat in participants]
    if rows:
        body[PARTICIPANTS_PATH] = rows
    return body


def fields_from_body(body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The inverse of :func:`body_from_fields` (attributes objects come back as JSON text)."""
    if not isinstance(body, Mapping):
        return {}, []
    fields = flatten(body, SCALAR_KEYS, text=_as_text, nested=False)
    participants = body.get(PARTICIPANTS_PATH)
    rows = [
        flatten(row, ROW_FIELDS, text=_as_text)
        for row in (participants if isinstance(participants, list) else [])
        if isinstance(row, Mapping)
    ]
    return fields, rows


# --- calls -----------------------------------------------------------------------------------------


def build_request(body: Mapping[str, Any], credential: Credential) -> httpx.Request:
    """``POST …/ConversationWithParticipants``: form fields in a fixed order, one ``Participant`` per row.

    Spaces are sent as ``%20`` and ``+`` as ``%2B`` (``quote`` with nothing safe), each participant as
    compact JSON.
    """
    pairs: list[tuple[str, str]] = []
    for key in SCALAR_KEYS:
        value = body.get(key)
        if _present(value):
            pairs.append((key, _json_text(value) if key == "Attributes" else str(value)))
    for row in body.get(PARTICIPANTS_PATH) or []:
        pairs.append((PARTICIPANTS_PATH, _compact(_wire_participant(row))))
    headers = _headers(credential) | {"Content-Type": "application/x-www-form-urlencoded"}
    webhook = _webhook_value(body.get(WEBHOOK_HEADER))
    if webhook:
        headers[WEBHOOK_HEADER] = webhook
    content = urlencode(pairs, quote_via=quote).encode()
    return httpx.Request(
        "POST", f"{_scope(credential)}/ConversationWithParticipants", headers=headers, content=content
    )


def _participants(sid: str, credential: Credential, http: Http) -> list[dict[str, Any]]:
    url = f"{_conversation_url(sid, credential)}/Participants?PageSize={PAGE_SIZE}"
    items: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        response = http.send(_get(url, credential))
        raise_for_response(response)
        data = json_body(response)
        if not isinstance(data, dict):
            raise ProviderError(
                "Twilio answered the participant list without JSON.",
                code="bad_reply",
                status=response.status_code,
            )
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        page = data.get(meta.get("key") or "participants")
        items += [p for p in page if isinstance(p, dict)] if isinstance(page, list) else []
        next_url = meta.get("next_page_url")
        if not isinstance(next_url, str) or not next_url:
            break
        # Only the path and query are taken: the credential is never sent to a host a reply names.
        parts = urlsplit(next_url)
        url = f"{_base(credential)}{parts.path}?{parts.query}"
    return items


def _read_conversation(id_or_name: str, credential: Credential, http: Http) -> httpx.Response:
    return http.send(_get(_conversation_url(id_or_name, credential), credential))


def _sid_of(response: httpx.Response, what: str) -> tuple[dict[str, Any], str]:
    data = json_body(response)
    sid = data.get("sid") if isinstance(data, dict) else None
    if not isinstance(sid, str) or not sid:
        raise ProviderError(
            f"Twilio answered HTTP {response.status_code} to the {what} without a conversation SID.",
            code="bad_reply",
            status=response.status_code,
            permanent=False,
            outcome_unknown=what == "create",
        )
    return data, sid


def create(body: Mapping[str, Any], credential: Credential, http: Http) -> Created:
    """Create the conversation; after participants were sent, read it back (they are added asynchronously).

    Once the create may have been processed nothing reports a plain failure: a reply without a SID is an
    unknown outcome, a failed read-back still returns the conversation created, and a conversation Twilio
    closed (its participants failed) is a failure that names it (``existing_id``) and is not retried
    automatically.
    """
    _authorize(credential, http)
    response = http.send(build_request(body, credential))
    raise_for_response(response)
    data, sid = _sid_of(response, "create")
    created = Created(external_id=sid, status=response.status_code, body=data, url=data.get("url") or "")
    if not body.get(PARTICIPANTS_PATH):
        return created
    try:
        conversation_response = _read_conversation(sid, credential, http)
        raise_for_response(conversation_response)
        conversation = json_body(conversation_response) or {}
        created.participants = _participants(sid, credential, http)
    except ProviderError as exc:
        # The conversation exists: a failed read-back must not turn it into a failure.
        logger.warning("Conversation %s was created but reading it back failed: %s", sid, exc)
        return created
    if isinstance(conversation, dict) and conversation.get("state") == "closed":
        unique = body.get("UniqueName")
        taken = (
            f" Its unique name {unique!r} stays taken until that conversation is deleted." if unique else ""
        )
        raise ProviderError(
            f"Twilio created conversation {sid} but could not add its participants, so it closed it "
            "(Twilio error 50427; the reason is in the Twilio Console error log). Check the participants' "
            f"addresses and proxy addresses, then try again.{taken}",
            code=50427,
            status=response.status_code,
            permanent=True,  # it exists (closed): a person decides whether to create another
            existing_id=sid,
        )
    return created


def lookup(
    body: Mapping[str, Any], credential: Credential, http: Http, *, sent_at: datetime | None = None
) -> Created | None:
    """After an unknown outcome: the conversation with the body's ``UniqueName``; None without one or if absent.

    A unique name is unique in the service, so what is found is this conversation (``sent_at`` unused).
    """
    unique = body.get("UniqueName") if isinstance(body, Mapping) else None
    if not isinstance(unique, str) or not unique:
        return None
    _authorize(credential, http)
    response = _read_conversation(unique, credential, http)
    if response.status_code == 404:
        return None
    raise_for_response(response)
    data, sid = _sid_of(response, "lookup")
    found = Created(
        external_id=sid, status=response.status_code, body=data, existed=True, url=data.get("url") or ""
    )
    try:
        found.participants = _participants(sid, credential, http)
    except ProviderError as exc:
        logger.warning("Conversation %s was found but its participants could not be read: %s", sid, exc)
    return found


def fetch(
    external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None = None
) -> Fetched:
    """The conversation (by SID or unique name) and all its participants."""
    _authorize(credential, http)
    response = _read_conversation(external_id, credential, http)
    raise_for_response(response)
    data, sid = _sid_of(response, "read")
    return Fetched(external_id=sid, conversation=data, participants=_participants(sid, credential, http))


def curl_auth(settings: Mapping[str, Any]) -> tuple[str, str]:
    """How "Copy as curl" authenticates: the API key pair when the credential has one, else the account's."""
    if settings.get("api_key_sid"):
        return (
            '-u "$TWILIO_API_KEY_SID:$TWILIO_API_KEY_SECRET"',
            "TWILIO_API_KEY_SID: the API key SID (SK…); TWILIO_API_KEY_SECRET: its secret.",
        )
    return (
        '-u "$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN"',
        "TWILIO_ACCOUNT_SID: the Account SID (AC…); TWILIO_AUTH_TOKEN: the account's Auth Token.",
    )


def check(credential: Credential, http: Http) -> str:
    """Read the account's (or the service's) Conversations configuration."""
    _authorize(credential, http)
    service = credential.settings.get("service_sid")
    response = http.send(_get(f"{_scope(credential)}/Configuration", credential))
    raise_for_response(response)
    data = json_body(response)
    if not isinstance(data, dict):
        raise ProviderError(
            "Twilio answered the configuration read without JSON.",
            code="bad_reply",
            status=response.status_code,
        )
    account = credential.settings.get("account_sid", "")
    reported = data.get("account_sid")
    if isinstance(reported, str) and reported and reported != account:
        raise ProviderError(
            f"The credential works but belongs to account {reported}, not {account}: correct the Account SID.",
            code="account_mismatch",
            status=response.status_code,
        )
    key = credential.settings.get("api_key_sid")
    via = f" with API key {key}" if credential.secrets.get("api_key_secret") else ""
    if service:
        return f"Account {account} reachable{via}; service {data.get('chat_service_sid') or service}."
    default = data.get("default_chat_service_sid") or "none"
    return f"Account {account} reachable{via}; default service {default}."


# --- errors ----------------------------------------------------------------------------------------

RETRYABLE_CODES = {20429, 50386, 50391, 50427}
HINTS = {
    20003: "Twilio did not accept the credential: check the Account SID (or API key SID) and its secret, that "
    "the key still exists, and that it belongs to this region (keys and tokens work in one region only).",
    20404: "check the SID or unique name, the Conversation Service and the region.",
    50350: "check the SID or unique name, the Conversation Service and the region.",
    20429: "too many requests at once on this Twilio account; it was not processed, so trying again shortly is safe.",
    50353: "a conversation with this unique name already exists: open it by its unique name, or choose another.",
    50373: "the conversation has no Messaging Service, so it can't take SMS or WhatsApp participants: set "
    "MessagingServiceSid, or a default Messaging Service in the Twilio Console.",
    50385: "Conversations is not available in this Twilio region.",
    50416: "this address and proxy address are already together in another open conversation: close that one "
    "or use another proxy address.",
    50425: "an address and proxy address are already together in another open conversation: close that one or "
    "use another proxy address.",
    50424: "Twilio could not read a participant: each must be one JSON object of a documented shape.",
    50433: "this identity is already a participant of the conversation.",
    50427: "Twilio could not add the participants; trying again is allowed.",
}
for _code in (50417, 50418, 50422, 50426):
    HINTS[_code] = (
        "too many participants: at most 10 per request, and Twilio limits participants per conversation."
    )


def _problem(data: dict[str, Any]) -> tuple[int | None, str, str]:
    """(code, text, more_info) of a classic Twilio error or an RFC 9457 problem body."""
    raw_code = data.get("code")
    if raw_code is None and isinstance(data.get("type"), str):
        digits = re.search(r"(\d{5})\D*$", data["type"])
        raw_code = digits.group(1) if digits else None
    try:
        code = int(raw_code) if raw_code is not None else None
    except (TypeError, ValueError):
        code = None
    parts = [data.get("message") or data.get("title"), data.get("detail")]
    for item in data.get("errors") if isinstance(data.get("errors"), list) else []:
        if isinstance(item, dict):
            pointer = item.get("pointer")
            parts.append(f"{pointer}: {item.get('detail')}" if pointer else item.get("detail"))
        else:
            parts.append(item)
    text = "; ".join(dict.fromkeys(str(p).strip() for p in parts if p and str(p).strip()))
    more_info = data.get("more_info") or (
        data.get("type") if str(data.get("type", "")).startswith("http") else ""
    )
    return code, text, more_info if isinstance(more_info, str) else ""


def raise_for_response(response: httpx.Response) -> None:
    """Nothing for a 2xx; otherwise a :class:`ProviderError` with Twilio's own message and code."""
    status = response.status_code
    if 200 <= status < 300:
        return
    method = request_method(response)
    data = json_body(response)
    code: int | None = None
    more_info = ""
    if isinstance(data, dict):
        code, text, more_info = _problem(data)
        text = error_text(text) or f"Twilio answered HTTP {status} without an error message."
    else:
        kind = response.headers.get("content-type") or "no content type"
        snippet = error_text(response.text, 200)
        text = f"Twilio answered HTTP {status} with a body that is not JSON ({kind})" + (
            f": {snippet}" if snippet else "."
        )
    hint = HINTS.get(code or 0, "")
    # A 4xx is a refusal (or a 429 before processing); on a create, anything else may have created it.
    unknown = method == "POST" and reply_leaves_outcome_unknown(status)
    if status >= 500:
        hint = (
            f"Twilio had a problem on its side (HTTP {status}); the conversation may or may not have been "
            "created: check before trying again."
            if unknown
            else f"Twilio had a problem on its side (HTTP {status}); try again later."
        )
    message = " — ".join(p for p in (text, hint) if p)
    if more_info:
        message += f" ({more_info})"
    existing = CONVERSATION_SID.search(text) if code in (50416, 50425) else None
    raise ProviderError(
        message,
        code=code if code is not None else f"http_{status}",
        status=status,
        permanent=not (code in RETRYABLE_CODES or status == 429 or status >= 500),
        outcome_unknown=unknown,
        retry_after=retry_after(response),
        existing_id=existing.group(0) if existing else None,
    )
