"""Every provider call about a conversation: create, retry, check with the provider, refresh, preview.

The record is saved as ``pending`` and committed before the provider is called; the call runs outside
any transaction; its outcome, every HTTP exchange and the audit event are then written together. Views
and commands call these functions and never touch httpx or decrypted secrets themselves.
"""

from __future__ import annotations

import json
import logging
import shlex
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

import providers
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials import calls
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.models import Credential
from convadmin.exchanges.services import save_exchanges
from providers.base import Created, FieldError, ProviderError
from providers.base import Credential as ProviderCredential
from providers.http import USER_AGENT, Http
from providers.redact import MASK, redact_body, redact_data, redact_headers, redact_text

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


# --- helpers ------------------------------------------------------------------------------------


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


def may_exist(conversation: Conversation) -> bool:
    """A failure after which the conversation may exist anyway (timeout, 5xx, unknown outcome)."""
    return (
        conversation.outcome_unknown
        or (conversation.error_status or 0) >= 500
        or conversation.error_code in ("timeout", "transport_error", "internal_error")
    )


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
    if conversation.error_code == "timeout":
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
    response = conversation.response_body if isinstance(conversation.response_body, dict) else {}
    if conversation.error_status == 429 or code in RATE_LIMIT_CODES:
        wait = response.get("retry_after")
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


def can_check_with_provider(conversation: Conversation) -> bool:
    """Pending (the process died) or outcome unknown, and the provider can look it up."""
    unsettled = conversation.status == Status.PENDING or (
        conversation.status == Status.FAILED and conversation.outcome_unknown
    )
    return unsettled and natural_key(conversation) is not None


def in_flight(conversation: Conversation) -> bool:
    """A pending record young enough that its create call may still be running."""
    limit = 4 * (settings.PROVIDER_TIMEOUT + settings.PROVIDER_CONNECT_TIMEOUT)
    return (
        conversation.status == Status.PENDING
        and conversation.created_at is not None
        and timezone.now() - conversation.created_at < timedelta(seconds=limit)
    )


def _scrub(value: Any, secrets: set[str]) -> Any:
    """A provider's JSON made safe to store: secret keys and known secret values masked."""
    if not secrets:
        return redact_data(value)
    text = redact_text(json.dumps(redact_data(value), ensure_ascii=False), secrets)
    try:
        return json.loads(text)
    except ValueError:
        return redact_data(value)


@dataclass
class _Calls:
    """The exchanges of one provider session, batched by purpose, and the secrets it learnt."""

    http: Http | None = None
    batches: list[tuple[str, list[Any]]] = field(default_factory=list)
    acting_user: Any = None  # named in the audit event of a token the provider rotates
    ip: str | None = None
    secrets: set[str] = field(default_factory=set)

    def take(self, purpose: str) -> None:
        if self.http is None:
            return
        self.secrets |= self.http.secrets
        if self.http.exchanges:
            self.batches.append((purpose, list(self.http.exchanges)))
            self.http.exchanges.clear()

    @property
    def sent(self) -> bool:
        return any(purpose == "create" for purpose, _ in self.batches)

    def store(self, credential: Credential, conversation: Conversation | None) -> None:
        """Save every exchange (call inside the transaction that saves the outcome)."""
        for purpose, records in self.batches:
            save_exchanges(records, credential=credential, purpose=purpose, conversation=conversation)
        self.batches.clear()


@contextmanager
def _session(credential: Credential, tracker: _Calls) -> Iterator[ProviderCredential]:
    with calls.provider_session(credential, acting_user=tracker.acting_user, ip=tracker.ip) as (
        provider_credential,
        http,
    ):
        tracker.http = http
        yield provider_credential


def _http(tracker: _Calls) -> Http:
    assert tracker.http is not None
    return tracker.http


# --- create -------------------------------------------------------------------------------------


def do_create_conversation(
    body: Mapping[str, Any],
    *,
    credential: Credential,
    acting_user: Any,
    idempotency_key: uuid.UUID | str | None = None,
    retry_of: Conversation | None = None,
    ip: str | None = None,
) -> Conversation:
    """Validate, save as pending (committed), call the provider, then save the outcome.

    Raises :class:`ValidationFailed` (nothing saved, nothing sent). A provider refusal is not an
    exception: the record comes back ``failed`` with the provider's message, code and status. A
    repeated ``idempotency_key`` with the same body returns the first record without calling the
    provider again (its ``replayed`` attribute is then True); with another body it raises
    :class:`KeyReused`.
    """
    errors = validate_body(body, credential)
    if errors:
        raise ValidationFailed(errors)
    module = providers.get(credential.provider)
    prepared = module.prepare(body, public_credential(credential))
    if idempotency_key:
        existing = Conversation.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replayed(existing, body, credential)
    summary = module.summarize(prepared)
    try:
        with transaction.atomic(durable=True):
            conversation = Conversation.objects.create(
                provider=credential.provider,
                credential=credential,
                created_by=acting_user,
                status=Status.PENDING,
                name=summary.name[:512],
                participants=summary.participants,
                request_body=prepared,
                idempotency_key=idempotency_key or None,
                retry_of=retry_of,
            )
            extra = {
                "provider": credential.provider,
                "credential": credential.label,
                "participants": len(summary.participants),
            }
            if retry_of is not None:
                extra["retry_of"] = retry_of.pk
                record(
                    EventType.CONVERSATION_RETRIED,
                    actor=acting_user,
                    target=retry_of,
                    ip=ip,
                    extra={"new_attempt": conversation.pk},
                )
            record(
                EventType.CONVERSATION_REQUESTED, actor=acting_user, target=conversation, ip=ip, extra=extra
            )
    except IntegrityError:
        existing = (
            Conversation.objects.filter(idempotency_key=idempotency_key).first() if idempotency_key else None
        )
        if existing is None:
            raise
        return _replayed(
            existing, body, credential
        )  # submitted twice at once: the other request made the call
    return _call_create(conversation, credential, acting_user=acting_user, ip=ip)


def same_request(existing: Conversation, body: Mapping[str, Any], credential: Credential) -> bool:
    """Would ``body`` with ``credential`` send what ``existing`` sent? (values ``prepare`` generates are
    taken from ``existing``, so a double submit of a Mixin group without an id still matches)."""
    if existing.credential_id != credential.pk or not isinstance(existing.request_body, dict):
        return False
    module = providers.get(credential.provider)
    body = dict(body)
    for key in module.GENERATED:
        if not body.get(key) and existing.request_body.get(key):
            body[key] = existing.request_body[key]
    return module.prepare(body, public_credential(credential)) == existing.request_body


def _replayed(existing: Conversation, body: Mapping[str, Any], credential: Credential) -> Conversation:
    if not same_request(existing, body, credential):
        raise KeyReused(existing)
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


def is_empty(body: Mapping[str, Any], credential: Credential) -> bool:
    """A valid body that names nothing: no name and no participant (Twilio allows it; people rarely mean it)."""
    module = providers.get(credential.provider)
    summary = module.summarize(module.prepare(body, public_credential(credential)))
    return not summary.name and not summary.participants


def _call_create(
    conversation: Conversation, credential: Credential, *, acting_user: Any, ip: str | None
) -> Conversation:
    module = providers.get(credential.provider)
    body = conversation.request_body
    tracker = _Calls(acting_user=acting_user, ip=ip)
    outcome: Created | None = None
    error: ProviderError | None = None
    lookup: dict[str, str] = {}
    phase = "create"
    try:
        with _session(credential, tracker) as provider_credential:
            try:
                outcome = module.create(body, provider_credential, _http(tracker))
            except ProviderError as exc:
                error = exc
            tracker.take("create")
            if error is not None and error.outcome_unknown:
                phase = "lookup"
                outcome, lookup = _look_up(module, conversation, provider_credential, _http(tracker))
                tracker.take("lookup")
    except SecretUnreadable as exc:
        error = ProviderError(str(exc), code="secret_unreadable")
    except Exception:
        # A record must never stay pending because of a bug: save it as failed, keep the traceback in the log.
        logger.exception("Creating conversation %s failed unexpectedly", conversation.pk)
        tracker.take(phase)
        outcome, error = None, ProviderError(UNEXPECTED, code="internal_error", outcome_unknown=tracker.sent)
    tracker.take(phase)
    return _save_outcome(
        conversation,
        credential,
        tracker,
        outcome=outcome,
        error=error,
        lookup=lookup,
        acting_user=acting_user,
        ip=ip,
    )


def _look_up(
    module: Any, conversation: Conversation, provider_credential: ProviderCredential, http: Http
) -> tuple[Created | None, dict[str, str]]:
    """After an unknown outcome: the conversation if the provider has it, and what the look-up found."""
    label = providers.NAMES.get(conversation.provider, conversation.provider)
    key = module.NATURAL_KEY
    if natural_key(conversation) is None:
        return None, {
            "result": "impossible",
            "message": f"It cannot be looked up: {label} finds a conversation only by its {key}, and this "
            "request has none. Check at the provider before trying again.",
        }
    try:
        found = module.lookup(conversation.request_body, provider_credential, http)
    except ProviderError as exc:
        return None, {
            "result": "error",
            "message": f"Looking it up at {label} failed too: {exc}. Check with the provider before trying again.",
        }
    if found is None:
        return None, {
            "result": "not_found",
            "message": f"We looked it up at {label} by its {key} and did not find it. It may still appear: "
            "use “Check with provider” on the record before trying again.",
        }
    return found, {"result": "found", "message": f"We looked it up at {label}: it was created."}


def _save_outcome(
    conversation: Conversation,
    credential: Credential,
    tracker: _Calls,
    *,
    outcome: Created | None,
    error: ProviderError | None,
    lookup: dict[str, str],
    acting_user: Any,
    ip: str | None,
) -> Conversation:
    now = timezone.now()
    if outcome is not None:
        _mark_created(conversation, outcome, tracker.secrets)
        if lookup:
            conversation.response_body = {**conversation.response_body, "lookup": lookup}
        event = EventType.CONVERSATION_CREATED
        extra: dict[str, Any] = {
            "external_id": conversation.external_id,
            "status": outcome.status,
            "found_by_lookup": bool(lookup),
        }
    else:
        error = error or ProviderError(UNEXPECTED, code="internal_error", outcome_unknown=True)
        conversation.status = Status.FAILED
        conversation.error_message = redact_text(error.message, tracker.secrets)
        conversation.error_code = (error.code or "")[:64]
        conversation.error_status = error.status
        conversation.outcome_unknown = error.outcome_unknown
        response: dict[str, Any] = {}
        if error.existing_id:
            response["existing_conversation_id"] = error.existing_id
        if error.retry_after is not None:
            response["retry_after"] = error.retry_after
        if lookup:
            response["lookup"] = lookup
        conversation.response_body = response
        event = EventType.CONVERSATION_FAILED
        extra = {
            "error_code": conversation.error_code,
            "error_status": conversation.error_status,
            "outcome_unknown": conversation.outcome_unknown,
            "message": conversation.error_message[:500],
        }
    conversation.completed_at = now
    with transaction.atomic(durable=True):
        conversation.save()
        tracker.store(credential, conversation)
        record(event, actor=acting_user, target=conversation, ip=ip, extra=extra)
    return conversation


def _mark_created(conversation: Conversation, outcome: Created, secrets: set[str]) -> None:
    conversation.status = Status.CREATED
    conversation.external_id = outcome.external_id[:255]
    conversation.response_body = _scrub(outcome.body, secrets)
    conversation.provider_participants = _scrub(outcome.participants, secrets)
    conversation.error_message = conversation.error_code = ""
    conversation.error_status = None
    conversation.outcome_unknown = False


# --- retry and check ----------------------------------------------------------------------------


def _provider_call(
    conversation: Conversation, tracker: _Calls, purpose: str, failure: str, call: Callable[[Any, Http], Any]
) -> Any:
    """One provider read for a record; ProviderError and SecretUnreadable become CallFailed."""
    try:
        with _session(conversation.credential, tracker) as provider_credential:
            try:
                return call(provider_credential, _http(tracker))
            finally:
                tracker.take(purpose)
    except SecretUnreadable as exc:
        raise CallFailed(str(exc), code="secret_unreadable") from None
    except ProviderError as exc:
        raise CallFailed(
            f"{failure}: {redact_text(str(exc), tracker.secrets)}", code=exc.code, status=exc.status
        ) from None


def _lookup_call(conversation: Conversation, tracker: _Calls) -> Created | None:
    """``lookup`` by the record's natural key."""
    module = providers.get(conversation.provider)
    return _provider_call(
        conversation,
        tracker,
        "lookup",
        "Could not look the conversation up",
        lambda credential, http: module.lookup(conversation.request_body, credential, http),
    )


def _store_failed_action(
    conversation: Conversation,
    tracker: _Calls,
    error: CallFailed,
    *,
    action: str,
    acting_user: Any,
    ip: str | None,
) -> None:
    with transaction.atomic(durable=True):
        tracker.store(conversation.credential, conversation)
        record(
            EventType.CONVERSATION_REFRESHED,
            actor=acting_user,
            target=conversation,
            ip=ip,
            extra={"action": action, "ok": False, "error": str(error)[:500], "error_code": error.code},
        )


def _found(
    conversation: Conversation,
    found: Created,
    tracker: _Calls,
    *,
    action: str,
    event: EventType,
    acting_user: Any,
    ip: str | None,
) -> Conversation:
    previous = {"status": conversation.status, "error_code": conversation.error_code}
    _mark_created(conversation, found, tracker.secrets)
    extra = {"action": action, "found_by_lookup": True, "external_id": conversation.external_id}
    return _save_lookup_outcome(
        conversation, tracker, "found", event, {**extra, "previous": previous}, acting_user=acting_user, ip=ip
    )


def _save_lookup_outcome(
    conversation: Conversation,
    tracker: _Calls,
    result: str,
    event: EventType,
    extra: dict[str, Any],
    *,
    acting_user: Any,
    ip: str | None,
) -> Conversation:
    """Note what the lookup found, then save the record, its exchanges and the audit row together."""
    message = "Found at the provider" if result == "found" else "Not found at the provider"
    conversation.response_body = {
        **conversation.response_body,
        "lookup": {"result": result, "message": f"{message} by its natural key."},
    }
    conversation.completed_at = conversation.completed_at or timezone.now()
    with transaction.atomic(durable=True):
        conversation.save()
        tracker.store(conversation.credential, conversation)
        record(event, actor=acting_user, target=conversation, ip=ip, extra=extra)
    return conversation


def _settle_by_lookup(
    conversation: Conversation,
    tracker: _Calls,
    *,
    action: str,
    event: EventType,
    acting_user: Any,
    ip: str | None,
) -> Conversation | None:
    """Look the conversation up by its natural key: marked created and returned if found, else None."""
    try:
        found = _lookup_call(conversation, tracker)
    except CallFailed as exc:
        _store_failed_action(conversation, tracker, exc, action=action, acting_user=acting_user, ip=ip)
        raise
    if found is None:
        return None
    return _found(conversation, found, tracker, action=action, event=event, acting_user=acting_user, ip=ip)


def do_retry_conversation(
    conversation: Conversation, *, acting_user: Any, ip: str | None = None
) -> Conversation:
    """Try a failed create again, without ever creating it twice.

    When the failure may have created it anyway (unknown outcome, 5xx, timeout), the provider is asked
    first: if it has the conversation, the ORIGINAL record becomes ``created``. Otherwise a new attempt,
    linked by ``retry_of``, sends the same prepared body (same natural key, e.g. Mixin conversation_id).
    """
    if conversation.status != Status.FAILED:
        raise ActionRefused("Only a failed conversation can be retried.")
    if conversation.credential.disabled:
        raise ActionRefused(f"The credential “{conversation.credential.label}” is disabled.")
    later = conversation.retries.exclude(status=Status.FAILED).first()
    if later is not None:
        raise ActionRefused(f"This conversation was already retried: see record {later.pk}.")
    if may_exist(conversation):
        if natural_key(conversation) is None:
            label = providers.NAMES.get(conversation.provider, conversation.provider)
            raise ActionRefused(
                f"{label} may have created this conversation, and it cannot be looked up without a "
                f"{providers.get(conversation.provider).NATURAL_KEY}: check at the provider first, then use "
                "“Duplicate as new” if it does not exist."
            )
        tracker = _Calls(acting_user=acting_user, ip=ip)
        settled = _settle_by_lookup(
            conversation,
            tracker,
            action="retry",
            event=EventType.CONVERSATION_CREATED,
            acting_user=acting_user,
            ip=ip,
        )
        if settled is not None:
            return settled
        with transaction.atomic(durable=True):
            tracker.store(conversation.credential, conversation)
    try:
        return do_create_conversation(
            conversation.request_body,
            credential=conversation.credential,
            acting_user=acting_user,
            retry_of=conversation,
            ip=ip,
        )
    except ValidationFailed as exc:  # a disabled credential, or rules that changed since the first attempt
        raise ActionRefused(f"It cannot be sent again as it is: {exc}. Use “Duplicate as new”.") from None


def do_check_with_provider(
    conversation: Conversation, *, acting_user: Any, ip: str | None = None
) -> Conversation:
    """Settle a pending (the process died) or outcome-unknown record by looking it up at the provider."""
    if not (
        conversation.status == Status.PENDING
        or (conversation.status == Status.FAILED and conversation.outcome_unknown)
    ):
        raise ActionRefused("Only a pending conversation, or one whose outcome is unknown, can be checked.")
    if in_flight(conversation):
        raise ActionRefused("This conversation is still being created; check again in a minute.")
    if natural_key(conversation) is None:
        label = providers.NAMES.get(conversation.provider, conversation.provider)
        raise ActionRefused(
            f"{label} can look a conversation up only by its {providers.get(conversation.provider).NATURAL_KEY}, "
            "and this one has none: check at the provider."
        )
    tracker = _Calls(acting_user=acting_user, ip=ip)
    settled = _settle_by_lookup(
        conversation,
        tracker,
        action="check",
        event=EventType.CONVERSATION_REFRESHED,
        acting_user=acting_user,
        ip=ip,
    )
    if settled is not None:
        return settled
    previous = {"status": conversation.status, "error_code": conversation.error_code}
    label = providers.NAMES.get(conversation.provider, conversation.provider)
    earlier = f" (the first attempt said: {conversation.error_message})" if conversation.error_message else ""
    conversation.status = Status.FAILED
    conversation.error_message = (
        f"Not found at the provider: {label} has no conversation with this "
        f"{providers.get(conversation.provider).NATURAL_KEY}{earlier}. Nothing was created; it can be retried."
    )
    conversation.error_code = "not_found"
    conversation.error_status = None
    conversation.outcome_unknown = False
    return _save_lookup_outcome(
        conversation,
        tracker,
        "not_found",
        EventType.CONVERSATION_REFRESHED,
        {"action": "check", "found_by_lookup": False, "previous": previous},
        acting_user=acting_user,
        ip=ip,
    )


# --- refresh ------------------------------------------------------------------------------------

VOLATILE = {"date_updated", "dateUpdated", "updated_at", "url", "links"}


def dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def participant_key(participant: Any, paths: tuple[str, ...]) -> str:
    """What identifies a participant across two reads: the first of the provider's ``paths`` it has."""
    for path in paths:
        value = dig(participant, path)
        if isinstance(value, str) and value:
            return value.lower() if "@" in value else value
    return json.dumps(participant, sort_keys=True, default=str)


def participant_differences(
    previous: list[Any], current: list[Any], paths: tuple[str, ...]
) -> dict[str, Any]:
    """Participants added, removed and changed (field by field) between two reads; ``paths`` identify one."""
    before = {participant_key(p, paths): p for p in previous}
    after = {participant_key(p, paths): p for p in current}
    changed = []
    for key in before.keys() & after.keys():
        old, new = before[key], after[key]
        if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
            continue
        fields = {
            name: {"before": old.get(name), "after": new.get(name)}
            for name in sorted(old.keys() | new.keys())
            if name not in VOLATILE and old.get(name) != new.get(name)
        }
        if fields:
            changed.append({"participant": key, "fields": fields})
    return {
        "added": [after[k] for k in after if k not in before],
        "removed": [before[k] for k in before if k not in after],
        "changed": sorted(changed, key=lambda c: c["participant"]),
    }


def do_refresh_conversation(
    conversation: Conversation, *, acting_user: Any, ip: str | None = None
) -> dict[str, Any]:
    """Read the conversation back from the provider; store its participants; return what changed.

    Returns ``{"added", "removed", "changed", "previous", "current", "previous_refreshed_at",
    "conversation"}``. Raises :class:`CallFailed` when the provider cannot answer (the exchanges are
    stored and the failed attempt audited).
    """
    if conversation.status != Status.CREATED or not conversation.external_id:
        raise ActionRefused("Only a created conversation can be refreshed from the provider.")
    module = providers.get(conversation.provider)
    body = conversation.request_body if isinstance(conversation.request_body, dict) else {}
    tracker = _Calls(acting_user=acting_user, ip=ip)
    try:
        fetched = _provider_call(
            conversation,
            tracker,
            "refresh",
            "The provider could not be read",
            lambda credential, http: module.fetch(conversation.external_id, credential, http, body),
        )
    except CallFailed as exc:
        _store_failed_action(conversation, tracker, exc, action="refresh", acting_user=acting_user, ip=ip)
        raise
    previous = list(conversation.provider_participants or [])
    previous_refreshed_at = conversation.refreshed_at
    current = _scrub(fetched.participants, tracker.secrets)
    paths = module.PARTICIPANT_IDENTITY
    differences = participant_differences(previous, current, paths)
    conversation.provider_participants = current
    conversation.refreshed_at = timezone.now()
    with transaction.atomic(durable=True):
        conversation.save(update_fields=["provider_participants", "refreshed_at"])
        tracker.store(conversation.credential, conversation)
        record(
            EventType.CONVERSATION_REFRESHED,
            actor=acting_user,
            target=conversation,
            ip=ip,
            extra={
                "action": "refresh",
                "ok": True,
                "participants": len(current),
                "added": [participant_key(p, paths) for p in differences["added"]][:50],
                "removed": [participant_key(p, paths) for p in differences["removed"]][:50],
                "changed": [c["participant"] for c in differences["changed"]][:50],
            },
        )
    return {
        **differences,
        "previous": previous,
        "current": current,
        "previous_refreshed_at": previous_refreshed_at,
        "conversation": _scrub(fetched.conversation, tracker.secrets),
    }


# --- preview ------------------------------------------------------------------------------------

CURL_SKIPPED_HEADERS = {"authorization", "host", "content-length", "user-agent"}


@dataclass
class Preview:
    method: str
    url: str
    headers: dict[str, str]
    body: str
    body_display: str
    curl: str
    curl_note: str


def _display_body(body: str, content_type: str) -> str:
    if "x-www-form-urlencoded" in content_type:
        return "\n".join(f"{key} = {value}" for key, value in parse_qsl(body, keep_blank_values=True))
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def preview_request(body: Mapping[str, Any], credential: Credential) -> Preview:
    """The exact create request, redacted, and a curl command with ``$ENV`` placeholders for secrets.

    Builds the request the provider module would send (no network call). Raises
    :class:`ValidationFailed` for an invalid body and :class:`CallFailed` when the secret is unreadable.
    """
    errors = validate_body(body, credential)
    if errors:
        raise ValidationFailed(errors)
    module = providers.get(credential.provider)
    prepared = module.prepare(body, public_credential(credential))
    try:
        provider_credential = credential.to_provider()
    except SecretUnreadable as exc:
        raise CallFailed(str(exc), code="secret_unreadable") from None
    request = module.build_request(prepared, provider_credential)
    request.headers.setdefault("User-Agent", USER_AGENT)
    secrets = provider_credential.secret_values()
    token = request.headers.get("authorization", "").partition(" ")[2]
    if token and not token.startswith("$"):  # a signed JWT or Basic pair; Graph's preview has a placeholder
        secrets.append(token)
    content_type = request.headers.get("content-type", "")
    raw_body = request.content.decode("utf-8", "replace")
    shown_body = redact_body(request.content, content_type, secrets)
    if MASK not in shown_body:
        shown_body = redact_text(raw_body, secrets)  # nothing masked: show the bytes as sent, not re-encoded
    header_items = [(name.decode(), value.decode()) for name, value in request.headers.raw]
    headers = redact_headers(header_items, secrets)
    auth_arg, note = module.curl_auth(credential.settings)
    lines = [f"curl -sS -X {request.method} {shlex.quote(str(request.url))}"]
    for name, value in header_items:
        if name.lower() == "authorization":
            lines.append(auth_arg)
        elif name.lower() not in CURL_SKIPPED_HEADERS:
            lines.append(f"-H {shlex.quote(f'{name}: {value}')}")
    if raw_body:
        lines.append(f"--data-binary {shlex.quote(raw_body)}")
    curl = redact_text(" \\\n  ".join(lines), secrets)
    return Preview(
        method=request.method,
        url=redact_text(str(request.url), secrets),
        headers=headers,
        body=shown_body,
        body_display=redact_text(_display_body(raw_body, content_type), secrets),
        curl=curl,
        curl_note=note,
    )
