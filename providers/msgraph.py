"""Microsoft Graph group conversations: ``POST /v1.0/groups/{group-id}/conversations``.

Creating needs a *delegated* token (a signed-in work or school user, ``Group.ReadWrite.All``): the
web UI signs the user in once (authorization code + PKCE, :func:`authorize_url`, :func:`redeem_code`)
and stores the refresh token; a create or check uses the stored access token while it is valid, else
refreshes (one caller at a time per credential, :func:`delegated_token`) and stores both new tokens. The
app's own client-credentials token (:func:`app_token`) only proves the secret and reads; Graph answers an
app-only create with 403 ``ErrorAccessDenied``.

**Telling our conversation apart.** Graph has no idempotency key and a topic is not unique. Microsoft
documents single-value extended properties on *new group posts*, created with ``POST
/groups/{id}/conversations`` itself ("Create single-value extended property": group post, delegated
``Group.ReadWrite.All``) and read back with ``$expand=singleValueExtendedProperties($filter=id eq '…')``
("Get singleValueLegacyExtendedProperty": group post). So :func:`prepare` puts a marker on the first
post (:data:`MARKER_ID`, the value :func:`prepare`'s ``key`` or a fresh UUID, kept by a retry of the same
body), and :func:`lookup` claims a conversation only when one of its posts carries that marker. A
candidate with the topic but a *different* marker, or whose first post was written before the record
was sent (``sent_at``, minus :data:`CLOCK_SKEW`), is provably not ours; any other candidate (no marker
readable: Graph may drop the property, or someone wrote that topic by hand) makes the answer
:class:`~providers.base.LookupAmbiguous` ("check at the provider"), never "found". A body without a
marker (sent before markers existed) is found only when exactly one candidate exists and it was written
after ``sent_at``. Graph does not refuse a second create with the same topic (``KEY_IS_UNIQUE`` False),
so a job must never re-send on "not found" alone.

Microsoft's old beta page for this call is wrong about the body: it sends ``hasAttachments``,
``lastDeliveredDateTime``, ``uniqueSenders`` and ``preview``, which are computed; the live API (Graph v1.0
reference, "Create conversation") takes ``topic`` + ``threads[].posts[]`` and needs the delegated
``Group.ReadWrite.All`` scope.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from providers.base import (
    Created,
    Credential,
    Fetched,
    Field,
    FieldError,
    InvalidCredential,
    LookupAmbiguous,
    ProviderError,
    Summary,
    base_url,
    bearer_curl_auth,
    error_text,
    flatten,
    reply_leaves_outcome_unknown,
    require_fields,
    too_deep,
    unflatten,
    unique_errors,
    value_errors,
)
from providers.http import json_body, retry_after

if TYPE_CHECKING:
    from providers.http import Http

NAME = "msgraph"
LABEL = "Microsoft Graph"

#: cloud → (login host, Graph host); tokens never cross clouds, so both move together.
CLOUDS = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "dod": ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
    "china": ("https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"),
}
#: Where the client secret, refresh token and access tokens may be sent: every national cloud's hosts
#: (login.chinacloudapi.cn is the older China login host).
URL_HOSTS = {
    "base_url": tuple(dict.fromkeys(urlsplit(graph).hostname or "" for _, graph in CLOUDS.values())),
    "login_url": (
        *dict.fromkeys(urlsplit(login).hostname or "" for login, _ in CLOUDS.values()),
        "login.chinacloudapi.cn",
    ),
}
CLOUD_CHOICES = (
    ("global", "Global (incl. GCC)"),
    ("usgov", "US Government L4 (GCC High)"),
    ("dod", "US Government L5 (DoD)"),
    ("china", "China (21Vianet)"),
)

#: Project limit, not Microsoft's (none is documented): keeps one form and one request reasonable.
MAX_PARTICIPANTS = 100
#: Hooks the Django layer asks (see providers.base.Provider).
NATURAL_KEY = "topic"
BULK_LIMIT = (4, 1.0)  # Outlook: 10,000 requests per 10 min per mailbox; a create makes several: 4 a second
BULK_CONCURRENCY = 4  # Outlook's documented limit: 4 concurrent requests per mailbox (the group's)
KEY_IS_UNIQUE = False  # Graph makes a second conversation with the same topic: never re-send on "not found"
#: The extended property marking our first post: a fixed property set GUID (ours) and name.
MARKER_ID = "String {8c7a3b1e-5d2f-4e6a-9b0c-1f2e3d4c5b6a} Name convadmin-key"
MARKER_PATH = "threads.0.posts.0.singleValueExtendedProperties"
MAX_MARKER = 255
#: How far Graph's clock may be ahead of ours when telling "written before we sent" apart.
CLOCK_SKEW = timedelta(minutes=5)
MAX_CANDIDATES = 10  # more conversations with the topic than this (after the time filter): ambiguous
MAX_THREADS = 5  # threads of one candidate searched for the marker
#: Microsoft Graph refuses requests over 4 MB ("The maximum request length supported is 4MB", 413);
#: the Outlook attachment guide also sends at most 3 MB of attachment in one request.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
SETTING_DEFAULTS = {"groupId": "group_id"}
KEPT_SECRETS = ("refresh_token",)  # obtained by signing in, not typed
#: The signed-in user's access token and when it expires (ISO 8601, UTC): reused until
#: :data:`ACCESS_TOKEN_MARGIN` before then, so parallel calls do not each spend the single-use refresh token.
CACHED_SECRETS = ("access_token", "access_token_expires_at")
TOKEN_EXPIRES_AT = "access_token_expires_at"  # the dashboard's credential health shows it
ACCESS_TOKEN_MARGIN = 120  # seconds: a token with less left is refreshed (a call can take a while)
PARTICIPANT_IDENTITY = ("emailAddress.address",)
SIGN_IN = True
curl_auth = bearer_curl_auth(
    "MSGRAPH_ACCESS_TOKEN",
    "a delegated access token (Group.ReadWrite.All) of a signed-in member, e.g. from "
    "`az account get-access-token --resource-type ms-graph --query accessToken -o tsv`.",
)
PARTICIPANTS_PATH = "threads.0.posts.0.newParticipants"
#: The thread's recipients (conversationThread ``toRecipients`` / ``ccRecipients``: recipient collections).
RECIPIENT_KEYS = ("toRecipients", "ccRecipients")
CONTENT_TYPES = ("text", "html")
COMPUTED = ("id", "hasAttachments", "lastDeliveredDateTime", "preview", "uniqueSenders")
MAX_PAGES = 20  # paging cap for lists (lookup, threads, posts)
LAG_ATTEMPTS = 5  # a GET right after create may 404 ErrorItemNotFound for a few seconds
LAG_DELAY = 1.25
ACCESS_TOKEN_PLACEHOLDER = "$MSGRAPH_ACCESS_TOKEN"  # build_request without a token: for previews
SIGN_IN_AGAIN = 'Choose "Sign in with Microsoft" on the credential page to sign in again.'

_sleep = time.sleep  # patched by tests

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DOMAIN_RE = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
MULTI_TENANT_ALIASES = ("common", "organizations", "consumers")

CREDENTIAL_FIELDS = [
    Field(
        "tenant_id",
        "Directory (tenant) ID",
        help="The tenant GUID or a verified domain such as contoso.onmicrosoft.com (not “common”).",
    ),
    Field("client_id", "Application (client) ID", help="The app registration's GUID."),
    Field(
        "client_secret",
        "Client secret",
        secret=True,
        widget="password",
        help="The secret's Value (shown once when created), not its Secret ID.",
    ),
    Field("group_id", "Group ID", help="The object ID (GUID) of a Microsoft 365 group."),
    Field(
        "refresh_token",
        "Refresh token",
        secret=True,
        required=False,
        widget="password",
        help='Filled in by "Sign in with Microsoft"; creating conversations needs a signed-in user.',
    ),
    Field(
        "cloud",
        "Cloud",
        required=False,
        choices=CLOUD_CHOICES,
        widget="select",
        help="The national cloud the tenant lives in (default Global).",
    ),
]

BODY_FIELDS = [
    Field("groupId", "Group ID", required=False, help="Defaults to the credential's group."),
    Field("topic", "Topic", help="The conversation's subject; it cannot be changed later."),
    Field(
        "threads.0.posts.0.body.contentType",
        "Message format",
        choices=(("text", "Text"), ("html", "HTML")),
        widget="select",
    ),
    Field("threads.0.posts.0.body.content", "First message", widget="textarea"),
]
PARTICIPANT_FIELDS = [
    Field("emailAddress.name", "Name", required=False),
    Field("emailAddress.address", "E-mail address", widget="email", placeholder="adele@contoso.com"),
]
ROW_FIELDS = [f.name for f in PARTICIPANT_FIELDS]


@dataclass(frozen=True)
class SignedIn:
    """Who signed in through :func:`redeem_code` (the refresh token is already stored)."""

    user: str
    display_name: str
    obtained_at: datetime


# --- credential ---------------------------------------------------------------------------------


def parse_credential(data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential:
    """Parse ``{tenant_id, client_id, client_secret, group_id, refresh_token?, cloud?, base_url?, login_url?}``.

    ``refresh_token`` may be missing: the web UI obtains it by signing in. Raises
    :class:`InvalidCredential` listing every bad field.
    """
    if not isinstance(data, Mapping):
        raise InvalidCredential(
            [FieldError("credential", "Expected a JSON object with the credential fields.")]
        )
    errors: list[FieldError] = []
    credential: Credential | None = None
    try:
        credential = require_fields(data, CREDENTIAL_FIELDS, NAME, URL_HOSTS, extra_hosts)
    except InvalidCredential as exc:
        errors += exc.errors
    failed = {e.path for e in errors}

    def text(key: str) -> str:
        value = data.get(key)
        return value.strip() if isinstance(value, str) and key not in failed else ""

    tenant = text("tenant_id")
    if tenant.lower() in MULTI_TENANT_ALIASES:
        errors.append(
            FieldError(
                "tenant_id",
                f"“{tenant}” is a multi-tenant alias; the app's own token needs a specific tenant: "
                "enter the tenant ID (GUID) or a verified domain.",
            )
        )
    elif tenant and not (GUID_RE.match(tenant) or DOMAIN_RE.match(tenant)):
        errors.append(
            FieldError(
                "tenant_id",
                "Enter the directory (tenant) ID, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, "
                "or a verified domain such as contoso.onmicrosoft.com.",
            )
        )
    for key, what in (("client_id", "application (client) ID"), ("group_id", "group's object ID")):
        value = text(key)
        if value and not GUID_RE.match(value):
            errors.append(
                FieldError(key, f"Enter the {what}: a GUID such as 29981b6a-0e57-42dc-94c9-cd24f5306196.")
            )
    if GUID_RE.match(text("client_secret")):
        errors.append(
            FieldError(
                "client_secret",
                "This looks like the secret ID (a GUID), not the secret: copy the Value column under "
                "Certificates & secrets (shown only once, when the secret is created).",
            )
        )
    cloud = text("cloud").lower() or "global"
    if cloud not in CLOUDS:
        errors.append(FieldError("cloud", f"Choose one of: {', '.join(CLOUDS)}."))
    if errors or credential is None:
        raise InvalidCredential(errors)
    settings = credential.settings
    settings["cloud"] = cloud
    settings["tenant_id"] = tenant.lower()
    for key in ("client_id", "group_id"):
        settings[key] = settings[key].lower()
    return credential


def _hosts(credential: Credential) -> tuple[str, str]:
    login, graph = CLOUDS[credential.settings.get("cloud") or "global"]
    return base_url(credential, login, "login_url"), base_url(credential, graph)


def _resource(credential: Credential) -> str:
    """The Graph resource named in scopes: the cloud's own host even when ``base_url`` points elsewhere."""
    return CLOUDS[credential.settings.get("cloud") or "global"][1]


def delegated_scope(credential: Credential) -> str:
    return f"{_resource(credential)}/Group.ReadWrite.All offline_access"


# --- tokens -------------------------------------------------------------------------------------


def _token_request(credential: Credential, form: list[tuple[str, str]], http: Http) -> dict[str, Any]:
    login, _ = _hosts(credential)
    tenant = quote(credential.settings["tenant_id"], safe="")
    request = httpx.Request(
        "POST",
        f"{login}/{tenant}/oauth2/v2.0/token",
        content=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    try:
        response = http.send(request)
    except ProviderError as exc:
        # A token request creates nothing: a timeout here must not send the caller to a lookup.
        exc.outcome_unknown = False
        raise
    raise_for_token_response(response)
    payload = json_body(response)
    if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
        raise ProviderError(
            "The Microsoft sign-in service answered without an access token.",
            code="no_access_token",
            status=response.status_code,
        )
    http.add_secret(payload.get("access_token"), payload.get("refresh_token"), payload.get("id_token"))
    return payload


def app_token(credential: Credential, http: Http) -> str:
    """The app's own token (client credentials): for the check and reads only, never to create."""
    form = [
        ("client_id", credential.settings["client_id"]),
        ("scope", f"{_resource(credential)}/.default"),
        ("client_secret", credential.secrets["client_secret"]),
        ("grant_type", "client_credentials"),
    ]
    return _token_request(credential, form, http)["access_token"]


def delegated_token(credential: Credential, http: Http, *, refused: str | None = None) -> str:
    """The signed-in user's access token: the stored one while it has more than
    :data:`ACCESS_TOKEN_MARGIN` left, else a new one from the refresh token.

    Microsoft's refresh tokens work once (a reused one gets ``invalid_grant`` AADSTS70008), so the refresh
    runs inside ``credential.refreshing()``: the owner locks the stored credential and reloads its secrets,
    and a caller that waited uses the token the first one just stored instead of refreshing again. The new
    tokens are stored at once (``update_secrets``). ``refused``: a token Graph just refused (401), never
    reused.
    """
    token = _stored_token(credential, http, refused)
    if token:
        return token
    with credential.refreshing():
        token = _stored_token(credential, http, refused)
        if token:
            return token
        refresh = credential.secrets.get("refresh_token")
        if not refresh:
            raise ProviderError(
                'Nobody has signed in for this credential: choose "Sign in with Microsoft" on the credential '
                "page (creating group conversations needs a signed-in user).",
                code="not_signed_in",
            )
        form = [
            ("client_id", credential.settings["client_id"]),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_secret", credential.secrets["client_secret"]),
            ("scope", delegated_scope(credential)),
        ]
        payload = _token_request(credential, form, http)
        _store_tokens(credential, payload)
        return payload["access_token"]


def _stored_token(credential: Credential, http: Http, refused: str | None) -> str | None:
    token = credential.secrets.get("access_token")
    if not token or token == refused:
        return None
    try:
        expires = datetime.fromisoformat(credential.secrets.get("access_token_expires_at") or "")
    except ValueError:
        return None
    if expires.tzinfo is None or expires - datetime.now(UTC) <= timedelta(seconds=ACCESS_TOKEN_MARGIN):
        return None
    http.add_secret(token)  # stored by another process: not among the secrets the session started with
    return token


def _store_tokens(credential: Credential, payload: Mapping[str, Any]) -> None:
    """Store the rotated refresh token and the access token with its expiry (``expires_in`` seconds)."""
    try:
        seconds = max(0, int(payload.get("expires_in") or 0))
    except (TypeError, ValueError):
        seconds = 0  # unknown lifetime: stored as expired, never reused
    expires = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="microseconds")
    refresh = payload.get("refresh_token")
    credential.update_secrets(
        **({"refresh_token": refresh} if isinstance(refresh, str) else {}),
        access_token=payload["access_token"],
        access_token_expires_at=expires,
    )


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)`` pair (S256)."""
    verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43 to 128
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_url(credential: Credential, *, redirect_uri: str, state: str, code_challenge: str) -> str:
    """The Microsoft sign-in page to send the user to.

    ``response_mode=query``: the code comes back on a GET to ``redirect_uri``. ``form_post`` would be a
    cross-site POST, which carries no SameSite=Lax session cookie (so no state or verifier to check)
    and needs a CSRF exemption; PKCE and the single-use code cover the code showing in the URL.
    """
    login, _ = _hosts(credential)
    params = {
        "client_id": credential.settings["client_id"],
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "response_mode": "query",
        "scope": delegated_scope(credential),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "prompt": "select_account",
    }
    tenant = quote(credential.settings["tenant_id"], safe="")
    return f"{login}/{tenant}/oauth2/v2.0/authorize?{urlencode(params, quote_via=quote)}"


def redeem_code(
    credential: Credential, *, code: str, redirect_uri: str, code_verifier: str, http: Http
) -> SignedIn:
    """Exchange the sign-in ``code`` for tokens, store the refresh token, and say who signed in."""
    http.add_secret(code, code_verifier)
    form = [
        ("client_id", credential.settings["client_id"]),
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
        ("client_secret", credential.secrets["client_secret"]),
        ("scope", delegated_scope(credential)),
    ]
    payload = _token_request(credential, form, http)
    if not isinstance(payload.get("refresh_token"), str):
        raise ProviderError(
            "Microsoft returned no refresh token: the offline_access permission was not granted.",
            code="no_refresh_token",
        )
    _store_tokens(credential, payload)  # the new user's tokens replace the previous user's
    me = _me(credential, payload["access_token"], http)
    return SignedIn(
        user=str(me.get("userPrincipalName") or me.get("id") or ""),
        display_name=str(me.get("displayName") or ""),
        obtained_at=datetime.now(UTC),
    )


TOKEN_CODE_HINTS = {
    7000215: "The client secret is wrong; a common mistake is pasting the secret's ID (a GUID) instead of its Value.",
    7000222: "The client secret has expired: create a new one under Certificates & secrets and store it here.",
    700016: "No application with this client ID exists in this tenant: check the client ID, tenant and cloud.",
    90002: "No such tenant: check the tenant ID or domain and the cloud.",
    70011: "The requested scope is not valid for this app.",
    65001: "The permissions have not been consented: an administrator must grant admin consent for "
    "Group.ReadWrite.All.",
    50076: f"Multi-factor authentication is required. {SIGN_IN_AGAIN}",
}
TOKEN_ERROR_HINTS = {
    "invalid_grant": f"The sign-in has expired or was revoked. {SIGN_IN_AGAIN}",
    "interaction_required": f"Microsoft needs the user to sign in interactively. {SIGN_IN_AGAIN}",
    "consent_required": TOKEN_CODE_HINTS[65001],
    "invalid_scope": TOKEN_CODE_HINTS[70011],
    "invalid_client": "The client ID or secret is wrong.",
    "unauthorized_client": "This app may not sign in to this tenant.",
    "invalid_request": "The sign-in request was refused.",
    "temporarily_unavailable": "The Microsoft sign-in service is busy; try again shortly.",
}


def raise_for_token_response(response: httpx.Response) -> None:
    """Map a token-endpoint error: branch on ``error``/``error_codes``, show ``error_description``."""
    if response.is_success:
        return
    status = response.status_code
    payload = json_body(response)
    if not isinstance(payload, dict) or not payload.get("error"):
        raise ProviderError(
            f"The Microsoft sign-in service answered HTTP {status} without a readable error.",
            code=f"http_{status}",
            status=status,
            permanent=status < 500,
        )
    error = str(payload["error"])
    codes = [c for c in payload.get("error_codes") or [] if isinstance(c, int)]
    hint = next((TOKEN_CODE_HINTS[c] for c in codes if c in TOKEN_CODE_HINTS), None)
    hint = hint or TOKEN_ERROR_HINTS.get(error, "The Microsoft sign-in service refused the request.")
    description = str(payload.get("error_description") or "").strip()
    first_line = description.splitlines()[0] if description else ""
    raise ProviderError(
        error_text(f"{hint} Microsoft says: {first_line}" if first_line else hint),
        code=f"AADSTS{codes[0]}" if codes else error,
        status=status,
        permanent=not (error == "temporarily_unavailable" or status >= 500),
        retry_after=retry_after(response),
    )


# --- body ---------------------------------------------------------------------------------------


def _unknown(mapping: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> list[FieldError]:
    errors = []
    for key in mapping:
        if key in allowed:
            continue
        if key in COMPUTED:
            message = f"“{key}” is computed by Microsoft Graph and cannot be sent; remove it."
        else:
            message = f"Unknown field “{key}”: allowed here are {', '.join(allowed)}."
        errors.append(FieldError(f"{prefix}{key}", message))
    return errors


def validate_participant(row: Mapping[str, Any], index: int = 0) -> list[FieldError]:
    """One ``newParticipants`` entry: ``{"emailAddress": {"name"?: str, "address": e-mail}}``."""
    return _recipient_errors(row, f"{PARTICIPANTS_PATH}.{index}.")


def _recipient_errors(row: Any, prefix: str) -> list[FieldError]:
    """A Graph ``recipient`` (a participant, a To or Cc recipient) at ``prefix`` (ending in a dot)."""
    if not isinstance(row, Mapping):
        return [
            FieldError(prefix[:-1], 'Each participant is an object {"emailAddress": {"name", "address"}}.')
        ]
    screened = value_errors(row, prefix[:-1])
    if too_deep(screened):
        return screened
    errors = screened + _unknown(row, ("emailAddress",), prefix)
    email = row.get("emailAddress")
    if email is None:
        return [*errors, FieldError(f"{prefix}emailAddress.address", "E-mail address is required.")]
    if not isinstance(email, Mapping):
        return [
            *errors,
            FieldError(f"{prefix}emailAddress", '"emailAddress" must be an object {"name", "address"}.'),
        ]
    errors += _unknown(email, ("name", "address"), f"{prefix}emailAddress.")
    name = email.get("name")
    if name is not None and not isinstance(name, str):
        errors.append(FieldError(f"{prefix}emailAddress.name", "Name must be text."))
    address = email.get("address")
    path = f"{prefix}emailAddress.address"
    if address is None or (isinstance(address, str) and not address.strip()):
        errors.append(FieldError(path, "E-mail address is required."))
    elif not isinstance(address, str):
        errors.append(FieldError(path, "E-mail address must be text."))
    elif len(address) > 254 or not EMAIL_RE.match(address):
        errors.append(FieldError(path, f"“{address}” is not an e-mail address such as adele@contoso.com."))
    return errors


def validate(body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]:
    """Every rule for a create body: one thread with one post, text/html content, valid participants."""
    if not isinstance(body, Mapping):
        return [FieldError("body", 'The body must be a JSON object {"topic", "threads": [...]}.')]
    screened = value_errors(body)
    if too_deep(screened):
        return screened
    errors = screened + _rules(body)
    if not errors:
        errors += _size_errors(body)
    return unique_errors(errors)


def _size_errors(body: Mapping[str, Any]) -> list[FieldError]:
    wire = {k: v for k, v in body.items() if k != "groupId"}
    size = len(json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode())
    if size <= MAX_REQUEST_BYTES:
        return []
    return [
        FieldError(
            "threads.0.posts.0.body.content",
            f"The request would be {size / 1048576:.1f} MB; Microsoft Graph takes at most 4 MB per request: "
            "shorten the first message.",
        )
    ]


def _rules(body: Mapping[str, Any]) -> list[FieldError]:
    errors = _unknown(body, ("groupId", "topic", "threads"), "")
    group = body.get("groupId")
    if group is not None and not (isinstance(group, str) and GUID_RE.match(group)):
        errors.append(
            FieldError("groupId", "Group ID must be a GUID such as 29981b6a-0e57-42dc-94c9-cd24f5306196.")
        )
    topic = body.get("topic")
    if topic is None or (isinstance(topic, str) and not topic.strip()):
        errors.append(FieldError("topic", "Topic is required."))
    elif not isinstance(topic, str):
        errors.append(FieldError("topic", "Topic must be text."))
    threads = body.get("threads")
    if not isinstance(threads, list) or len(threads) != 1:
        message = "Give exactly one thread with one post: the message that starts the conversation."
        return [*errors, FieldError("threads", message)]
    thread = threads[0]
    if not isinstance(thread, Mapping):
        return [*errors, FieldError("threads.0", 'The thread must be an object {"posts": [...]}.')]
    errors += _unknown(thread, ("posts", *RECIPIENT_KEYS), "threads.0.")
    for key in RECIPIENT_KEYS:
        if key in thread:
            errors += _validate_recipients(thread[key], f"threads.0.{key}")
    posts = thread.get("posts")
    if not isinstance(posts, list) or len(posts) != 1:
        # Microsoft documents one post when a conversation is created (later posts are replies).
        return [*errors, FieldError("threads.0.posts", "Give exactly one post in the thread.")]
    post = posts[0]
    if not isinstance(post, Mapping):
        return [
            *errors,
            FieldError("threads.0.posts.0", 'The post must be an object {"body", "newParticipants"?}.'),
        ]
    errors += _unknown(
        post, ("body", "newParticipants", "categories", "singleValueExtendedProperties"), "threads.0.posts.0."
    )
    if "categories" in post:
        errors += _validate_categories(post["categories"])
    if "singleValueExtendedProperties" in post:
        errors += _validate_marker(post["singleValueExtendedProperties"])
    errors += _validate_post_body(post.get("body"))
    if "newParticipants" in post:
        errors += _validate_participants(post["newParticipants"])
    return errors


def _validate_recipients(rows: Any, path: str) -> list[FieldError]:
    """A thread's ``toRecipients`` or ``ccRecipients``: a list of recipients like the participants."""
    if not isinstance(rows, list):
        return [
            FieldError(
                path, f'{path.rpartition(".")[2]} must be a list of {{"emailAddress": {{…}}}} objects.'
            )
        ]
    if len(rows) > MAX_PARTICIPANTS:
        return [
            FieldError(
                path, f"At most {MAX_PARTICIPANTS} recipients ({len(rows)} given): a limit of this tool."
            )
        ]
    return [error for index, row in enumerate(rows) for error in _recipient_errors(row, f"{path}.{index}.")]


def _validate_categories(categories: Any) -> list[FieldError]:
    """The post's ``categories``: a list of category names (text)."""
    path = "threads.0.posts.0.categories"
    if not isinstance(categories, list):
        return [FieldError(path, 'categories must be a list of names, e.g. ["Red category"].')]
    return [
        FieldError(f"{path}.{index}", "A category is a non-empty name (text).")
        for index, name in enumerate(categories)
        if not isinstance(name, str) or not name.strip()
    ]


def _validate_marker(properties: Any) -> list[FieldError]:
    """Only the marker :func:`prepare` adds (a retry sends the stored body again) is accepted."""
    if (
        isinstance(properties, list)
        and len(properties) == 1
        and isinstance(properties[0], Mapping)
        and set(properties[0]) == {"id", "value"}
        and properties[0]["id"] == MARKER_ID
        and isinstance(properties[0]["value"], str)
        and 0 < len(properties[0]["value"]) <= MAX_MARKER
    ):
        return []
    return [
        FieldError(
            MARKER_PATH,
            "Only the marker this tool adds may be given here (one property "
            f'{{"id": "{MARKER_ID}", "value": up to {MAX_MARKER} characters}}); remove it to have one made.',
        )
    ]


def _validate_post_body(item_body: Any) -> list[FieldError]:
    prefix = "threads.0.posts.0.body"
    if item_body is None:
        return [FieldError(f"{prefix}.content", "The first message is required.")]
    if not isinstance(item_body, Mapping):
        return [FieldError(prefix, 'The post body must be an object {"contentType", "content"}.')]
    errors = _unknown(item_body, ("contentType", "content"), f"{prefix}.")
    kind = item_body.get("contentType")
    if not isinstance(kind, str) or kind.lower() not in CONTENT_TYPES:
        errors.append(FieldError(f"{prefix}.contentType", "Message format must be “text” or “html”."))
    content = item_body.get("content")
    if content is None or (isinstance(content, str) and not content.strip()):
        errors.append(FieldError(f"{prefix}.content", "The first message is required."))
    elif not isinstance(content, str):
        errors.append(FieldError(f"{prefix}.content", "The first message must be text."))
    return errors


def _validate_participants(rows: Any) -> list[FieldError]:
    if not isinstance(rows, list):
        return [FieldError(PARTICIPANTS_PATH, "newParticipants must be a list.")]
    if len(rows) > MAX_PARTICIPANTS:
        return [
            FieldError(
                PARTICIPANTS_PATH,
                f"At most {MAX_PARTICIPANTS} participants ({len(rows)} given): a limit of this tool, "
                "not of Microsoft Graph.",
            )
        ]
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        row_errors = validate_participant(row, index)
        errors += row_errors
        if row_errors:
            continue
        address = row["emailAddress"]["address"].lower()
        if address in seen:
            errors.append(
                FieldError(
                    f"{PARTICIPANTS_PATH}.{index}.emailAddress.address",
                    f"{row['emailAddress']['address']} is already participant {seen[address] + 1}.",
                )
            )
        else:
            seen[address] = index
    return errors


def _post(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first post of a body, or {} when the shape is off (used by display helpers on any input)."""
    threads = body.get("threads") if isinstance(body, Mapping) else None
    thread = threads[0] if isinstance(threads, list) and threads else None
    posts = thread.get("posts") if isinstance(thread, Mapping) else None
    post = posts[0] if isinstance(posts, list) and posts else None
    return post if isinstance(post, Mapping) else {}


def _participants(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = _post(body).get("newParticipants")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def prepare(body: Mapping[str, Any], credential: Credential, key: str | None = None) -> dict[str, Any]:
    """Fill ``groupId`` from the credential (so a retry targets the same group), lower-case enums, and mark
    the first post (:data:`MARKER_ID`) with ``key``, else the marker the body has, else a fresh UUID."""
    prepared = copy.deepcopy(dict(body))
    prepared["groupId"] = (prepared.get("groupId") or credential.settings["group_id"]).lower()
    post = _post(prepared)
    item_body = post.get("body")
    if isinstance(item_body, dict) and isinstance(item_body.get("contentType"), str):
        item_body["contentType"] = item_body["contentType"].lower()
    if isinstance(post, dict):
        value = str(key)[:MAX_MARKER] if key else (marker_of(prepared) or str(uuid.uuid4()))
        post["singleValueExtendedProperties"] = [{"id": MARKER_ID, "value": value}]
    return prepared


def marker_of(body: Mapping[str, Any]) -> str | None:
    """The marker value on the body's first post, if it has one."""
    properties = _post(body).get("singleValueExtendedProperties")
    for item in properties if isinstance(properties, list) else []:
        if isinstance(item, Mapping) and item.get("id") == MARKER_ID and isinstance(item.get("value"), str):
            return item["value"]
    return None


def summarize(body: Mapping[str, Any]) -> Summary:
    topic = body.get("topic") if isinstance(body, Mapping) else None
    addresses = []
    for row in _participants(body):
        email = row.get("emailAddress")
        if isinstance(email, Mapping) and isinstance(email.get("address"), str):
            addresses.append(email["address"])
    return Summary(name=topic if isinstance(topic, str) else "", participants=addresses)


def body_from_fields(fields: Mapping[str, str], participants: list[Mapping[str, str]]) -> dict[str, Any]:
    """The create body from the form's flat values; blank optional values and empty rows dropped."""

    def value(source: Mapping[str, str], key: str) -> str:
        return (source.get(key) or "").strip()

    body = unflatten(fields, ["groupId"])
    body["topic"] = value(fields, "topic")
    post: dict[str, Any] = {
        "body": {
            "contentType": value(fields, "threads.0.posts.0.body.contentType"),
            "content": fields.get("threads.0.posts.0.body.content") or "",
        }
    }
    rows = [row for row in (unflatten(flat, ROW_FIELDS) for flat in participants) if row]
    for row in rows:
        row["emailAddress"].setdefault("address", "")  # a name alone: the missing address is the error
    if rows:
        post["newParticipants"] = rows
    body["threads"] = [{"posts": [post]}]
    return body


def fields_from_body(body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The inverse of :func:`body_from_fields` (for "duplicate as new")."""

    def is_text(value: Any) -> bool:
        return isinstance(value, str)

    fields = flatten(body, [f.name for f in BODY_FIELDS], present=is_text, blank=True)
    fields["threads.0.posts.0.body.contentType"] = fields["threads.0.posts.0.body.contentType"].lower()
    rows = [flatten(row, ROW_FIELDS, present=is_text, blank=True) for row in _participants(body)]
    return fields, rows


# --- requests -----------------------------------------------------------------------------------


def _segment(value: str) -> str:
    """An opaque id as one path segment: ``/`` and ``+`` percent-encoded, ``=`` kept (valid in a path)."""
    return quote(value, safe="=")


def _group(body: Mapping[str, Any], credential: Credential) -> str:
    return str(body.get("groupId") or credential.settings["group_id"])


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "client-request-id": str(uuid.uuid4()),
    }


def build_request(
    body: Mapping[str, Any], credential: Credential, access_token: str | None = None
) -> httpx.Request:
    """The create request; ``groupId`` picks the group and is not sent.

    Without ``access_token`` the header carries :data:`ACCESS_TOKEN_PLACEHOLDER` (for previews): the
    real token only exists after a refresh, see :func:`create`.
    """
    _, graph = _hosts(credential)
    wire = {k: v for k, v in body.items() if k != "groupId"}
    return httpx.Request(
        "POST",
        f"{graph}/v1.0/groups/{_segment(_group(body, credential))}/conversations",
        content=json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode(),
        headers={**_headers(access_token or ACCESS_TOKEN_PLACEHOLDER), "Content-Type": "application/json"},
    )


def create(body: Mapping[str, Any], credential: Credential, http: Http) -> Created:
    """Create the conversation with the signed-in user's token (``body`` is the prepared body)."""
    token = delegated_token(credential, http)
    response = http.send(build_request(body, credential, token))
    if response.status_code == 401:
        # A 401 means nothing was created: one fresh token (not the refused one), one more try.
        token = delegated_token(credential, http, refused=token)
        response = http.send(build_request(body, credential, token))
    try:
        raise_for_response(response)
    except ProviderError as exc:
        # A 4xx (429 too) was refused before processing; a 5xx (503/504 too: a gateway may give up after
        # the work was done) or an unreadable 1xx/3xx may have created it.
        exc.outcome_unknown = reply_leaves_outcome_unknown(response.status_code)
        raise
    payload = json_body(response)
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
        raise ProviderError(
            f"Microsoft Graph answered HTTP {response.status_code} without a conversation id; "
            "the conversation may exist: look it up before trying again.",
            code="no_id",
            status=response.status_code,
            outcome_unknown=True,
        )
    return Created(
        external_id=payload["id"],
        status=response.status_code,
        body=payload,
        participants=_participants(body),
    )


def _once_more_if_refused[T](credential: Credential, http: Http, read: Callable[[], T]) -> T:
    """``read()``; when Graph refuses the signed-in user's stored access token (401: revoked before it
    expired), once more with a new one (:func:`delegated_token` with ``refused``)."""
    try:
        return read()
    except ProviderError as exc:
        refused = credential.secrets.get("access_token")
        if exc.status != 401 or not refused or not credential.secrets.get("refresh_token"):
            raise
    delegated_token(credential, http, refused=refused)
    return read()


def _read_token(credential: Credential, http: Http) -> str:
    """Reads use the signed-in user when there is one, else the app's own token."""
    if credential.secrets.get("refresh_token"):
        return delegated_token(credential, http)
    return app_token(credential, http)


def _get(url: str, token: str, http: Http) -> dict[str, Any]:
    response = http.send(httpx.Request("GET", url, headers=_headers(token)))
    raise_for_response(response)
    payload = json_body(response)
    if not isinstance(payload, dict):
        raise ProviderError(
            f"Microsoft Graph answered HTTP {response.status_code} with a body that is not a JSON object.",
            code="bad_body",
            status=response.status_code,
        )
    return payload


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _list(url: str, token: str, credential: Credential, http: Http) -> list[dict[str, Any]]:
    """All items of a Graph collection, following ``@odata.nextLink`` (capped at MAX_PAGES)."""
    _, graph = _hosts(credential)
    items: list[dict[str, Any]] = []
    for _page in range(MAX_PAGES):
        payload = _get(url, token, http)
        items += [v for v in payload.get("value") or [] if isinstance(v, dict)]
        url = payload.get("@odata.nextLink")
        if not isinstance(url, str) or not url:
            break
        if not _same_origin(url, graph):
            # Never hand the bearer token to another host.
            raise ProviderError(f"Refusing to follow a paging link to another host: {urlsplit(url).netloc}.")
    return items


def lookup(
    body: Mapping[str, Any], credential: Credential, http: Http, *, sent_at: datetime | None = None
) -> Created | None:
    """After an unknown outcome: the conversation this body created, None when there is none, or
    :class:`~providers.base.LookupAmbiguous` when a candidate cannot be told apart (see the module notes).

    ``sent_at`` is when the create was sent (the record's send time): conversations whose first post is
    older cannot be it.
    """
    return _once_more_if_refused(credential, http, lambda: _lookup(body, credential, http, sent_at))


def _lookup(
    body: Mapping[str, Any], credential: Credential, http: Http, sent_at: datetime | None
) -> Created | None:
    topic = body.get("topic")
    if not isinstance(topic, str) or not topic:
        return None
    _, graph = _hosts(credential)
    token = _read_token(credential, http)
    group_url = f"{graph}/v1.0/groups/{_segment(_group(body, credential))}"
    items = _list(
        f"{group_url}/conversations?$select=id,topic,lastDeliveredDateTime", token, credential, http
    )
    matches = [i for i in items if i.get("topic") == topic and isinstance(i.get("id"), str)]
    earliest = sent_at - CLOCK_SKEW if sent_at else None
    # The last delivery of a conversation holding our post is after we sent: older ones cannot be ours.
    matches = [i for i in matches if not (earliest and _before(i.get("lastDeliveredDateTime"), earliest))]
    if not matches:
        return None
    # The list's order is not documented: newest first.
    matches.sort(key=lambda i: str(i.get("lastDeliveredDateTime") or ""), reverse=True)
    ids = [i["id"] for i in matches]
    if len(matches) > MAX_CANDIDATES:
        raise LookupAmbiguous(
            f"{len(matches)} conversations of this group have the topic {topic!r}; too many to check which "
            "one (if any) this request created. Check in the group before trying again.",
            candidates=ids,
        )
    marker = marker_of(body)
    maybe = []
    for item in matches:
        markers, first = _marks(group_url, item["id"], token, credential, http)
        if marker is not None and marker in markers:
            return Created(
                external_id=item["id"], status=200, body=item, participants=_participants(body), existed=True
            )
        if markers or (earliest and first and first < earliest):
            continue  # another record's conversation, or written before we sent
        maybe.append(item)
    if not maybe:
        return None
    if marker is None and len(maybe) == 1 and sent_at is not None:
        # A body from before markers: one conversation with the topic, written after we sent.
        item = maybe[0]
        return Created(
            external_id=item["id"], status=200, body=item, participants=_participants(body), existed=True
        )
    raise LookupAmbiguous(
        f"{len(maybe)} conversation(s) of this group have the topic {topic!r} and nothing proves whether this "
        "request created one of them. Check in the group before trying again.",
        candidates=[i["id"] for i in maybe],
    )


def _before(value: Any, moment: datetime) -> bool:
    when = _when(value)
    return when is not None and when < moment


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _marks(
    group_url: str, conversation_id: str, token: str, credential: Credential, http: Http
) -> tuple[set[str], datetime | None]:
    """The marker values on a conversation's posts, and when its earliest post was written."""
    threads = _list(
        f"{group_url}/conversations/{_segment(conversation_id)}/threads?$select=id", token, credential, http
    )
    expand = quote(f"singleValueExtendedProperties($filter=id eq '{MARKER_ID}')", safe="()$=")
    markers: set[str] = set()
    times: list[datetime] = []
    for thread in threads[:MAX_THREADS]:
        if not isinstance(thread.get("id"), str):
            continue
        posts = _list(
            f"{group_url}/threads/{_segment(thread['id'])}/posts?$select=id,createdDateTime&$expand={expand}",
            token,
            credential,
            http,
        )
        for post in posts:
            markers.update(
                p["value"]
                for p in post.get("singleValueExtendedProperties") or []
                if isinstance(p, dict) and p.get("id") == MARKER_ID and isinstance(p.get("value"), str)
            )
            when = _when(post.get("createdDateTime"))
            if when is not None:
                times.append(when)
    return markers, min(times, default=None)


def fetch(
    external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None = None
) -> Fetched:
    """The conversation, its threads and the first thread's posts' people.

    ``external_id`` is the conversation id :func:`create` returned; the group is the create ``body``'s
    ``groupId`` when it overrode the credential's. A 404 ``ErrorItemNotFound``
    right after a create is replication lag: retried for a few seconds.
    """
    return _once_more_if_refused(credential, http, lambda: _fetch(external_id, credential, http, body))


def _fetch(external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None) -> Fetched:
    _, graph = _hosts(credential)
    token = _read_token(credential, http)
    group_id = (body or {}).get("groupId") or credential.settings["group_id"]
    group_url = f"{graph}/v1.0/groups/{_segment(group_id)}"
    conversation_url = f"{group_url}/conversations/{_segment(external_id)}"
    for attempt in range(LAG_ATTEMPTS):
        try:
            conversation = _get(conversation_url, token, http)
            break
        except ProviderError as exc:
            left = http.remaining()
            if (
                exc.code != "ErrorItemNotFound"
                or attempt == LAG_ATTEMPTS - 1
                or (left is not None and left <= LAG_DELAY)
            ):
                raise
            _sleep(LAG_DELAY)
    threads = _list(f"{conversation_url}/threads", token, credential, http)
    participants: list[dict[str, Any]] = []
    if threads and isinstance(threads[0].get("id"), str):
        posts = _list(
            f"{group_url}/threads/{_segment(threads[0]['id'])}/posts"
            "?$select=id,from,sender,newParticipants,receivedDateTime",
            token,
            credential,
            http,
        )
        threads[0] = {**threads[0], "posts": posts}
        participants = _people(posts)
    return Fetched(
        external_id=str(conversation.get("id") or external_id),
        conversation={**conversation, "threads": threads},
        participants=participants,
    )


def _people(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Senders and added participants, once each: ``{"emailAddress": {...}, "role": "sender"|"participant"}``."""
    people: dict[str, dict[str, Any]] = {}
    for post in posts:
        recipients = [(post.get("from"), "sender")]
        added = post.get("newParticipants")
        recipients += [(r, "participant") for r in added] if isinstance(added, list) else []
        for recipient, role in recipients:
            email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
            address = email.get("address") if isinstance(email, dict) else None
            if isinstance(address, str) and address.lower() not in people:
                people[address.lower()] = {"emailAddress": email, "role": role}
    return list(people.values())


def _me(credential: Credential, token: str, http: Http) -> dict[str, Any]:
    _, graph = _hosts(credential)
    return _get(f"{graph}/v1.0/me?$select=id,userPrincipalName,displayName", token, http)


def check(credential: Credential, http: Http) -> str:
    """Prove the secret (app token), that the group is a Microsoft 365 group, and who is signed in."""
    return _once_more_if_refused(credential, http, lambda: _check(credential, http))


def _check(credential: Credential, http: Http) -> str:
    _, graph = _hosts(credential)
    token = app_token(credential, http)
    user_token = delegated_token(credential, http) if credential.secrets.get("refresh_token") else None
    group_id = credential.settings["group_id"]
    group = _get(
        f"{graph}/v1.0/groups/{_segment(group_id)}?$select=id,displayName,mailEnabled,groupTypes",
        user_token or token,
        http,
    )
    name = str(group.get("displayName") or group_id)
    if "Unified" not in (group.get("groupTypes") or []) or group.get("mailEnabled") is not True:
        raise ProviderError(
            f"Group '{name}' is not a Microsoft 365 group (groupTypes must contain “Unified” and it must be "
            "mail-enabled): only Microsoft 365 groups have conversations.",
            code="not_unified_group",
        )
    if not user_token:
        return (
            f"Group '{name}' (Microsoft 365) reachable with the app's token; nobody has signed in yet: "
            'choose "Sign in with Microsoft" before creating conversations.'
        )
    me = _me(credential, user_token, http)
    return f"Group '{name}' (Microsoft 365) reachable; signed in as {me.get('userPrincipalName') or me.get('id')}"


GRAPH_HINTS = {
    "InvalidAuthenticationToken": f"The access token was refused. {SIGN_IN_AGAIN}",
    "ErrorAccessDenied": "Creating a group conversation needs a signed-in user's token with the delegated "
    "permission Group.ReadWrite.All (admin consent); app-only tokens cannot create one.",
    "Authorization_RequestDenied": "The token may not read this group: sign in with Microsoft (delegated "
    "Group.ReadWrite.All), or grant the app the application permission Group.Read.All.",
    "Request_ResourceNotFound": "No group with this id in the tenant; only Microsoft 365 (Unified) groups "
    "have conversations.",
    "MailboxNotEnabledForRESTAPI": "This group has no mailbox: only Microsoft 365 (Unified) groups have "
    "conversations.",
}


def raise_for_response(response: httpx.Response) -> None:
    """Map a Graph error ``{"error": {"code", "message", "innerError"}}`` to :class:`ProviderError`."""
    if response.is_success:
        return
    status = response.status_code
    transient = status == 429 or status >= 500
    payload = json_body(response)
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or not error.get("code"):
        reason = "a server error" if status >= 500 else "an error without a readable body"
        raise ProviderError(
            f"Microsoft Graph answered HTTP {status}: {reason}.",
            code=f"http_{status}",
            status=status,
            permanent=not transient,
            retry_after=retry_after(response),
        )
    code = str(error["code"])
    message = error_text(error.get("message")) or f"HTTP {status}"
    hint = GRAPH_HINTS.get(code)
    raise ProviderError(
        f"{message} — {hint}" if hint else message,
        code=code,
        status=status,
        permanent=not transient,
        retry_after=retry_after(response),
    )
