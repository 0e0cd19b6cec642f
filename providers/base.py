"""The shared vocabulary of every provider module: credentials, results, errors.

Plain Python on purpose (no Django): a provider can be used from a shell, a script or the sandbox.
Each provider module (``mixin``, ``twilio``, ``highlevel``, ``msgraph``) exposes the same functions,
described by :class:`Provider` below.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from datetime import datetime

    import httpx

    from providers.http import Http

LOOPBACK_HOSTS = {"localhost"}


@dataclass(frozen=True)
class FieldError:
    """One rule broken by a body or a credential, keyed by a dotted path (``participants.3.user_id``)."""

    path: str
    message: str


class InvalidCredential(ValueError):
    """A credential file or form is unusable; ``errors`` says which field and why."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in errors))


class ProviderError(Exception):
    """The provider refused the call, or could not be reached.

    ``message`` is the provider's own wording where it gave one; ``code`` its error code;
    ``status`` the HTTP status; ``permanent`` False when trying again later may succeed;
    ``outcome_unknown`` True when the request may have been processed (a read timeout on a create):
    look the conversation up by its natural key before sending again; ``existing_id`` the id of a
    conversation that already exists when the provider refused a duplicate.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        status: int | None = None,
        permanent: bool = True,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
        existing_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = None if code is None else str(code)
        self.status = status
        self.permanent = permanent
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after
        self.existing_id = existing_id  # e.g. HighLevel's duplicate contact: the conversation that exists

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code else self.message


class LookupAmbiguous(ProviderError):
    """A look-up found conversations it cannot tell apart from this one: neither "found" nor "not found".

    ``candidates`` are their ids. Nothing may be claimed and nothing re-sent: a person checks at the
    provider. A subclass of :class:`ProviderError` (code ``ambiguous``), so a caller that does not know it
    still treats it as "could not look it up".
    """

    def __init__(self, message: str, *, candidates: list[str] | None = None):
        super().__init__(message, code="ambiguous", permanent=True)
        self.candidates = list(candidates or [])


@dataclass(frozen=True)
class Field:
    """One input a provider takes: a credential field, a body field, or a participant-row field.

    ``name`` is the key in the credential file, or the error path of a body field
    (``topic``, ``threads.0.posts.0.body.content``), or the sub-path of a participant field
    (``user_id``, ``messaging_binding.address``): errors keyed by that path land on that input.
    """

    name: str
    label: str
    secret: bool = False
    required: bool = True
    help: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    widget: str = "text"  # text | textarea | select | email | password
    placeholder: str = ""


@dataclass
class Credential:
    """A parsed credential: non-secret ``settings`` and ``secrets``.

    Providers whose tokens rotate (HighLevel OAuth, Microsoft Graph) update ``secrets`` in place and
    call ``on_change(secrets)`` at once, so the caller can persist the new refresh token before
    anything else can fail.
    """

    provider: str
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    on_change: Callable[[dict[str, str]], None] | None = field(default=None, repr=False)
    #: Held while a single-use token is refreshed: the owner locks the stored credential and reloads
    #: ``secrets`` into this object (another process may have refreshed it meanwhile). None: no lock.
    lock: Callable[[], AbstractContextManager[Any]] | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # never show secret values, even in a traceback
        return f"Credential(provider={self.provider!r}, settings={self.settings!r}, secrets=<hidden>)"

    def secret_values(self) -> list[str]:
        return [v for v in self.secrets.values() if isinstance(v, str) and v]

    def refreshing(self) -> AbstractContextManager[Any]:
        """``with credential.refreshing():`` around reading and refreshing a token that works only once."""
        return self.lock() if self.lock else nullcontext()

    def update_secrets(self, **values: str) -> None:
        """Store rotated secrets (e.g. a new refresh token) and tell the owner at once."""
        changed = {k: v for k, v in values.items() if v and self.secrets.get(k) != v}
        if not changed:
            return
        self.secrets.update(changed)
        if self.on_change:
            self.on_change(dict(self.secrets))


@dataclass
class Created:
    """A conversation the provider created (or already had: ``existed``)."""

    external_id: str
    status: int
    body: dict[str, Any]
    participants: list[dict[str, Any]] = field(default_factory=list)
    existed: bool = False
    url: str = ""


@dataclass
class Fetched:
    """A conversation as the provider reports it now, with its participants."""

    external_id: str
    conversation: dict[str, Any]
    participants: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    """What the conversation list shows and searches: a name and participant identities."""

    name: str
    participants: list[str]


class Provider(Protocol):
    """The surface every provider module offers (module-level functions and constants).

    The hooks after ``MAX_PARTICIPANTS`` are what the Django layer asks instead of branching on a
    provider's name; a module that leaves one out gets its value from :data:`HOOK_DEFAULTS`.
    """

    NAME: str
    LABEL: str
    CREDENTIAL_FIELDS: list[Field]
    URL_HOSTS: dict[str, tuple[str, ...]]  # URL setting (base_url, login_url) → the provider's own hosts
    BODY_FIELDS: list[Field]
    PARTICIPANT_FIELDS: list[Field]
    PARTICIPANTS_PATH: str | None  # "participants", "Participant", …; None: no participant list
    MAX_PARTICIPANTS: int
    NATURAL_KEY: str | None  # the body key ``lookup`` finds a conversation by; None: it cannot look up
    DUPLICATE_CODES: tuple[str, ...]  # error codes meaning "a conversation with this key already exists"
    KEY_IS_UNIQUE: bool  # the provider refuses or de-duplicates a second create with the same natural key
    NOT_DUPLICATED: tuple[str, ...]  # body keys "duplicate as new" leaves out (generated or unique)
    GENERATED: tuple[
        str, ...
    ]  # body keys ``prepare`` makes afresh when empty (a resubmit reuses the first's)
    SETTING_DEFAULTS: Mapping[str, str]  # body key -> the credential setting that fills it when empty
    KEPT_SECRETS: tuple[str, ...]  # secrets a replacement keeps when left out (obtained by signing in)
    CACHED_SECRETS: tuple[
        str, ...
    ]  # secrets the module caches (an access token): no rotation, no fingerprint
    TOKEN_EXPIRES_AT: str | None  # the cached secret holding the access token's expiry (ISO 8601)
    PARTICIPANT_IDENTITY: tuple[str, ...]  # paths that identify a participant across two reads
    SIGN_IN: bool  # a person signs in through the browser (authorize_url / redeem_code)
    KEYSTORE_UPLOAD: bool  # the credential comes as a file the provider's console downloads
    PREVIEW_HINT: str  # one sentence shown under the request preview
    UNTITLED: str  # a record without a name is called this ("{participant}": its first participant); "": no
    BULK_LIMIT: tuple[
        int, float
    ]  # bulk create's default pace: at most N creates per S seconds per credential
    BULK_CONCURRENCY: int  # bulk create's default: at most this many creates of a batch in flight at once

    def curl_auth(self, settings: Mapping[str, Any]) -> tuple[str, str]: ...

    def parse_credential(self, data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential: ...
    def validate(self, body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]: ...
    def validate_participant(self, row: Mapping[str, Any], index: int = 0) -> list[FieldError]: ...
    def prepare(
        self, body: Mapping[str, Any], credential: Credential, key: str | None = None
    ) -> dict[str, Any]: ...
    def summarize(self, body: Mapping[str, Any]) -> Summary: ...
    def body_from_fields(
        self, fields: Mapping[str, str], participants: list[Mapping[str, str]]
    ) -> dict[str, Any]: ...
    def fields_from_body(self, body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]: ...
    def build_request(self, body: Mapping[str, Any], credential: Credential) -> httpx.Request: ...
    def create(self, body: Mapping[str, Any], credential: Credential, http: Http) -> Created: ...
    def lookup(
        self, body: Mapping[str, Any], credential: Credential, http: Http, *, sent_at: datetime | None = None
    ) -> Created | None: ...
    def fetch(
        self, external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None = None
    ) -> Fetched: ...
    def check(self, credential: Credential, http: Http) -> str: ...
    def raise_for_response(self, response: httpx.Response) -> None: ...


def bearer_curl_auth(variable: str, note: str) -> Callable[[Mapping[str, Any]], tuple[str, str]]:
    """A ``curl_auth`` hook for a bearer token kept in the shell variable ``variable``."""

    def curl_auth(settings: Mapping[str, Any]) -> tuple[str, str]:
        return f'-H "Authorization: Bearer ${variable}"', f"{variable}: {note}"

    return curl_auth


#: What a provider module that leaves a hook out gets (filled in by :func:`providers.get`).
HOOK_DEFAULTS: dict[str, Any] = {
    "NATURAL_KEY": None,
    "KEY_IS_UNIQUE": False,
    "DUPLICATE_CODES": (),
    "NOT_DUPLICATED": (),
    "GENERATED": (),
    "SETTING_DEFAULTS": {},
    "URL_HOSTS": {"base_url": ()},
    "KEPT_SECRETS": (),
    "CACHED_SECRETS": (),
    "TOKEN_EXPIRES_AT": None,
    "PARTICIPANT_IDENTITY": ("id",),
    "SIGN_IN": False,
    "KEYSTORE_UPLOAD": False,
    "PREVIEW_HINT": "",
    "UNTITLED": "",
    "BULK_LIMIT": (10, 1.0),
    "BULK_CONCURRENCY": 2,
    "curl_auth": bearer_curl_auth("TOKEN", "the credential's token."),
}


def given(value: Any) -> bool:
    """A value that counts as filled in: neither missing (None) nor the empty string."""
    return value is not None and value != ""


def dig(value: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``threads.0.posts.0.body``: keys and list indices), or None."""
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def unflatten(values: Mapping[str, Any], names: Iterable[str], *, nested: bool = True) -> dict[str, Any]:
    """A body (or one participant) from a form's flat values: each of ``names`` whose text is not blank,
    stripped; blank ones are left out.

    A dotted name (``messaging_binding.address``) becomes nested objects, unless ``nested`` is False (a
    provider whose keys hold dots, such as Twilio's ``Timers.Inactive``).
    """
    body: dict[str, Any] = {}
    for name in names:
        raw = values.get(name)
        value = raw.strip() if isinstance(raw, str) else ""
        if not value:
            continue
        *parents, last = name.split(".") if nested else [name]
        target = body
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return body


def flatten(
    body: Any,
    names: Iterable[str],
    *,
    text: Callable[[Any], str] = str,
    present: Callable[[Any], bool] = given,
    blank: bool = False,
    nested: bool = True,
) -> dict[str, str]:
    """The inverse of :func:`unflatten`: a form's flat values from a body (for "duplicate as new").

    Each of ``names`` (dotted: see :func:`dig`, unless ``nested`` is False) whose value is ``present``,
    as ``text``; with ``blank`` every name, "" for those not present.
    """
    values = {}
    for name in names:
        value = dig(body, name) if nested else (body.get(name) if isinstance(body, Mapping) else None)
        if present(value):
            values[name] = text(value)
        elif blank:
            values[name] = ""
    return values


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """``host`` is one of ``allowed``: exact names or IPs, or ``*.example.com`` for any name under it."""
    host = host.lower().strip("[]")
    for pattern in allowed:
        pattern = pattern.strip().lower().strip("[]")
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return True
        if host == pattern:
            return True
    return False


def check_base_url(
    value: str, path: str = "base_url", hosts: Iterable[str] = (), extra_hosts: Iterable[str] = ()
) -> list[FieldError]:
    """A URL a secret is sent to: scheme + host (+ port) only, on an allowed host.

    Allowed: the provider's own ``hosts``, the operator's ``extra_hosts`` (``PROVIDER_EXTRA_HOSTS``),
    and loopback (the sandbox, local fakes), which alone may use plain ``http://``. Private,
    link-local and metadata addresses are refused unless the operator lists them.
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return [FieldError(path, "Enter a URL such as https://api.example.com.")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [FieldError(path, "Enter a URL such as https://api.example.com.")]
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return [
            FieldError(
                path, "Give only the scheme and host (no path, query or user), e.g. https://api.example.com."
            )
        ]
    host = parts.hostname
    if is_loopback(host):
        return []
    if parts.scheme == "http":
        return [
            FieldError(path, "Use https://; plain http:// is allowed only for 127.0.0.1, localhost or [::1].")
        ]
    hosts, extra_hosts = tuple(hosts), tuple(extra_hosts)
    if host_allowed(host, extra_hosts):
        return []
    ip = _ip(host)
    if ip is not None and not ip.is_global:  # private, link-local (cloud metadata), shared, reserved
        return [
            FieldError(
                path,
                f"{host} is a private, link-local or metadata address: a secret is never sent there unless "
                "the operator lists it in PROVIDER_EXTRA_HOSTS.",
            )
        ]
    if not host_allowed(host, hosts):
        shown = ", ".join(hosts[:3]) + (", …" if len(hosts) > 3 else "")
        return [
            FieldError(
                path,
                f"{host} is not a host of this provider ({shown}). Other hosts must be listed by the "
                "operator in PROVIDER_EXTRA_HOSTS; 127.0.0.1 or localhost (the sandbox) is always allowed.",
            )
        ]
    return []


def base_url(credential: Credential, default: str, key: str = "base_url") -> str:
    """The credential's base URL override (validated at parse time) or the provider's default."""
    return (credential.settings.get(key) or default).rstrip("/")


def require_fields(
    data: Mapping[str, Any],
    fields: list[Field],
    provider: str,
    url_hosts: Mapping[str, tuple[str, ...]] | None = None,
    extra_hosts: Iterable[str] = (),
) -> Credential:
    """Split a credential mapping into settings and secrets, checking required fields and URLs.

    ``url_hosts`` maps each URL setting the provider takes (``base_url``, ``login_url``) to its own
    hosts; ``extra_hosts`` are the operator's additions. Raises :class:`InvalidCredential` listing
    every problem. Unknown keys are ignored (keystore files carry extra fields).
    """
    errors: list[FieldError] = []
    settings: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for f in fields:
        raw = data.get(f.name)
        value = raw.strip() if isinstance(raw, str) else raw
        if value in (None, ""):
            if f.required:
                errors.append(FieldError(f.name, f"{f.label} is required."))
            continue
        if not isinstance(value, str):
            errors.append(FieldError(f.name, f"{f.label} must be text."))
            continue
        (secrets if f.secret else settings)[f.name] = value
    for name, hosts in (url_hosts or {}).items():
        value = data.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            errors.append(FieldError(name, f"{name} must be text."))
            continue
        errors += check_base_url(value.strip(), name, hosts, extra_hosts)
        settings[name] = value.strip().rstrip("/")
    if errors:
        raise InvalidCredential(errors)
    return Credential(provider=provider, settings=settings, secrets=secrets)


def error_text(value: Any, limit: int = 500) -> str:
    """A provider's error message made safe to show: one string, bounded length."""
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    text = str(value or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- values every provider refuses, and what can be stored ----------------------------------------

#: Deeper nesting than any documented body needs; checked without recursion, so no RecursionError.
MAX_DEPTH = 32
DEEP_MESSAGE = f"Nested more than {MAX_DEPTH} levels deep; flatten it."
#: Text PostgreSQL cannot store (NUL in text and jsonb) or that is not Unicode (a lone UTF-16 surrogate).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with NUL and lone surrogates written out visibly (``\\u0000``, ``\\ud800``)."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _storable_scalar(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": no JSON number, kept visible as text
    return value


def storable(value: Any) -> Any:
    """A copy of the JSON-like ``value`` that PostgreSQL can store: call it before saving a provider's reply.

    NUL characters and lone surrogates (in values and keys) become visible escapes (``\\u0000``), NaN and
    Infinity become text. Iterative, so any depth works.
    """
    if not isinstance(value, Mapping | list | tuple):
        return _storable_scalar(value)
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, Mapping) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, item in items:
            if isinstance(item, Mapping | list | tuple):
                child: Any = {} if isinstance(item, Mapping) else []
                stack.append((item, child))
            else:
                child = _storable_scalar(item)
            if isinstance(target, dict):
                target[storable_text(key) if isinstance(key, str) else key] = child
            else:
                target.append(child)
    return root


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent and stored, or None."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "Contains a NUL character (\\u0000), which cannot be stored; remove it."
    return (
        f"Contains a lone surrogate ({storable_text(match.group())}), which is not valid Unicode text; "
        "remove it or give the complete character."
    )


def value_errors(value: Any, path: str = "", *, max_depth: int = MAX_DEPTH) -> list[FieldError]:
    """The rules every provider applies to every value of a body before its own, keyed by dotted path.

    Text must be storable (no NUL, no lone surrogate), numbers finite (NaN and Infinity are not JSON),
    nesting at most ``max_depth`` levels. Never raises (no recursion), whatever the input.
    """
    errors: list[FieldError] = []
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        at = where or "body"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                errors.append(FieldError(at, problem))
        elif isinstance(item, float) and not math.isfinite(item):
            errors.append(FieldError(at, "NaN and Infinity are not JSON numbers; give a finite number."))
        elif isinstance(item, Mapping | list | tuple):
            if depth >= max_depth:
                errors.append(FieldError(at, f"Nested more than {max_depth} levels deep; flatten it."))
                continue
            items = list(item.items()) if isinstance(item, Mapping) else list(enumerate(item))
            for key, sub in reversed(items):
                name = storable_text(str(key))
                if isinstance(key, str) and text_problem(key):
                    errors.append(FieldError(at, f"The field name “{name}”: {text_problem(key)}"))
                stack.append((sub, f"{where}.{name}" if where else name, depth + 1))
    return errors


def too_deep(errors: list[FieldError]) -> bool:
    """Whether :func:`value_errors` found a body nested too deeply for a provider's own rules to walk."""
    return any(e.message == DEEP_MESSAGE for e in errors)


def request_method(response: httpx.Response) -> str:
    """The method of the request ``response`` answers ("" for a response built without one)."""
    try:
        return response.request.method
    except RuntimeError:
        return ""


def unique_errors(errors: list[FieldError]) -> list[FieldError]:
    """``errors`` without repeats (a rule reached twice), in order."""
    return list(dict.fromkeys(errors))


def reply_leaves_outcome_unknown(status: int) -> bool:
    """Whether a create whose reply (with this status) is not a readable success may have created something.

    A 4xx is a refusal (or a 429 before processing): nothing was created. A 5xx may come after the work
    was done, and a 1xx/2xx/3xx that is not a readable success is a malformed reply: both unknown.
    """
    return not 400 <= status < 500
