"""The shared vocabulary of every provider module: credentials, results, errors.

Plain Python on purpose (no Django): a provider can be used from a shell, a script or the sandbox.
Each provider module (``mixin``, ``twilio``, ``highlevel``, ``msgraph``) exposes the same functions,
described by :class:`Provider` below.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
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

    def __repr__(self) -> str:  # never show secret values, even in a traceback
        return f"Credential(provider={self.provider!r}, settings={self.settings!r}, secrets=<hidden>)"

    def secret_values(self) -> list[str]:
        return [v for v in self.secrets.values() if isinstance(v, str) and v]

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
    NOT_DUPLICATED: tuple[str, ...]  # body keys "duplicate as new" leaves out (generated or unique)
    GENERATED: tuple[
        str, ...
    ]  # body keys ``prepare`` makes afresh when empty (a resubmit reuses the first's)
    SETTING_DEFAULTS: Mapping[str, str]  # body key -> the credential setting that fills it when empty
    KEPT_SECRETS: tuple[str, ...]  # secrets a replacement keeps when left out (obtained by signing in)
    PARTICIPANT_IDENTITY: tuple[str, ...]  # paths that identify a participant across two reads
    SIGN_IN: bool  # a person signs in through the browser (authorize_url / redeem_code)
    KEYSTORE_UPLOAD: bool  # the credential comes as a file the provider's console downloads
    PREVIEW_HINT: str  # one sentence shown under the request preview

    def curl_auth(self, settings: Mapping[str, Any]) -> tuple[str, str]: ...

    def parse_credential(self, data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential: ...
    def validate(self, body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]: ...
    def validate_participant(self, row: Mapping[str, Any], index: int = 0) -> list[FieldError]: ...
    def prepare(self, body: Mapping[str, Any], credential: Credential) -> dict[str, Any]: ...
    def summarize(self, body: Mapping[str, Any]) -> Summary: ...
    def body_from_fields(
        self, fields: Mapping[str, str], participants: list[Mapping[str, str]]
    ) -> dict[str, Any]: ...
    def fields_from_body(self, body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]: ...
    def build_request(self, body: Mapping[str, Any], credential: Credential) -> httpx.Request: ...
    def create(self, body: Mapping[str, Any], credential: Credential, http: Http) -> Created: ...
    def lookup(self, body: Mapping[str, Any], credential: Credential, http: Http) -> Created | None: ...
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
    "NOT_DUPLICATED": (),
    "GENERATED": (),
    "SETTING_DEFAULTS": {},
    "URL_HOSTS": {"base_url": ()},
    "KEPT_SECRETS": (),
    "PARTICIPANT_IDENTITY": ("id",),
    "SIGN_IN": False,
    "KEYSTORE_UPLOAD": False,
    "PREVIEW_HINT": "",
    "curl_auth": bearer_curl_auth("TOKEN", "the credential's token."),
}


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
