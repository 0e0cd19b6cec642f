"""Create a conversation exactly once: the record is saved as pending with its job in one transaction; the
job claims the record, calls the provider within a deadline, and settles it — by look-up whenever the outcome
is unknown or an earlier attempt may have sent it. Retry and "Check with provider" use the same steps.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

import providers
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services.common import (
    UNEXPECTED,
    ActionRefused,
    CallFailed,
    KeyReused,
    Lookup,
    Session,
    ValidationFailed,
    body_of,
    lease,
    logger,
    may_exist,
    natural_key,
    natural_key_name,
    public_credential,
    scrub,
    validate_body,
)
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.models import Credential
from convadmin.jobs.durable import save_durably
from convadmin.jobs.enqueue import enqueue_in_transaction
from providers.base import Created, LookupAmbiguous, ProviderError, storable
from providers.redact import redact_text


def do_create_conversation(
    body: Mapping[str, Any],
    *,
    credential: Credential,
    acting_user: Any,
    idempotency_key: uuid.UUID | str | None = None,
    retry_of: Conversation | None = None,
    ip: str | None = None,
    wait: bool = False,
    batch: Any = None,
) -> Conversation:
    """Validate, then save the record as pending and its create job in one transaction.

    The job runs on a worker (``wait=True``: here, in this process, as the command line does); the record
    comes back as it is after that: settled when the job ran in-process, else pending. Raises
    :class:`ValidationFailed` (nothing saved, nothing sent). A repeated ``idempotency_key`` with the same
    body returns the first record without sending again (``replayed`` is then True); with another body it
    raises :class:`KeyReused`.
    """
    errors = validate_body(body, credential)
    if errors:
        raise ValidationFailed(errors)
    if idempotency_key:
        existing = Conversation.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replayed(existing, body, credential)
    module = providers.get(credential.provider)
    key = str(idempotency_key or uuid.uuid4())
    # A retry sends the first attempt's prepared body as it is (same natural key and marker).
    prepared = module.prepare(body, public_credential(credential), key=None if retry_of else key)
    summary = module.summarize(prepared)
    try:
        with transaction.atomic(durable=True):
            conversation = Conversation.objects.create(
                provider=credential.provider,
                credential=credential,
                created_by=acting_user,
                status=Status.PENDING,
                action="create",
                name=summary.name[:512],
                participants=summary.participants,
                request_body=storable(prepared),
                idempotency_key=key,
                retry_of=retry_of,
                batch=batch,
            )
            extra = {
                "provider": credential.provider,
                "credential": credential.label,
                "participants": len(summary.participants),
            }
            if batch is not None:
                extra["batch"] = batch.pk
            if retry_of is not None:
                extra["retry_of"] = retry_of.pk
                # The retry carries the same key: only it is looked up from now on, never both records.
                Conversation.objects.filter(pk=retry_of.pk).update(settle_after=None)
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
            send = lambda: None  # noqa: E731
            if not wait:
                from convadmin.conversations.tasks import create_conversation

                send = enqueue_in_transaction(create_conversation, conversation.pk, ip)
    except IntegrityError:
        if retry_of is not None:
            later = retry_of.retries.exclude(status=Status.FAILED).first()
            raise ActionRefused(
                f"This conversation is already being retried: see record {later.pk if later else '…'}."
            ) from None
        existing = (
            Conversation.objects.filter(idempotency_key=idempotency_key).first() if idempotency_key else None
        )
        if existing is None:
            raise
        return _replayed(existing, body, credential)  # submitted twice at once: the other request sends it
    if wait:
        return run_create(conversation.pk, ip=ip)
    send()
    conversation.refresh_from_db()  # the job may have run already (in-process backend)
    return conversation


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
    key = str(existing.idempotency_key) if existing.idempotency_key else None
    return storable(module.prepare(body, public_credential(credential), key=key)) == existing.request_body


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


# --- the create job ------------------------------------------------------------------------------------


def _claim(pk: int) -> bool:
    """Take the record for one create attempt: pending, its create job, and no live lease (one job per
    record at a time, whatever the engine redelivers). Counts the attempt and notes when it is sent."""
    now = timezone.now()
    claimed = (
        Conversation.objects.filter(pk=pk, status=Status.PENDING, action="create")
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + lease(), attempts=F("attempts") + 1, sent_at=now)
    )
    return claimed == 1


def run_create(pk: int, *, ip: str | None = None) -> Conversation:
    """The create job: claim the record, send it (or, when an earlier attempt may have sent it, look it up
    first), and settle it. Safe to run again after a killed worker, a lost database or a redelivery."""
    if not _claim(pk):
        return Conversation.objects.select_related("credential").get(pk=pk)
    conversation = Conversation.objects.select_related("credential", "created_by").get(pk=pk)
    credential = conversation.credential
    module = providers.get(conversation.provider)
    session = Session(acting_user=conversation.created_by, ip=ip)
    outcome: Created | None = None
    error: ProviderError | None = None
    lookup: dict[str, str] = {}
    try:
        with session.open(credential, "create") as (provider_credential, http):
            if conversation.attempts > 1:
                # An earlier attempt was started and never settled: it may have been sent. Ask first.
                http.purpose = "lookup"
                outcome, lookup = look_up(conversation, provider_credential, http)
                if outcome is None and not _may_send_again(module, lookup):
                    error = ProviderError(
                        "An earlier attempt may have created this conversation and the provider cannot tell: "
                        f"{lookup['message']}",
                        code="unsettled",
                        outcome_unknown=True,
                    )
                http.set_deadline(http.deadline)
            if outcome is None and error is None:
                http.purpose = "create"
                try:
                    outcome = module.create(conversation.request_body, provider_credential, http)
                except ProviderError as exc:
                    error = exc
                if error is not None and error.outcome_unknown:
                    http.purpose = "lookup"
                    http.set_deadline(http.deadline)
                    outcome, lookup = look_up(conversation, provider_credential, http)
                elif error is not None and conversation.attempts > 1 and _is_duplicate(module, error):
                    # "Already exists" after an earlier attempt of ours: that attempt may be the one that made it.
                    http.purpose = "lookup"
                    http.set_deadline(http.deadline)
                    found, found_lookup = look_up(conversation, provider_credential, http)
                    if found is not None:
                        outcome, error, lookup = found, None, found_lookup
    except SecretUnreadable as exc:
        error = ProviderError(str(exc), code="secret_unreadable")
    except Exception:
        # A record must never stay pending because of a bug: save it as failed, keep the traceback in the log.
        logger.exception("Creating conversation %s failed unexpectedly", conversation.pk)
        outcome, error = None, ProviderError(UNEXPECTED, code="internal_error", outcome_unknown=session.sent)
    return save_outcome(conversation, session, outcome=outcome, error=error, lookup=lookup)


def _is_duplicate(module: Any, error: ProviderError) -> bool:
    """The provider refused the create because a conversation with its key already exists."""
    return bool(error.existing_id) or (error.code or "") in module.DUPLICATE_CODES


def _may_send_again(module: Any, lookup: dict[str, str]) -> bool:
    """After a look-up found nothing: only where the provider itself refuses a second create with the
    same key may the job send (a duplicate is then impossible)."""
    return lookup.get("result") == Lookup.NOT_FOUND and bool(module.KEY_IS_UNIQUE)


def look_up(
    conversation: Conversation, provider_credential: Any, http: Any
) -> tuple[Created | None, dict[str, str]]:
    """Ask the provider for this record's conversation by its natural key: ``(found or None, what the
    look-up found)`` in the vocabulary of :class:`Lookup`. Never claims one it cannot prove is this one."""
    module = providers.get(conversation.provider)
    label = conversation.provider_label
    key = natural_key_name(conversation)
    if natural_key(conversation) is None:
        return None, {
            "result": Lookup.IMPOSSIBLE,
            "message": f"It cannot be looked up: {label} finds a conversation only by its {key}, and this "
            "request has none. Check at the provider before trying again.",
        }
    try:
        found = module.lookup(body_of(conversation), provider_credential, http, sent_at=conversation.sent_at)
    except LookupAmbiguous as exc:
        return None, {
            "result": Lookup.AMBIGUOUS,
            "message": f"{label} has conversations that may be this one and cannot tell which: {exc.message} "
            "Check at the provider before trying again.",
        }
    except ProviderError as exc:
        return None, {
            "result": Lookup.ERROR,
            "message": f"Looking it up at {label} failed: {redact_text(str(exc), http.secrets)}. "
            "Check with the provider before trying again.",
        }
    if found is None:
        return None, {
            "result": Lookup.NOT_FOUND,
            "message": f"We looked it up at {label} by its {key} and did not find it.",
        }
    return found, {"result": Lookup.FOUND, "message": f"We looked it up at {label}: it was created."}


def mark_created(conversation: Conversation, outcome: Created, secrets: set[str]) -> None:
    conversation.status = Status.CREATED
    conversation.external_id = outcome.external_id[:255]
    conversation.response_body = scrub(outcome.body, secrets)
    conversation.provider_participants = scrub(outcome.participants, secrets)
    conversation.error_message = conversation.error_code = ""
    conversation.error_status = None
    conversation.outcome_unknown = False
    conversation.settle_after = None


def save_outcome(
    conversation: Conversation,
    session: Session,
    *,
    outcome: Created | None,
    error: ProviderError | None,
    lookup: dict[str, str],
) -> Conversation:
    """Write the outcome, every exchange and the audit event together, and release the record."""
    now = timezone.now()
    conversation.lookup = lookup
    if outcome is not None:
        mark_created(conversation, outcome, session.secrets)
        event = EventType.CONVERSATION_CREATED
        extra: dict[str, Any] = {
            "external_id": conversation.external_id,
            "status": outcome.status,
            "found_by_lookup": bool(lookup),
        }
    else:
        error = error or ProviderError(UNEXPECTED, code="internal_error", outcome_unknown=True)
        conversation.status = Status.FAILED
        conversation.error_message = storable(redact_text(error.message, session.secrets))
        conversation.error_code = (error.code or "")[:64]
        conversation.error_status = error.status
        conversation.outcome_unknown = error.outcome_unknown
        conversation.existing_conversation_id = (error.existing_id or "")[:255]
        conversation.response_body = {}  # only the provider's JSON lives there, and a failure gave none
        conversation.retry_after = error.retry_after
        # An unknown outcome the look-up could not settle is looked up again later by the settle job.
        unsettled = error.outcome_unknown and lookup.get("result") not in (
            Lookup.AMBIGUOUS,
            Lookup.IMPOSSIBLE,
        )
        conversation.settle_after = now + settle_delay() if unsettled else None
        if lookup.get("result") == Lookup.NOT_FOUND and unsettled:
            conversation.lookup = {
                **lookup,
                "message": f"{lookup['message']} It may still appear: we look again in a few minutes, or use "
                "“Check with provider” on the record before trying again.",
            }
        event = EventType.CONVERSATION_FAILED
        extra = {
            "error_code": conversation.error_code,
            "error_status": conversation.error_status,
            "outcome_unknown": conversation.outcome_unknown,
            "message": conversation.error_message[:500],
        }
    conversation.completed_at = now
    conversation.action = ""
    conversation.lease_until = None

    def write() -> None:
        conversation.save()
        session.store(conversation.credential, conversation)
        record(event, actor=conversation.created_by, target=conversation, ip=session.ip, extra=extra)

    save_durably(write)
    return conversation


def settle_delay() -> timedelta:
    return timedelta(seconds=settings.SETTLE_DELAY)


# --- retry and check ---------------------------------------------------------------------------------


def do_retry_conversation(
    conversation: Conversation, *, acting_user: Any, ip: str | None = None
) -> Conversation:
    """Try a failed create again, without ever creating it twice.

    When the failure may have created it anyway (unknown outcome, 5xx, timeout), the provider is asked
    first: if it has the conversation, the ORIGINAL record becomes ``created``. Otherwise a new attempt,
    linked by ``retry_of``, sends the same prepared body (same natural key, e.g. Mixin conversation_id), in
    this process (this runs as a job itself).
    """
    refusal = retry_refusal(conversation)
    if refusal:
        raise ActionRefused(refusal)
    if may_exist(conversation):
        settled = _settle_by_lookup(conversation, action="retry", acting_user=acting_user, ip=ip)
        if settled is not None:
            return settled
    try:
        return do_create_conversation(
            conversation.request_body,
            credential=conversation.credential,
            acting_user=acting_user,
            retry_of=conversation,
            ip=ip,
            wait=True,
        )
    except ValidationFailed as exc:  # a disabled credential, or rules that changed since the first attempt
        raise ActionRefused(f"It cannot be sent again as it is: {exc}. Use “Duplicate as new”.") from None


def retry_refusal(conversation: Conversation) -> str:
    """Why Retry does not apply to the record now ("" when it does)."""
    if conversation.status != Status.FAILED:
        return "Only a failed conversation can be retried."
    if conversation.credential.disabled:
        return f"The credential “{conversation.credential.label}” is disabled."
    later = conversation.retries.exclude(status=Status.FAILED).first()
    if later is not None:
        return f"This conversation was already retried: see record {later.pk}."
    if may_exist(conversation) and natural_key(conversation) is None:
        return (
            f"{conversation.provider_label} may have created this conversation, and it cannot be looked up "
            f"without a {natural_key_name(conversation)}: check at the provider first, then use "
            "“Duplicate as new” if it does not exist."
        )
    return ""


def check_refusal(conversation: Conversation) -> str:
    """Why "Check with provider" does not apply to the record now ("" when it does)."""
    if not (
        conversation.status == Status.PENDING
        or (conversation.status == Status.FAILED and conversation.outcome_unknown)
    ):
        return "Only a pending conversation, or one whose outcome is unknown, can be checked."
    if in_flight(conversation):
        return "This conversation is still being created; check again in a minute."
    retry = conversation.retries.exclude(status=Status.FAILED).only("pk").first()
    if retry is not None:
        return f"This attempt was retried as record {retry.pk}, which carries the same key: check that one."
    if natural_key(conversation) is None:
        return (
            f"{conversation.provider_label} can look a conversation up only by its "
            f"{natural_key_name(conversation)}, and this one has none: check at the provider."
        )
    return ""


def in_flight(conversation: Conversation) -> bool:
    """A pending record whose create job is queued or holds it: its call may still be running."""
    if conversation.status != Status.PENDING or conversation.action not in ("create", ""):
        return False  # another action (a check) holds it: the create is not running
    if conversation.action == "create" and conversation.lease_until is not None:
        return conversation.lease_until > timezone.now()
    return timezone.now() - conversation.created_at < lease()


def can_check_with_provider(conversation: Conversation) -> bool:
    """Pending (the process died) or outcome unknown, and the provider can look it up."""
    unsettled = conversation.status == Status.PENDING or (
        conversation.status == Status.FAILED and conversation.outcome_unknown
    )
    return unsettled and natural_key(conversation) is not None


def do_check_with_provider(
    conversation: Conversation, *, acting_user: Any, ip: str | None = None
) -> Conversation:
    """Settle a pending (the process died) or outcome-unknown record by looking it up at the provider.

    Found: created. Not found: a pending record that was never sent fails as not created; otherwise it
    is not created when the provider refuses duplicates (its key is unique), and stays unknown, to be
    looked up again, when it does not.
    """
    refusal = check_refusal(conversation)
    if refusal:
        raise ActionRefused(refusal)
    settled = _settle_by_lookup(conversation, action="check", acting_user=acting_user, ip=ip)
    if settled is not None:
        return settled
    return conversation


def _settle_by_lookup(
    conversation: Conversation, *, action: str, acting_user: Any, ip: str | None
) -> Conversation | None:
    """Look the record's conversation up: created and returned if found; for a check, the record also
    settles as not created (or stays unknown) when it is not found; None otherwise."""
    session = Session(acting_user=acting_user, ip=ip)
    try:
        with session.open(conversation.credential, "lookup") as (provider_credential, http):
            found, lookup = look_up(conversation, provider_credential, http)
    except SecretUnreadable as exc:
        raise CallFailed(str(exc), code="secret_unreadable") from None
    previous = {"status": conversation.status, "error_code": conversation.error_code}
    conversation.lookup = lookup
    if found is not None:
        mark_created(conversation, found, session.secrets)
        event = EventType.CONVERSATION_CREATED if action == "retry" else EventType.CONVERSATION_REFRESHED
        extra = {"action": action, "found_by_lookup": True, "external_id": conversation.external_id}
        return _save_settled(conversation, session, event, {**extra, "previous": previous}, acting_user, ip)
    if lookup["result"] in (Lookup.ERROR, Lookup.AMBIGUOUS, Lookup.IMPOSSIBLE):
        _save_settled(
            conversation,
            session,
            EventType.CONVERSATION_REFRESHED,
            {"action": action, "ok": False, "error": lookup["message"][:500], "result": lookup["result"]},
            acting_user,
            ip,
        )
        raise CallFailed(lookup["message"])
    module = providers.get(conversation.provider)
    never_sent = conversation.status == Status.PENDING and conversation.attempts == 0
    label = conversation.provider_label
    earlier = f" (the first attempt said: {conversation.error_message})" if conversation.error_message else ""
    if action != "check":
        # A retry goes ahead: the provider does not have this attempt's conversation, so its outcome is known.
        conversation.outcome_unknown = False
        conversation.settle_after = None
    elif never_sent or module.KEY_IS_UNIQUE or conversation.settle_after is None:
        conversation.status = Status.FAILED
        conversation.error_message = (
            f"Not found at the provider: {label} has no conversation with this "
            f"{natural_key_name(conversation)}{earlier}. Nothing was created; it can be retried."
        )
        conversation.error_code = "not_found"
        conversation.error_status = None
        conversation.outcome_unknown = False
        conversation.settle_after = None
    else:
        conversation.settle_after = timezone.now() + settle_delay()
    _save_settled(
        conversation,
        session,
        EventType.CONVERSATION_REFRESHED,
        {"action": action, "found_by_lookup": False, "previous": previous},
        acting_user,
        ip,
    )
    return conversation if action == "check" else None


def _save_settled(
    conversation: Conversation,
    session: Session,
    event: EventType,
    extra: dict[str, Any],
    acting_user: Any,
    ip: str | None,
) -> Conversation:
    """Save the record, its exchanges and the audit row together (a settled create releases the record)."""
    conversation.completed_at = conversation.completed_at or timezone.now()
    if conversation.action == "create" and conversation.status != Status.PENDING:
        conversation.action, conversation.lease_until = "", None

    def write() -> None:
        conversation.save()
        session.store(conversation.credential, conversation)
        record(event, actor=acting_user, target=conversation, ip=ip, extra=extra)

    save_durably(write)
    return conversation
