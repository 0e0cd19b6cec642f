"""Bulk create: save a judged file as a draft batch, then send its ready rows with N sender jobs (the credential's
concurrency) that share the credential's pace, can be paused, resumed or cancelled, and after a killed worker
continue without ever creating a row twice.

Each sender claims the next row in file order (a lease on the row, taken under ``select_for_update(skip_locked)``;
SQLite serialises the claim instead), makes ONE provider attempt for it and settles or releases it. A row's
record carries the row's create key: a row claimed again — its sender was killed, its lease ran out — finds that
record and has it settled by the create job's claim and look-up instead of sending again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from convadmin.accounts.services import system_user
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.bulk import limits
from convadmin.bulk.models import Batch, BatchRow, RowStatus, State
from convadmin.bulk.rows import Report
from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services.common import lease
from convadmin.credentials.models import Credential
from convadmin.drafts.models import ConversationTemplate
from convadmin.jobs.enqueue import enqueue_in_transaction

#: A 429 is sent again at most this often per row, after the provider's Retry-After (else a back-off from this,
#: doubled each time).
MAX_429_RETRIES = 5
BACKOFF_SECONDS = 2.0
#: A running batch whose senders wrote no heartbeat for this long has lost its workers: it is resumed (by hand,
#: or every minute by the ``resume_stalled_batches`` job).
STALE_AFTER = timedelta(minutes=5)
#: A sender with no row to claim while other senders' rows are in flight looks again this often; a long wait
#: (the pace, a 429) is cut into pieces this long, with a heartbeat and a look at pause/cancel between them.
POLL_SECONDS = 1.0
BEAT_SECONDS = 30.0
UNSETTLED = (RowStatus.READY, RowStatus.PENDING)


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
    limit = limits.limit_for(credential)
    with transaction.atomic(durable=True):
        batch = Batch.objects.create(
            provider=credential.provider,
            credential=credential,
            created_by=acting_user,
            file_name=file_name[:255],
            template=template,
            template_name=template.name if template else "",
            blank_rows=report.blank_rows,
            rate_requests=limit.requests,
            rate_seconds=limit.seconds,
            concurrency=limit.concurrency,
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


#: The page's rate is the rows settled in this last stretch while the batch runs (its average once it stopped).
RATE_WINDOW = timedelta(seconds=60)


def rate(batch: Batch) -> float | None:
    """Rows settled a minute: lately while the batch runs, on average over its run once it stopped."""
    if batch.started_at is None:
        return None
    rows = batch.rows.filter(settled_at__isnull=False)
    if batch.status == State.RUNNING:
        since = max(batch.started_at, timezone.now() - RATE_WINDOW)
        seconds, settled = (
            (timezone.now() - since).total_seconds(),
            rows.filter(settled_at__gte=since).count(),
        )
    else:
        last = rows.order_by("-settled_at").values_list("settled_at", flat=True).first()
        if last is None:
            return None
        seconds, settled = (last - batch.started_at).total_seconds(), rows.count()
    return round(settled / max(seconds, 1) * 60, 1)


def in_flight(batch: Batch) -> int:
    """Rows a sender holds now."""
    held = batch.rows.filter(status__in=UNSETTLED, claimed_until__gt=timezone.now())
    return held.exclude(claimed_by="").count()


def is_stale(batch: Batch) -> bool:
    beat = batch.heartbeat or batch.started_at
    return batch.status == State.RUNNING and beat is not None and timezone.now() - beat > STALE_AFTER


def claim_lease() -> timedelta:
    """How long a sender holds a row: a little longer than the lease of the row's record (taken at the start of
    the attempt, when the claim has just been renewed), so a row is taken over only once its record is free."""
    return lease() + timedelta(seconds=5)


def _change(
    batch: Batch,
    new: str,
    event: EventType,
    acting_user: Any,
    ip: str | None,
    *,
    refusal: Callable[[Batch], str],
    send: bool,
    extra: dict[str, Any] | None = None,
    requeue: Q | None = None,
) -> Batch:
    """Move the batch to ``new`` (``refusal`` says why not, judged under the row lock), audited; ``send``:
    enqueue the batch's senders with the transaction; ``requeue``: these rows' failed attempts are sent again."""
    starts = []
    with transaction.atomic(durable=True):
        batch = Batch.objects.select_for_update().select_related("credential").get(pk=batch.pk)
        if problem := refusal(batch):
            raise BatchRefused(problem)
        if requeue is not None:
            batch.rows.filter(requeue).update(
                status=RowStatus.PENDING, retry=True, throttled=0, settled_at=None, claimed_until=None
            )
        batch.status = new
        fields = ["status"]
        if new == State.RUNNING:
            limit = limits.limit_for(batch.credential)
            batch.rate_requests, batch.rate_seconds, batch.concurrency = limit
            batch.generation += 1
            batch.started_at = batch.started_at or timezone.now()
            batch.heartbeat = timezone.now()
            batch.finished_at = None
            fields += ["rate_requests", "rate_seconds", "concurrency", "generation"]
            fields += ["started_at", "heartbeat", "finished_at"]
        if new == State.CANCELLED:
            batch.finished_at = timezone.now()
            fields.append("finished_at")
        batch.save(update_fields=fields)
        record(
            event,
            actor=acting_user,
            target=batch,
            ip=ip,
            extra={"file_name": batch.file_name, **counts(batch), **(extra or {})},
        )
        if send:
            from convadmin.bulk.tasks import run_batch

            starts = [
                enqueue_in_transaction(run_batch, batch.pk, batch.generation)
                for _ in range(batch.concurrency)
            ]
    for start in starts:
        start()
    return Batch.objects.select_related("credential", "created_by").get(pk=batch.pk)


def do_start_batch(batch: Batch, *, acting_user: Any, ip: str | None = None, wait: bool = False) -> Batch:
    """Send the batch's ready rows (rows with errors are never sent) with its senders in the background
    (``wait``: here, one row at a time)."""

    def refusal(batch: Batch) -> str:
        if batch.status != State.DRAFT:
            return "Only a batch that has not started can be started."
        if not batch.rows.filter(status=RowStatus.READY).exists():
            return "No row is ready to send: fix the file and upload it again."
        return ""

    batch = _change(
        batch, State.RUNNING, EventType.BATCH_STARTED, acting_user, ip, refusal=refusal, send=not wait
    )
    return run_batch(batch.pk, batch.generation) if wait else batch


def do_pause_batch(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    """Stop sending after the rows in flight; nothing is lost (Resume continues)."""

    def refusal(batch: Batch) -> str:
        return "" if batch.status == State.RUNNING else "Only a running batch can be paused."

    return _change(batch, State.PAUSED, EventType.BATCH_PAUSED, acting_user, ip, refusal=refusal, send=False)


def do_resume_batch(
    batch: Batch, *, acting_user: Any, ip: str | None = None, automatic: bool = False
) -> Batch:
    """Continue a paused batch, or a running one whose senders were lost (stale); ``automatic``: done by the
    ``resume_stalled_batches`` job, which says so in the audit log."""

    def refusal(batch: Batch) -> str:
        if (batch.status == State.PAUSED and not automatic) or is_stale(batch):
            return ""
        return "Only a paused batch (or one whose worker stopped) can be resumed."

    extra = {"automatic": True} if automatic else None
    return _change(
        batch,
        State.RUNNING,
        EventType.BATCH_RESUMED,
        acting_user,
        ip,
        refusal=refusal,
        send=True,
        extra=extra,
    )


def do_cancel_batch(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    """Stop for good: rows not yet sent stay unsent (rows in flight finish)."""

    def refusal(batch: Batch) -> str:
        if batch.status in (State.DRAFT, State.RUNNING, State.PAUSED):
            return ""
        return "This batch has already finished."

    return _change(
        batch, State.CANCELLED, EventType.BATCH_CANCELLED, acting_user, ip, refusal=refusal, send=False
    )


def do_retry_failed(batch: Batch, *, acting_user: Any, ip: str | None = None) -> Batch:
    """Send the failed rows again: each as a retry of its record (a record that may exist is looked up)."""
    failed = Q(status=RowStatus.FAILED, conversation__isnull=False)

    def refusal(batch: Batch) -> str:
        if batch.status != State.DONE:
            return "Failed rows can be retried once the batch has finished."
        if not batch.rows.filter(failed).exists():
            return "No row failed at the provider."
        return ""

    return _change(
        batch,
        State.RUNNING,
        EventType.BATCH_RESUMED,
        acting_user,
        ip,
        refusal=refusal,
        send=True,
        requeue=failed,
    )


def resume_stalled_batches() -> list[int]:
    """Every minute (JOBS_SCHEDULE): resume each running batch whose senders all stopped (their worker was
    killed, or their jobs were lost), as the system user; returns the batches resumed."""
    cutoff = timezone.now() - STALE_AFTER
    stalled = Batch.objects.filter(status=State.RUNNING).filter(
        Q(heartbeat__lt=cutoff) | Q(heartbeat__isnull=True, started_at__lt=cutoff)
    )
    resumed = []
    for batch in stalled:
        try:
            do_resume_batch(batch, acting_user=system_user(), automatic=True)
        except BatchRefused:  # it moved on meanwhile (a sender beat, someone paused it)
            continue
        resumed.append(batch.pk)
    return resumed


# --- the senders --------------------------------------------------------------------------------------


def run_batch(pk: int, generation: int | None = None, *, sender: str = "") -> Batch:
    """One sender of the batch: claim the next row in file order, wait for the credential's next slot, make
    one attempt, and again, until no row is left (then the batch is done) or the batch is paused, cancelled or
    run anew (a newer ``generation``). Safe to run again at any point, and N at once."""
    batch = Batch.objects.select_related("credential", "created_by").get(pk=pk)
    generation = batch.generation if generation is None else generation
    sender = (sender or f"process {os.getpid()}")[:64]
    while True:
        row = _claim(batch, generation, sender)
        if row is None:  # stopped
            break
        if row is _NOTHING:
            if not batch.rows.filter(status__in=UNSETTLED).exists():
                return _finish(pk)
            # Other senders' rows are in flight: wait for them (a killed sender's row is taken over here).
            if _wait(batch, generation, POLL_SECONDS):
                continue
            break
        interval = limits.limit_for(batch.credential).interval
        if not _wait(batch, generation, limits.reserve(batch.credential, interval), row):
            BatchRow.objects.filter(pk=row.pk).update(claimed_until=None, claimed_by="")
            break
        _attempt(batch, row)
    return Batch.objects.select_related("credential", "created_by").get(pk=pk)


_NOTHING: Any = object()


def _running(batch: Batch, generation: int) -> bool:
    """Is this run of the batch still on? Writes the heartbeat when it is."""
    return bool(
        Batch.objects.filter(pk=batch.pk, status=State.RUNNING, generation=generation).update(
            heartbeat=timezone.now()
        )
    )


def _claim(batch: Batch, generation: int, sender: str) -> BatchRow | None:
    """The next row to send, held for this sender (``_NOTHING``: none free now; None: the run stopped)."""
    now = timezone.now()
    with transaction.atomic():
        if not _running(batch, generation):
            return None
        row = (
            batch.rows.filter(status__in=UNSETTLED)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .select_for_update(skip_locked=True)
            .order_by("number")
            .first()
        )
        if row is None or _credential_busy(batch, now):
            return _NOTHING
        row.claimed_until, row.claimed_by = now + claim_lease(), sender
        row.save(update_fields=["claimed_until", "claimed_by"])
    return row


def _credential_busy(batch: Batch, now: Any) -> bool:
    """Has the credential its concurrency's worth of rows in flight, counting every batch of it? Its claims are
    taken one at a time (its pace row locked until the claim's transaction ends), so two batches never overrun it."""
    limits.lock(batch.credential)
    live = BatchRow.objects.filter(
        batch__credential_id=batch.credential_id, status__in=UNSETTLED, claimed_until__gt=now
    ).count()
    return live >= batch.concurrency


def _wait(batch: Batch, generation: int, seconds: float, row: BatchRow | None = None) -> bool:
    """Sleep ``seconds`` in pieces, keeping the heartbeat (and the row's claim) fresh; False as soon as the run
    stopped (paused, cancelled, run anew)."""
    while seconds > 0:
        piece = min(seconds, BEAT_SECONDS)
        limits.sleep(piece)
        seconds -= piece
        if not _running(batch, generation):
            return False
        if row is not None:
            BatchRow.objects.filter(pk=row.pk).update(claimed_until=timezone.now() + claim_lease())
    return True


def _attempt(batch: Batch, row: BatchRow) -> None:
    """One provider attempt for the row: send it, settle its record, or send its failed attempt again."""
    conversation = _latest(row)
    try:
        if conversation is None:
            conversation = _create(batch, row)
        elif conversation.status == Status.PENDING:
            # A killed sender's record: the create job claims it and looks it up before any re-send.
            conversation = services.run_create(conversation.pk)
        elif conversation.status == Status.FAILED and row.retry:
            conversation = _retry(batch, row, conversation)
            if conversation is None:
                return
    except services.ValidationFailed as exc:  # e.g. the credential was disabled meanwhile
        row.errors = [
            {"column": path, "label": path, "message": " ".join(messages), "value": ""}
            for path, messages in exc.errors.items()
        ]
        _save(row, status=RowStatus.INVALID, conversation=None)
        return
    if conversation.status == Status.PENDING:
        # Another job holds its record (a killed sender's attempt): look again once that lease ends.
        until = conversation.lease_until or timezone.now() + timedelta(seconds=BEAT_SECONDS)
        _save(row, status=RowStatus.PENDING, conversation=conversation, until=until)
    elif _throttled(conversation) and row.throttled < MAX_429_RETRIES:
        wait = conversation.retry_after or BACKOFF_SECONDS * 2**row.throttled
        limits.hold(batch.credential, float(wait))
        row.throttled += 1
        _save(row, status=RowStatus.PENDING, conversation=conversation, retry=True)
    else:
        _save(row, status=conversation.status, conversation=conversation)


def _throttled(conversation: Conversation) -> bool:
    return conversation.status == Status.FAILED and conversation.error_status == 429


def _latest(row: BatchRow) -> Conversation | None:
    """The row's newest attempt: its record (found by the row's create key when a killed sender could not note
    it), or the last retry of it."""
    conversation = row.conversation or Conversation.objects.filter(idempotency_key=row.key).first()
    while conversation is not None and (later := conversation.retries.order_by("-pk").first()):
        conversation = later
    return conversation


def _create(batch: Batch, row: BatchRow) -> Conversation:
    conversation = services.do_create_conversation(
        row.body,
        credential=batch.credential,
        acting_user=batch.created_by,
        idempotency_key=row.key,
        batch=batch,
        wait=True,
    )
    if getattr(conversation, "replayed", False):  # made meanwhile by another sender: its newest attempt
        return _latest(row) or conversation
    return conversation


def _retry(batch: Batch, row: BatchRow, conversation: Conversation) -> Conversation | None:
    """Send a failed attempt again as a retry of its record (None: the row was settled as it is)."""
    try:
        retried = services.do_retry_conversation(conversation, acting_user=batch.created_by)
    except services.ActionRefused:
        latest = _latest(row)
        if latest is not None and latest.pk != conversation.pk:
            return latest  # retried meanwhile (another sender, a person on the record's page)
        _save(row, status=conversation.status, conversation=conversation)  # it cannot be sent again now
        return None
    except services.CallFailed:  # the look-up before the retry could not tell: the record says so
        _save(row, status=Status.FAILED, conversation=Conversation.objects.get(pk=conversation.pk))
        return None
    Conversation.objects.filter(pk=retried.pk, batch__isnull=True).update(batch=batch)
    return retried


def _save(
    row: BatchRow,
    *,
    status: str,
    conversation: Conversation | None,
    until: Any = None,
    retry: bool = False,
) -> None:
    """Note the row's outcome: settled (created, failed, invalid) or, while pending, free to claim from
    ``until`` (None: at once) and whether its failed attempt is to be sent again."""
    row.status, row.conversation, row.retry = status, conversation, retry
    row.claimed_until, row.claimed_by = until, ""
    row.settled_at = None if status == RowStatus.PENDING else timezone.now()
    row.save(
        update_fields=[
            "status",
            "conversation",
            "retry",
            "throttled",
            "errors",
            "claimed_until",
            "claimed_by",
            "settled_at",
        ]
    )


def _finish(pk: int) -> Batch:
    with transaction.atomic(durable=True):
        batch = Batch.objects.select_for_update().get(pk=pk)
        if batch.status != State.RUNNING or batch.rows.filter(status__in=UNSETTLED).exists():
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
    return Batch.objects.select_related("credential", "created_by").get(pk=pk)
