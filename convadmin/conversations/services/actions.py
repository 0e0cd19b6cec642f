"""The actions a person starts on a record — Retry, Check with provider, Refresh — as jobs: one at a time per
record (two clicks make one job), the page follows them live, and the settle job leaves nothing pending."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from convadmin.accounts.services import acting_user as actor
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services.common import (
    ActionRefused,
    CallFailed,
    Lookup,
    ValidationFailed,
    lease,
    logger,
)
from convadmin.conversations.services.create import (
    check_refusal,
    do_check_with_provider,
    do_retry_conversation,
    in_flight,
    retry_refusal,
    run_create,
    settle_delay,
)
from convadmin.conversations.services.refresh import do_refresh_conversation, refresh_summary
from convadmin.jobs.enqueue import enqueue_in_transaction
from providers.base import ProviderError

ACTIONS = ("retry", "check", "refresh")
FAILED_PREFIX = {"retry": "Not retried: ", "check": "Not checked: ", "refresh": ""}
LABELS = {
    "retry": "Retrying",
    "check": "Checking with the provider",
    "refresh": "Refreshing from the provider",
}
#: A record left pending this long with its create job never started is run by the settle job itself.
QUEUE_GRACE = timedelta(minutes=5)
#: An unknown outcome the provider keeps failing to look up is left to a person after this long.
GIVE_UP_AFTER = timedelta(days=1)


def action_refusal(conversation: Conversation, action: str) -> str:
    """Why ``action`` does not apply to the record now ("" when it does): the page shows the buttons this
    allows, and the service refuses the same way, so both always agree."""
    if busy(conversation):
        return f"{LABELS[conversation.action]} is already under way for this record."
    if action == "retry":
        return retry_refusal(conversation)
    if action == "check":
        return check_refusal(conversation)
    if action == "refresh":
        if conversation.status != Status.CREATED or not conversation.external_id:
            return "Only a created conversation can be refreshed from the provider."
        return ""
    raise ValueError(action)


def busy(conversation: Conversation) -> bool:
    """An action (other than the create itself) is queued or running on the record."""
    return (
        conversation.action in ACTIONS
        and conversation.lease_until is not None
        and conversation.lease_until > timezone.now()
    )


def start_action(conversation: Conversation, action: str, *, acting_user: Any, ip: str | None) -> None:
    """Claim the record for ``action`` and queue its job. Raises :class:`ActionRefused` when it does not
    apply, or when another click already started one (the claim is a conditional update: one wins)."""
    refusal = action_refusal(conversation, action)
    if refusal:
        raise ActionRefused(refusal)
    from convadmin.conversations.tasks import run_conversation_action

    now = timezone.now()
    with transaction.atomic(durable=True):
        claimed = (
            Conversation.objects.filter(pk=conversation.pk)
            .filter(~Q(action__in=ACTIONS) | Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .exclude(status=Status.PENDING, action="create", lease_until__gt=now)
            .update(action=action, lease_until=now + lease(), action_result={})
        )
        if not claimed:
            raise ActionRefused("Another action is already under way for this record.")
        send = enqueue_in_transaction(run_conversation_action, conversation.pk, action, acting_user.pk, ip)
    send()


def run_action(pk: int, action: str, user_id: int | None, ip: str | None) -> dict[str, Any]:
    """The job of one action: run it, keep its result on the record for the page, release the record."""
    conversation = Conversation.objects.select_related("credential").get(pk=pk)
    if conversation.action != action:
        return {}  # released already (a redelivered job, or the settle job gave up on it)
    user = actor(user_id)
    result: dict[str, Any] = {"action": action, "ok": True}
    try:
        if action == "retry":
            settled = do_retry_conversation(conversation, acting_user=user, ip=ip)
            result.update(_retry_result(conversation, settled))
        elif action == "check":
            settled = do_check_with_provider(conversation, acting_user=user, ip=ip)
            result["notice"] = _check_notice(settled)
        else:
            outcome = do_refresh_conversation(conversation, acting_user=user, ip=ip)
            count = len(outcome.get("current") or [])
            differences = refresh_summary(outcome, conversation)
            result["notice"] = (
                f"Refreshed from the provider: {count} participant{'s' if count != 1 else ''}"
                + (", with the changes below." if differences else "; nothing changed since the last read.")
            )
            result["differences"] = differences
    except (ActionRefused, CallFailed, ValidationFailed, ProviderError) as exc:
        result.update(ok=False, error=f"{FAILED_PREFIX[action]}{exc}")
    except Exception:
        logger.exception("The %s of conversation %s failed unexpectedly", action, pk)
        result.update(ok=False, error="Something went wrong on our side; the details are in the server log.")
    result["at"] = timezone.now().isoformat()
    Conversation.objects.filter(pk=pk, action=action).update(
        action="", lease_until=None, action_result=result
    )
    return result


def _retry_result(original: Conversation, settled: Conversation) -> dict[str, Any]:
    if settled.pk == original.pk:
        return {
            "notice": "The provider already had this conversation (found by its natural key): this record is "
            f"now {settled.get_status_display().lower()} and nothing was sent again."
        }
    tail = f"record {settled.pk} (retry of {original.pk})"
    if settled.status == Status.CREATED:
        return {"notice": f"Retried as {tail}: created.", "record": settled.pk}
    if settled.status == Status.PENDING:
        return {"notice": f"Retried as {tail}: still pending.", "record": settled.pk, "level": "warning"}
    return {
        "ok": False,
        "error": f"The retry failed too: {tail} was not created. Its error is below.",
        "record": settled.pk,
    }


def _check_notice(conversation: Conversation) -> str:
    if conversation.status == Status.CREATED:
        return (
            f"Checked with the provider: it has this conversation ({conversation.external_id}); the record is "
            "now created."
        )
    if conversation.outcome_unknown:
        return "Checked with the provider: it does not have this conversation yet. We look again in a few minutes."
    return (
        "Checked with the provider: it does not have this conversation. Nothing was created; you can retry."
    )


# --- the settle job ---------------------------------------------------------------------------------


def settle_conversations(pk: int | None = None) -> list[dict[str, Any]]:
    """Leave nothing pending: run the create of every pending record whose job died or never started (it
    looks an earlier attempt up before sending), look up again every unknown outcome that is due, and
    release actions whose job was lost. Returns one line per record it touched."""
    now = timezone.now()
    records = Conversation.objects.all() if pk is None else Conversation.objects.filter(pk=pk)
    lines = []
    stale = records.filter(action__in=ACTIONS, lease_until__lt=now)
    for conversation in stale.only("id", "action"):
        Conversation.objects.filter(pk=conversation.pk, action=conversation.action).update(
            action="",
            lease_until=None,
            action_result={
                "action": conversation.action,
                "ok": False,
                "error": "The job stopped before it finished (the worker was stopped): start it again.",
                "at": now.isoformat(),
            },
        )
        lines.append({"id": conversation.pk, "action": conversation.action, "result": "released"})
    pending = records.filter(status=Status.PENDING).filter(
        Q(lease_until__lt=now)
        | Q(lease_until__isnull=True, created_at__lt=now - QUEUE_GRACE)
        | Q(lease_until__isnull=True, pk=pk)
    )
    for conversation_pk in pending.values_list("pk", flat=True):
        # A pending record no create job owns (left by a process that died mid-call before jobs existed):
        # it may have been sent, so its attempt counts as made and the job looks it up before sending.
        Conversation.objects.filter(pk=conversation_pk, status=Status.PENDING).exclude(
            action="create"
        ).update(action="create", attempts=Greatest(F("attempts"), 1))
        settled = run_create(conversation_pk)
        lines.append({"id": settled.pk, "action": "create", "result": settled.status})
    due = records.filter(status=Status.FAILED, outcome_unknown=True, settle_after__lte=now).exclude(
        retries__status__in=(Status.PENDING, Status.CREATED)
    )
    for conversation in due.select_related("credential"):
        if in_flight(conversation) or busy(conversation):
            continue
        conversation.credential.refresh_from_db()  # an earlier look-up of this run may have rotated its tokens
        try:
            settled = do_check_with_provider(conversation, acting_user=actor(None), ip=None)
        except (ActionRefused, CallFailed) as exc:
            # The provider could not answer: look again later, for a day; then a person checks at the provider.
            result = Conversation.objects.get(pk=conversation.pk).lookup.get("result")
            again = result == Lookup.ERROR and conversation.created_at > now - GIVE_UP_AFTER
            Conversation.objects.filter(pk=conversation.pk).update(
                settle_after=now + settle_delay() if again else None
            )
            lines.append({"id": conversation.pk, "action": "check", "result": "unknown", "error": str(exc)})
            continue
        lines.append(
            {
                "id": settled.pk,
                "action": "check",
                "result": "unknown" if settled.outcome_unknown else settled.status,
            }
        )
    return lines


def unsettled(pk: int | None = None) -> int:
    """Records still pending, or unknown and due to be looked up again (0: everything is settled)."""
    records = Conversation.objects.all() if pk is None else Conversation.objects.filter(pk=pk)
    return records.filter(
        Q(status=Status.PENDING) | Q(outcome_unknown=True, settle_after__isnull=False)
    ).count()
