"""HighLevel (LeadConnector): create a conversation for a contact of a sub-account (location).

``POST {base}/conversations/`` with ``{"locationId", "contactId"}``, a Bearer token (a private
integration token or an OAuth access token) and ``Version: 2021-04-15``. One conversation per contact:
a second create is refused with a 400 "already exists!" that carries no id, so the existing one is
found by searching. OAuth credentials are refreshed once on a 401, storing the rotated refresh token.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

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
    bearer_curl_auth,
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

NAME = "highlevel"
LABEL = "HighLevel"
DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
URL_HOSTS = {"base_url": ("services.leadconnectorhq.com",)}
#: Hooks the Django layer asks (see providers.base.Provider).
NATURAL_KEY = "contactId"
BULK_LIMIT = (100, 10.0)  # the documented burst limit: 100 requests per 10 s per location
BULK_CONCURRENCY = 4  # only the request rate is documented
KEY_IS_UNIQUE = True  # one conversation per contact: a second create is refused ("already exists!")
SETTING_DEFAULTS = {"locationId": "location_id"}
PARTICIPANT_IDENTITY = ("contactId",)
UNTITLED = "Contact {participant}"  # no conversation name: a record is called by its contact
curl_auth = bearer_curl_auth(
    "HIGHLEVEL_TOKEN", "the location's private integration token (pit-…) or an OAuth access token."
)
#: ``Version`` is per product: conversations take 2021-04-15; contacts and OAuth 2021-07-28.
CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"
OAUTH_VERSION = "2021-07-28"

#: Real ids are 20 letters and digits; the documented examples vary, so accept a loose range.
ID_PATTERN = re.compile(r"[A-Za-z0-9]{16,32}")
BODY_KEYS = ("locationId", "contactId")
OAUTH_KEYS = ("refresh_token", "client_id", "client_secret")
#: When the OAuth access token a refresh stored expires (ISO 8601, UTC; from the reply's ``expires_in``): shown
#: by the dashboard's credential health. A typed token's expiry is not known.
CACHED_SECRETS = ("token_expires_at",)
TOKEN_EXPIRES_AT = "token_expires_at"

#: Pauses between searches for an existing conversation: search lags behind creates for a moment.
SEARCH_RETRY_DELAYS = (1.0, 2.0)
sleep: Callable[[float], None] = time.sleep  # patched by tests

CREDENTIAL_FIELDS = [
    Field(
        "token",
        "Token",
        secret=True,
        widget="password",
        help="A sub-account private integration token (pit-…) or an OAuth access token; "
        "scopes conversations.write and conversations.readonly.",
    ),
    Field("location_id", "Location ID", help="The sub-account (location) id, e.g. tDtDnQdgm2LXpyiqYvZ6."),
    Field(
        "refresh_token",
        "OAuth refresh token",
        secret=True,
        required=False,
        widget="password",
        help="OAuth only, with client id and secret: lets the access token be refreshed.",
    ),
    Field(
        "client_id", "OAuth client ID", required=False, help="OAuth only: the Marketplace app's client id."
    ),
    Field(
        "client_secret",
        "OAuth client secret",
        secret=True,
        required=False,
        widget="password",
        help="OAuth only: the Marketplace app's client secret.",
    ),
]

BODY_FIELDS = [
    Field("contactId", "Contact ID", help="The contact the conversation is with, e.g. rTDJGD7SjqDamyzrk5UW."),
    Field("locationId", "Location ID", required=False, help="defaults to the credential's location"),
]
PARTICIPANT_FIELDS: list[Field] = []
PARTICIPANTS_PATH: str | None = None  # the contact is the one participant
MAX_PARTICIPANTS = 1

ID_HELP = "must be 16 to 32 letters and digits, like rTDJGD7SjqDamyzrk5UW"


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def parse_credential(data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential:
    """``{token, location_id}`` plus optional ``refresh_token, client_id, client_secret`` and ``base_url``."""
    if not isinstance(data, Mapping):
        raise InvalidCredential([FieldError("credential", "The credential must be a JSON object.")])
    errors: list[FieldError] = []
    try:
        credential = require_fields(data, CREDENTIAL_FIELDS, NAME, URL_HOSTS, extra_hosts)
    except InvalidCredential as exc:
        errors, credential = exc.errors, None
    failed = {e.path for e in errors}
    token = data.get("token")
    if "token" not in failed and isinstance(token, str) and re.search(r"\s", token.strip()):
        errors.append(
            FieldError("token", "Paste the token alone, without spaces, line breaks or a 'Bearer ' prefix.")
        )
    location = data.get("location_id")
    if "location_id" not in failed and isinstance(location, str) and not _is_id(location.strip()):
        errors.append(FieldError("location_id", f"Location ID {ID_HELP}."))
    given = [k for k in OAUTH_KEYS if isinstance(data.get(k), str) and data[k].strip()]
    if given and len(given) < len(OAUTH_KEYS):
        for key in OAUTH_KEYS:
            if key not in given and key not in failed:
                errors.append(
                    FieldError(
                        key, "OAuth refresh needs refresh_token, client_id and client_secret together."
                    )
                )
    if errors or credential is None:
        raise InvalidCredential(errors)
    return credential


def validate_participant(row: Mapping[str, Any], index: int = 0) -> list[FieldError]:
    """The one participant is the contact: ``row["contactId"]`` (``index`` is unused: no list)."""
    if not isinstance(row, Mapping):
        return [FieldError("contactId", "Contact ID is required.")]
    screened = value_errors(row)
    if too_deep(screened) or screened:
        return screened
    value = row.get("contactId")
    if value in (None, ""):
        return [FieldError("contactId", "Contact ID is required.")]
    if not isinstance(value, str):
        return [FieldError("contactId", "Contact ID must be text.")]
    if not _is_id(value):
        return [FieldError("contactId", f"Contact ID {ID_HELP}.")]
    return []


def validate(body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]:
    """Every rule of the create body: both ids well-formed, the credential's location, nothing else."""
    if not isinstance(body, Mapping):
        return [
            FieldError("body", "The body must be a JSON object with contactId (and optionally locationId).")
        ]
    screened = value_errors(body)
    if too_deep(screened):
        return screened
    return unique_errors(screened + _rules(body, credential))


def _rules(body: Mapping[str, Any], credential: Credential | None) -> list[FieldError]:
    errors = [
        FieldError(str(key), f"Unknown field {key!r}: HighLevel takes only locationId and contactId.")
        for key in body
        if key not in BODY_KEYS
    ]
    errors += validate_participant(body)
    location = body.get("locationId")
    if location is None:
        return errors  # prepare() fills in the credential's location
    if not isinstance(location, str):
        errors.append(FieldError("locationId", "Location ID must be text."))
    elif location == "":
        errors.append(
            FieldError("locationId", "Leave Location ID out to use the credential's, or fill it in.")
        )
    elif not _is_id(location):
        errors.append(FieldError("locationId", f"Location ID {ID_HELP}."))
    elif credential is not None and location != credential.settings.get("location_id"):
        errors.append(
            FieldError(
                "locationId",
                f"Location ID must be the credential's location ({credential.settings.get('location_id')}): "
                "HighLevel answers 403 'The token does not have access to this location.' otherwise.",
            )
        )
    return errors


def prepare(body: Mapping[str, Any], credential: Credential, key: str | None = None) -> dict[str, Any]:
    """The body as sent: ``locationId`` from the credential when missing; key order as documented.

    ``key`` is not needed: the contact is the key HighLevel can be asked about (one conversation each).
    """
    return {
        "locationId": body.get("locationId") or credential.settings["location_id"],
        "contactId": body.get("contactId"),
    }


def summarize(body: Mapping[str, Any]) -> Summary:
    """No name; the contact id is the one participant."""
    contact = body.get("contactId") if isinstance(body, Mapping) else None
    return Summary(name="", participants=[contact] if isinstance(contact, str) and contact else [])


def body_from_fields(fields: Mapping[str, str], participants: list[Mapping[str, str]]) -> dict[str, Any]:
    """The body from the form: ``contactId`` and, when filled in, ``locationId`` (no participant rows)."""
    return unflatten(fields, BODY_KEYS)


def fields_from_body(body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The inverse of :func:`body_from_fields`."""
    return flatten(body, BODY_KEYS, present=bool), []


def _headers(credential: Credential, version: str = CONVERSATIONS_VERSION) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {credential.secrets['token']}",
        "Version": version,
        "Accept": "application/json",
    }


def build_request(body: Mapping[str, Any], credential: Credential) -> httpx.Request:
    """``POST {base}/conversations/`` with the compact JSON body."""
    # The trailing slash is required: without it HighLevel answers 404 (HighLevel's API reference shows
    # it but does not say so).
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/conversations/"
    content = json.dumps(prepare(body, credential), separators=(",", ":")).encode()
    headers = {**_headers(credential), "Content-Type": "application/json"}
    return httpx.Request("POST", url, headers=headers, content=content)


def _search_request(credential: Credential, location: str, contact: str | None = None) -> httpx.Request:
    params = {"locationId": location, **({"contactId": contact} if contact else {}), "limit": "1"}
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/conversations/search"
    return httpx.Request("GET", url, params=params, headers=_headers(credential))


def _can_refresh(credential: Credential) -> bool:
    return all(credential.secrets.get(k) or credential.settings.get(k) for k in OAUTH_KEYS)


def _refreshable(response: httpx.Response) -> bool:
    """A 401 a new access token may cure: not a missing scope nor a wrong token type."""
    if response.status_code != 401:
        return False
    data = json_body(response)
    message = error_text(data.get("message")) if isinstance(data, dict) else ""
    return not ("scope" in message.lower() or "authclass" in message.lower())


def refresh(credential: Credential, http: Http) -> str:
    """Trade the refresh token for a new access token; store both new tokens (they rotate) at once."""
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/oauth/token"
    form = {
        "grant_type": "refresh_token",
        "refresh_token": credential.secrets["refresh_token"],
        "client_id": credential.settings["client_id"],
        "client_secret": credential.secrets["client_secret"],
        "user_type": "Location",
    }
    request = httpx.Request(
        "POST",
        url,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Version": OAUTH_VERSION,
        },
        content=urlencode(form).encode(),
    )
    try:
        response = http.send(request)
    except ProviderError as exc:
        # A token refresh creates no conversation: a timeout here must not send the caller to a lookup.
        exc.outcome_unknown = False
        raise
    data = json_body(response)
    if not response.is_success or not isinstance(data, dict) or not data.get("access_token"):
        reason = "no access token in the reply"
        if isinstance(data, dict):
            reason = error_text(
                data.get("error_description") or data.get("message") or data.get("error") or reason
            )
        elif data is None:
            reason = "the reply is not JSON"
        code = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else None
        raise ProviderError(
            f"Could not refresh the HighLevel access token: {reason}. Reconnect the OAuth app if this persists.",
            code=code or "refresh_failed",
            status=response.status_code,
            permanent=response.status_code < 500 and response.status_code != 429,
        )
    token = data["access_token"]
    rotated = data.get("refresh_token") or credential.secrets["refresh_token"]
    http.add_secret(token, rotated)
    try:
        lifetime = timedelta(seconds=int(data.get("expires_in")))
        expires = {TOKEN_EXPIRES_AT: (datetime.now(UTC) + lifetime).isoformat(timespec="seconds")}
    except (TypeError, ValueError, OverflowError):
        expires = {TOKEN_EXPIRES_AT: "unknown"}  # not said: not the previous token's either
    credential.update_secrets(token=token, refresh_token=rotated, **expires)
    return token


def _send(build: Callable[[], httpx.Request], credential: Credential, http: Http) -> httpx.Response:
    """Send; on a 401 with an OAuth credential, refresh and send once more (a 401 created nothing)."""
    response = http.send(build())
    if _can_refresh(credential) and _refreshable(response):
        refresh(credential, http)
        response = http.send(build())
    return response


def _search(
    credential: Credential, http: Http, location: str, contact: str
) -> tuple[dict[str, Any], int] | None:
    """The conversation of ``contact`` found by search, trying again while search catches up."""
    for delay in (*SEARCH_RETRY_DELAYS, None):
        response = _send(lambda: _search_request(credential, location, contact), credential, http)
        raise_for_response(response)
        data = json_body(response)
        found = data.get("conversations") if isinstance(data, dict) else None
        for conversation in found if isinstance(found, list) else []:
            if (
                isinstance(conversation, dict)
                and conversation.get("id")
                and conversation.get("contactId", contact) == contact
            ):
                return conversation, response.status_code
        left = http.remaining()
        if delay is None or (left is not None and left <= delay):
            break  # no more tries within the deadline: "not found", and HighLevel refuses a duplicate
        sleep(delay)
    return None


def create(body: Mapping[str, Any], credential: Credential, http: Http) -> Created:
    """Create the conversation; a duplicate raises ``duplicate_contact`` with ``existing_id`` when found."""
    response = _send(lambda: build_request(body, credential), credential, http)
    try:
        raise_for_response(response)
    except ProviderError as exc:
        if exc.code == "duplicate_contact":
            prepared = prepare(body, credential)
            try:
                found = _search(credential, http, prepared["locationId"], prepared["contactId"])
            except ProviderError:
                found = None  # the duplicate message is what matters; the link is a bonus
            if found:
                exc.existing_id = str(found[0]["id"])
        raise
    data = json_body(response)
    conversation = data.get("conversation") if isinstance(data, dict) else None
    if not isinstance(conversation, dict) or not conversation.get("id"):
        raise ProviderError(
            f"HighLevel answered {response.status_code} without a conversation id; "
            "search by the contact before creating again.",
            code="bad_response",
            status=response.status_code,
            outcome_unknown=True,
        )
    return Created(
        external_id=str(conversation["id"]),
        status=response.status_code,
        body=conversation,
        participants=[{"contactId": conversation.get("contactId") or body.get("contactId")}],
    )


def lookup(
    body: Mapping[str, Any], credential: Credential, http: Http, *, sent_at: datetime | None = None
) -> Created | None:
    """The contact's conversation, if any (HighLevel keeps one per contact, so it is this one)."""
    prepared = prepare(body, credential)
    found = _search(credential, http, prepared["locationId"], prepared["contactId"])
    if not found:
        return None
    conversation, status = found
    return Created(
        external_id=str(conversation["id"]),
        status=status,
        body=conversation,
        participants=[{"contactId": prepared["contactId"]}],
        existed=True,
    )


def _contact(contact_id: str, credential: Credential, http: Http) -> dict[str, Any]:
    """The contact as a participant; just its id when it cannot be read (e.g. no contacts.readonly)."""
    participant: dict[str, Any] = {"contactId": contact_id}
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/contacts/{quote(contact_id, safe='')}"
    try:
        response = _send(
            lambda: httpx.Request("GET", url, headers=_headers(credential, CONTACTS_VERSION)),
            credential,
            http,
        )
    except ProviderError:
        return participant
    data = json_body(response)
    contact = data.get("contact") if response.is_success and isinstance(data, dict) else None
    if isinstance(contact, dict):
        name = contact.get("contactName") or " ".join(
            str(contact[k]) for k in ("firstName", "lastName") if contact.get(k)
        )
        participant.update(
            {
                k: v
                for k, v in (("name", name), ("email", contact.get("email")), ("phone", contact.get("phone")))
                if v
            }
        )
    return participant


def fetch(
    external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None = None
) -> Fetched:
    """``GET /conversations/{id}`` (flat or wrapped); the participant is the contact."""
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/conversations/{quote(external_id, safe='')}"
    response = _send(lambda: httpx.Request("GET", url, headers=_headers(credential)), credential, http)
    raise_for_response(response)
    data = json_body(response)
    conversation = data.get("conversation") if isinstance(data, dict) and "conversation" in data else data
    if not isinstance(conversation, dict):
        raise ProviderError(
            "HighLevel answered without a conversation object.",
            code="bad_response",
            status=response.status_code,
        )
    contact = conversation.get("contactId")
    participants = [_contact(contact, credential, http)] if isinstance(contact, str) and contact else []
    return Fetched(
        external_id=str(conversation.get("id") or external_id),
        conversation=conversation,
        participants=participants,
    )


def check(credential: Credential, http: Http) -> str:
    """A one-result search of the credential's location proves the token and its read scope."""
    location = credential.settings["location_id"]
    response = _send(lambda: _search_request(credential, location), credential, http)
    raise_for_response(response)
    if not isinstance(json_body(response), dict):
        raise ProviderError(
            "HighLevel answered the search with a body that is not JSON.",
            code="bad_response",
            status=response.status_code,
        )
    return f"Token accepted for location {location}"


def _needed_scope(request: httpx.Request | None) -> str:
    if request is None:
        return "conversations.write"
    if "/contacts/" in request.url.path:
        return "contacts.readonly"
    return "conversations.write" if request.method == "POST" else "conversations.readonly"


def raise_for_response(response: httpx.Response) -> None:
    """Map a HighLevel (NestJS) error reply to :class:`ProviderError`; return on any 2xx."""
    status = response.status_code
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:
        request = None
    creating = request_method(response) == "POST"
    data = json_body(response)
    if response.is_success:
        if isinstance(data, dict) and data.get("success") is False:
            # Undocumented on a create: it may or may not have made the conversation.
            raise ProviderError(
                error_text(data.get("message") or "HighLevel reported the call as unsuccessful."),
                code="unsuccessful",
                status=status,
                outcome_unknown=creating,
            )
        return
    # A 5xx (or a 3xx) on a create may still have created the conversation: search before sending again.
    unknown = creating and reply_leaves_outcome_unknown(status)
    if not isinstance(data, dict):
        kind = "server error" if status >= 500 else "error"
        hint = (
            " Check the base URL and the path (/conversations/ needs its trailing slash)."
            if status == 404
            else ""
        )
        raise ProviderError(
            f"HighLevel {kind}: HTTP {status} with a body that is not JSON.{hint}",
            code="server_error" if status >= 500 else f"http_{status}",
            status=status,
            permanent=status < 500 and status != 429,
            retry_after=retry_after(response),
            outcome_unknown=unknown,
        )
    message = error_text(data.get("message") or data.get("error") or f"HTTP {status}")
    lowered = message.lower()
    if status == 400 and "already exists" in lowered:
        raise ProviderError(message, code="duplicate_contact", status=status)
    if status == 401:
        if "authclass" in lowered:
            hint, code = (
                "this is not a sub-account token; use a location private integration token or "
                "a location OAuth access token",
                "wrong_token_type",
            )
        elif "scope" in lowered:
            scope = _needed_scope(request)
            hint, code = f"the token lacks the {scope} scope; add it and issue a new token", "missing_scope"
        else:
            hint, code = (
                "the token is invalid or expired; replace it or add the OAuth refresh details",
                "invalid_token",
            )
        raise ProviderError(f"{message} — {hint}.", code=code, status=status)
    if status == 403:
        raise ProviderError(
            f"{message} — the token belongs to another location: locationId must be the location the "
            "token was issued for.",
            code="wrong_location",
            status=status,
        )
    if status == 404:
        raise ProviderError(
            f"{message} — no such path or id (the create path needs its trailing slash: /conversations/).",
            code="not_found",
            status=status,
        )
    if status == 429:
        wait = retry_after(response)
        interval = response.headers.get("x-ratelimit-interval-milliseconds")
        if wait is None and interval and interval.isdigit():
            wait = int(interval) / 1000
        daily = response.headers.get("x-ratelimit-daily-remaining")
        if daily is not None and daily.strip().lstrip("-").isdigit() and int(daily) <= 0:
            reset = response.headers.get("x-ratelimit-daily-reset")
            hint = "the daily request limit is used up" + (f"; it resets at {reset}" if reset else "")
            raise ProviderError(
                f"{message} — {hint}.", code="daily_limit", status=status, permanent=False, retry_after=wait
            )
        raise ProviderError(
            f"{message} — too many requests (100 per 10 seconds); try again shortly.",
            code="rate_limited",
            status=status,
            permanent=False,
            retry_after=wait,
        )
    if status >= 500:
        raise ProviderError(
            f"HighLevel server error: {message}",
            code="server_error",
            status=status,
            permanent=False,
            retry_after=retry_after(response),
            outcome_unknown=unknown,
        )
    code = {400: "bad_request", 422: "unprocessable"}.get(status, f"http_{status}")
    raise ProviderError(message, code=code, status=status)
