"""What every provider call about a record shares: errors, validation, the session, the look-up vocabulary,
the advice after a failure, and saving that survives a lost database connection."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings

import providers
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials import calls
from convadmin.credentials.models import Credential
from convadmin.exchanges.services import save_exchanges
from providers.base import Credential as ProviderCredential
from providers.base import FieldError, storable
from providers.http import Http
from providers.redact import redact_data, redact_text

logger = logging.getLogger("convadmin.conversations")

UNEXPECTED = (
    "Something went wrong on our side while talking to the provider; the details are in the server log. "
    "Use “Check with provider” on this record before trying again."
)


class ValidationFailed(Exception):
    """The body (or the credential) breaks a rule; nothing was saved or sent.

    ``errors`` maps field paths (``participants.3.user_id``, ``topic``, ``credential``) to messages.
    """

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items()))


class KeyReused(ValidationFailed):
    """The create key already made a record from a different body (or credential); nothing was sent.

    ``existing`` is that record. The same key with the same body is a double submit instead: it
    returns the first record.
    """

    def __init__(self, existing: Conversation):
        self.existing = existing
        super().__init__(
            {
                "idempotency_key": [
                    f"This create key was already used for record {existing.pk} "
                    f"({existing.get_status_display().lower()}), with a different body or credential. "
                    "Nothing was sent: use a new key to create another conversation."
                ]
            }
        )


class ActionRefused(Exception):
    """The action does not apply to the record as it is now (e.g. retrying a created conversation)."""


class CallFailed(Exception):
    """The provider could not answer; ``str()`` is a message for the page (the exchanges are stored)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class Lookup(StrEnum):
    """What a look-up by the natural key found: the one vocabulary of ``Conversation.lookup["result"]``."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"  # conversations it cannot tell apart from this one: a person checks
    IMPOSSIBLE = "impossible"  # the request has no key the provider can be asked about
    ERROR = "error"  # the look-up itself failed


def public_credential(credential: Credential) -> ProviderCredential:
    """The credential's non-secret settings only: enough to validate and prepare, nothing decrypted."""
    return ProviderCredential(provider=credential.provider, settings=dict(credential.settings))


def errors_by_path(errors: list[FieldError]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for error in errors:
        messages = out.setdefault(error.path, [])
        if error.message not in messages:
            messages.append(error.message)
    return out


def validate_body(body: Any, credential: Credential) -> dict[str, list[str]]:
    """The provider's own rules for ``body`` with this credential's settings (empty: valid)."""
    if credential.disabled:
        return {
            "credential": [
                f"The credential “{credential.label}” is disabled: choose another one or ask an administrator."
            ]
        }
    module = providers.get(credential.provider)
    return errors_by_path(module.validate(body, public_credential(credential)))


def natural_key(conversation: Conversation) -> str | None:
    """The value the provider can find this conversation by after an unknown outcome, if any."""
    key = providers.get(conversation.provider).NATURAL_KEY
    value = (
        conversation.request_body.get(key) if key and isinstance(conversation.request_body, dict) else None
    )
    return value if isinstance(value, str) and value else None


def natural_key_name(conversation: Conversation) -> str:
    return providers.get(conversation.provider).NATURAL_KEY or "id"


def may_exist(conversation: Conversation) -> bool:
    """A failure after which the conversation may exist anyway (timeout, 5xx, unknown outcome)."""
    return (
        conversation.outcome_unknown
        or (conversation.error_status or 0) >= 500
        or conversation.error_code in ("timeout", "transport_error", "internal_error", "deadline")
    )


def lease() -> timedelta:
    """How long a job holds a record: a create's session and a look-up's, each bounded by the deadline."""
    return timedelta(seconds=2 * settings.PROVIDER_DEADLINE + 30)


def scrub(value: Any, secrets: set[str]) -> Any:
    """A provider's JSON made safe to store: secret keys and known secret values masked, and text that
    PostgreSQL cannot store (NUL, lone surrogates) escaped."""
    value = storable(redact_data(value))
    if not secrets:
        return value
    text = redact_text(json.dumps(value, ensure_ascii=False), secrets)
    try:
        return json.loads(text)
    except ValueError:
        return value


@dataclass
class Session:
    """One provider session for a record: its ``Http`` (every exchange tagged with its purpose) and who
    made the call (named in the audit event of a token the provider rotates)."""

    acting_user: Any = None
    ip: str | None = None
    http: Http | None = None
    secrets: set[str] = field(default_factory=set)

    @contextmanager
    def open(self, credential: Credential, purpose: str) -> Iterator[tuple[ProviderCredential, Http]]:
        with calls.provider_session(
            credential, acting_user=self.acting_user, ip=self.ip, purpose=purpose
        ) as (provider_credential, http):
            self.http = http
            try:
                yield provider_credential, http
            finally:
                self.secrets |= http.secrets

    @property
    def sent(self) -> bool:
        """A create request went out (its outcome may be unknown)."""
        return any(e.purpose == "create" for e in self.exchanges)

    @property
    def exchanges(self) -> list[Any]:
        return list(self.http.exchanges) if self.http else []

    def store(self, credential: Credential, conversation: Conversation | None) -> None:
        """Save every exchange (call inside the transaction that saves the outcome)."""
        save_exchanges(self.exchanges, credential=credential, conversation=conversation)
        if self.http:
            self.http = None  # saved once: a second store of the same session saves nothing


# --- advice after a failure -------------------------------------------------------------------------

#: Error codes (as stored) that mean "too many requests"; Mixin says 429 in the body of an HTTP 202.
RATE_LIMIT_CODES = {"429", "20429", "rate_limited", "daily_limit", "TooManyRequests"}
UNREADABLE_CODES = {"malformed", "bad_reply", "bad_response", "no_id"}
UNREACHABLE_CODES = {"connect_error", "connect_timeout"}


@dataclass(frozen=True)
class Advice:
    """What to do after a failed create: ``kind`` is wait, check, unreachable, credential or fix."""

    kind: str
    text: str
    wait_seconds: int | None = None


def unknown_reason(conversation: Conversation) -> str:
    """Why the outcome is unclear, in words that match what happened (not always a timeout)."""
    label = conversation.provider_label
    status = conversation.error_status or 0
    if conversation.error_code in ("timeout", "deadline"):
        return f"{label} did not answer in time"
    if conversation.error_code == "transport_error":
        return f"The connection to {label} broke during the call"
    if conversation.error_code == "internal_error":
        return "Something went wrong on our side during the call"
    if status >= 500:
        return f"{label} answered with a server error (HTTP {status})"
    return f"{label} sent a reply that could not be read"


def failure_advice(conversation: Conversation) -> Advice | None:
    """The next step after a failed create, by the kind of failure (None unless it failed)."""
    if conversation.status != Status.FAILED:
        return None
    label = conversation.provider_label
    code = conversation.error_code
    if conversation.error_status == 429 or code in RATE_LIMIT_CODES:
        wait = conversation.retry_after
        seconds = max(1, round(wait)) if isinstance(wait, int | float) else None
        when = f"{seconds} second{'s' if seconds != 1 else ''}" if seconds else "a minute"
        return Advice(
            "wait",
            f"{label} is limiting requests and created nothing. Wait {when}, then create again.",
            seconds,
        )
    if may_exist(conversation) or code in UNREADABLE_CODES:
        reason = unknown_reason(conversation)
        if natural_key(conversation) is None:
            step = f"Do not send it again until you have checked in the {label} console whether it exists."
        else:
            step = "Do not send it again yet: open the record and use “Check with provider” first."
        return Advice("check", f"{reason}: it may or may not have created the conversation. {step}")
    if code in UNREACHABLE_CODES:
        return Advice(
            "unreachable",
            f"Nothing reached {label}, so nothing was created. Try again in a moment; if it keeps "
            "failing, ask an administrator to check the credential's address.",
        )
    if conversation.error_status == 401 or code == "secret_unreadable":
        return Advice(
            "credential",
            f"{label} did not accept the credential “{conversation.credential.label}”: ask an administrator "
            "to check it, then create again.",
        )
    return Advice("fix", "Fix what the message says in the fields above, then create again.")


def body_of(conversation: Conversation) -> Mapping[str, Any]:
    return conversation.request_body if isinstance(conversation.request_body, dict) else {}
