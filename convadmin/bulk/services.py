"""Bulk create: save a judged file as a draft batch, then send its ready rows in a background job that keeps
the provider's pace, can be paused, resumed or cancelled, and after a killed worker continues without ever
creating a row twice (each row's record has the row's create key: a re-run finds it and settles it by the
create job's claim and look-up instead of sending again)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.bulk import limits
from convadmin.bulk.models import Batch, BatchRow, RowStatus, State
from convadmin.bulk.rows import Report
from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential
from convadmin.drafts.models import ConversationTemplate
from convadmin.jobs.enqueue import enqueue_in_transaction

#: A 429 is sent again at most this often per row, after the provider's Retry-After (else this back-off).
MAX_429_RETRIES = 5
BACKOFF_SECONDS = 2.0
#: A running batch whose job wrote no heartbeat for this long has lost its worker: it may be resumed.
STALE_AFTER = timedelta(minutes=5)


class BatchRefused(Exception):
    """The action does not apply to the batch as it is now."""


def do_upload_batch(
    report: Report,
    *,
    credential: Credential,
    file_name: str,
    acting_user: Any,
    ip: str | None = None,
    template: ConversationTemplate | None = None,
) -> Batch:
    """Save a judged file as a draft batch (nothing is sent); ``template``: the one that filled its blanks."""
    requests, seconds = limits.limit_for(credential)
    with transaction.atomic(durable=True):
        batch = Batch.objects.create(
            provider=credential.provider,
            credential=credential,
            created_by=acting_user,
            file_name=file_name[:255],
            template=template,
            template_name=template.name if template else "",
            blank_rows=report.blank_rows,
            rate_requests=requests,
            rate_seconds=seconds,
        )
        BatchRow.objects.bulk_create(
            (
                BatchRow(
                    batch=batch,
                    number=row.number,
                    status=row.status,
                    values=row.values,
                    body=row.body if row.status == RowStatus.READY else {},
                    errors=row.errors,
                    natural_key=row.natural_key[:512],
                    key=row.key,
                )
                for row in report.rows
            ),
            batch_size=1000,
        )
        record(
            EventType.BATCH_UPLOADED,
            actor=acting_user,
            target=batch,
            ip=ip,
            extra={
                "file_name": batch.file_name,
                "provider": batch.provider,
                "credential": credential.label,
                "template": batch.template_name or None,
                "rows": len(report.rows),
                "ready": len(report.ready),
                "with_errors": len(report.rows) - len(report.ready),
            },
        )
    return batch


def counts(batch: Batch) -> dict[str, int]:
    """Rows by status (every status present, 0 when none)."""
    found = dict(batch.rows.values_list("status").annotate(n=Count("id")).order_by())
    out = {status: found.get(status, 0) for status in RowStatus.values}
    out["rows"] = sum(found.values())
    return out


def is_stale(batch: Batch) -> bool:
    beat = batch.heartbeat or batch.started_at
    return batch.status == State.RUNNING and beat is not None and timezone.now() - beat > STALE_AFTER


def _change(
    batch: Batch, new: str, event: EventType, acting_user: Any, ip: str | None, *, send: bool
) -> Batch:
    with transaction.atomic(durable=True):
        batch.status = new
        fields = ["status"]
        if new == State.RUNNING:
            batch.started_at = batch.started_at or timezone.now()
            batch.heartbeat = timezone.now()
            fields += ["started_at", "heartbeat"]
        if new == State.CANCELLED:
            batch.finished_at = timezone.now()
            fields.append("finished_at")
        batch.save(update_fields=fields)
        record(
            event,
            actor=acting_user,
            target=batch,
            ip=ip,
            extra={"file_name": batch.file_name, **counts(batch)},
        )
        start = lambda: None  # noqa: E731
        if send:
            from convadmin.bulk.tasks import run_batch

            start = enqueue_in_transaction(run_batch, batch.pk)
    start()
    batch.refresh_from_db()
    return batch


def do_start_batch(batch: Batch, *, acting_user: Any, ip: str | None = None, wait: bool = False) -> Batch:
    """Send the batch's ready rows (rows with errors are never sent) in the background (``wait``: here)."""
    if batch.status != State.DRAFT:
        raise BatchRefused("Only a batch that has not started can be started.")
    if not batch.rows.filter(status=RowStatus.READY).exists():
        raise BatchRefused("No row is ready to send: fix the file and upload it again.")
    batch = _change(batch, State.RUNNING, EventType.BATCH_STARTED, acting_user, ip, send=not wait)
    return run_batch(batch.pk) if wait else batch


def do_pause_batch(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    if batch.status != State.RUNNING:
        raise BatchRefused("Only a running batch can be paused.")
    return _change(batch, State.PAUSED, EventType.BATCH_PAUSED, acting_user, ip, send=False)


def do_resume_batch(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    """Continue a paused batch, or a running one whose worker was lost (stale)."""
    if not (batch.status == State.PAUSED or is_stale(batch)):
        raise BatchRefused("Only a paused batch (or one whose worker stopped) can be resumed.")
    return _change(batch, State.RUNNING, EventType.BATCH_RESUMED, acting_user, ip, send=True)


def do_cancel_batch(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    """Stop for good: rows not yet sent stay unsent (a row being sent finishes)."""
    if batch.status not in (State.DRAFT, State.RUNNING, State.PAUSED):
        raise BatchRefused("This batch has already finished.")
    return _change(batch, State.CANCELLED, EventType.BATCH_CANCELLED, acting_user, ip, send=False)


def do_retry_failed(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    """Send the failed rows again: each as a retry of its record (a record that may exist is looked up)."""
    if batch.status != State.DONE:
        raise BatchRefused("Failed rows can be retried once the batch has finished.")
    if not batch.rows.filter(status=RowStatus.FAILED, conversation__isnull=False).exists():
        raise BatchRefused("No row failed at the provider.")
    batch.rows.filter(status=RowStatus.FAILED, conversation__isnull=False).update(status=RowStatus.PENDING)
    batch.finished_at = None
    batch.save(update_fields=["finished_at"])
    return _change(batch, State.RUNNING, EventType.BATCH_RESUMED, acting_user, ip, send=True)


# --- the job ------------------------------------------------------------------------------------------


def run_batch(pk: int) -> Batch:
    """The batch job: send every ready row (and settle every pending one) in file order at the batch's pace,
    checking between rows whether the batch was paused or cancelled. Safe to run again at any point."""
    batch = Batch.objects.select_related("credential", "created_by").get(pk=pk)
    pacer = limits.Pacer(batch.rate_requests, batch.rate_seconds)
    ids = list(
        batch.rows.filter(status__in=[RowStatus.READY, RowStatus.PENDING])
        .order_by("number")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(ids), 100):
        for row in BatchRow.objects.filter(pk__in=ids[start : start + 100]).select_related("conversation"):
            state = Batch.objects.filter(pk=pk).values_list("status", flat=True).get()
            if state != State.RUNNING:
                return Batch.objects.get(pk=pk)
            Batch.objects.filter(pk=pk).update(heartbeat=timezone.now())
            try:
                send_row(batch, row, pacer)
            except _Skip:
                continue
    return _finish(pk)


def send_row(batch: Batch, row: BatchRow, pacer: limits.Pacer) -> None:
    conversation = row.conversation
    if conversation is not None and conversation.status == Status.FAILED:  # "retry failed rows"
        conversation = _retry(batch, conversation, pacer)
    else:
        pacer.wait()
        conversation = _create(batch, row)
    for _attempt in range(MAX_429_RETRIES):
        if not (conversation.status == Status.FAILED and conversation.error_status == 429):
            break
        wait = conversation.retry_after
        limits.sleep(float(wait) if isinstance(wait, int | float) else BACKOFF_SECONDS)
        pacer.wait()
        conversation = _create(batch, row, retry_of=conversation)
    row.conversation = conversation
    row.status = conversation.status
    row.save(update_fields=["conversation", "status"])


def _create(batch: Batch, row: BatchRow, retry_of: Conversation | None = None) -> Conversation:
    """The row's record: made and sent now, or — after a killed worker — the one its key already made,
    settled by the create job (claim, look-up before any re-send)."""
    try:
        conversation = services.do_create_conversation(
            retry_of.request_body if retry_of else row.body,
            credential=batch.credential,
            acting_user=batch.created_by,
            idempotency_key=None if retry_of else row.key,
            retry_of=retry_of,
            batch=batch,
            wait=True,
        )
    except services.ValidationFailed as exc:  # e.g. the credential was disabled meanwhile
        row.errors = [
            {"column": path, "label": path, "message": " ".join(messages), "value": ""}
            for path, messages in exc.errors.items()
        ]
        row.status = RowStatus.INVALID
        row.save(update_fields=["errors", "status"])
        raise _Skip from None
    if conversation.status == Status.PENDING:
        conversation = services.run_create(conversation.pk)
    latest = conversation.retries.order_by("-pk").first() if retry_of is None else None
    return latest or conversation


def _retry(batch: Batch, conversation: Conversation, pacer: limits.Pacer) -> Conversation:
    pacer.wait()
    try:
        retried = services.do_retry_conversation(conversation, acting_user=batch.created_by)
    except services.ActionRefused:
        return conversation
    Conversation.objects.filter(pk=retried.pk, batch__isnull=True).update(batch=batch)
    return retried


class _Skip(Exception):
    pass


def _finish(pk: int) -> Batch:
    with transaction.atomic(durable=True):
        batch = Batch.objects.select_for_update().get(pk=pk)
        if batch.status != State.RUNNING:
            return batch
        batch.status = State.DONE
        batch.finished_at = timezone.now()
        batch.save(update_fields=["status", "finished_at"])
        record(
            EventType.BATCH_FINISHED,
            actor=batch.created_by,
            target=batch,
            extra={"file_name": batch.file_name, **counts(batch)},
        )
    return batch
