"""Keeping the rollups up to date.

Outcomes: a ``pre_save`` signal on ``Conversation`` reads the row's bucket as stored, ``post_save`` moves one
count from that bucket to the new one (both in the transaction that saves the record, so the figures and the
records agree). Saves that change nothing the dashboard counts cost one primary-key read; ``.update()`` and
``bulk_create`` send no signal, so :func:`rebuild_outcomes` re-counts a time range from the records (the
``refresh_dashboard`` job does the last two days every hour; ``manage.py rebuild_dashboard`` any range).

Latency: exchanges are append-only and saved with ``bulk_create``, so :func:`roll_up_latency` (a job every
minute) counts the create calls added since the last exchange id it read, once they are a few minutes old
(an exchange's transaction has committed by then, so no lower id can still appear).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Model
from django.db.models.functions import Substr, TruncHour
from django.db.models.signals import post_delete, post_save, pre_save
from django.utils import timezone

from convadmin.conversations.models import Conversation, Status
from convadmin.dashboard.models import (
    LATENCY_BUCKETS,
    MESSAGE_CHARS,
    DailyLatency,
    DailyOutcome,
    HourlyOutcome,
    Outcome,
    RollupMark,
)
from convadmin.exchanges.models import Exchange, Purpose
from convadmin.lists.filters import day_start

#: The fields of a record its bucket depends on.
KEY_FIELDS = (
    "created_at",
    "provider",
    "credential_id",
    "status",
    "outcome_unknown",
    "error_code",
    "error_message",
)
#: Exchanges younger than this are left for the next run (their transaction may not have committed yet).
SETTLE_MINUTES = 5
LATENCY_BATCH = 20_000


def outcome_of(status: str, unknown: bool) -> str:
    if status == Status.CREATED:
        return Outcome.CREATED
    if status == Status.FAILED:
        return Outcome.UNKNOWN if unknown else Outcome.FAILED
    return Outcome.PENDING


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bucket(values: dict[str, Any]) -> tuple | None:
    """The rollup key of a record given its ``KEY_FIELDS`` (None before it has a creation time)."""
    if values.get("created_at") is None:
        return None
    outcome = outcome_of(values["status"], values["outcome_unknown"])
    failed = outcome in (Outcome.FAILED, Outcome.UNKNOWN)
    return (
        hour_of(values["created_at"]),
        values["provider"],
        values["credential_id"],
        outcome,
        (values["error_code"] or "") if failed else "",
        (values["error_message"] or "")[:MESSAGE_CHARS] if failed else "",
    )


def _add(model: type[Model], fields: dict[str, Any], delta: int) -> None:
    """One upsert (PostgreSQL and SQLite both have ``ON CONFLICT … DO UPDATE``): it runs in every save that
    settles a record, so it is one statement, not an update, a savepoint and an insert."""
    table, names = model._meta.db_table, list(fields)
    ops = connection.ops
    values = [
        ops.adapt_datetimefield_value(value)
        if isinstance(value, datetime)
        else ops.adapt_datefield_value(value)
        if isinstance(value, date)
        else value
        for value in fields.values()
    ]
    key = ", ".join(names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key}, count) VALUES ({', '.join(['%s'] * (len(names) + 1))}) "  # noqa: S608
            f"ON CONFLICT ({key}) DO UPDATE SET count = {table}.count + excluded.count",
            [*values, delta],
        )
    if delta < 0:  # a settled pending record leaves no empty row behind: open work stays a short read
        model.objects.filter(**fields, count=0).delete()


def bump(key: tuple, delta: int) -> None:
    """Add ``delta`` to the hour's and the day's count of ``key``."""
    hour, provider, credential_id, outcome, code, message = key
    fields = dict(
        provider=provider,
        credential_id=credential_id,
        outcome=outcome,
        error_code=code,
        error_message=message,
    )
    _add(HourlyOutcome, {**fields, "hour": hour}, delta)
    _add(DailyOutcome, {**fields, "day": timezone.localdate(hour)}, delta)


def _before_save(
    sender: type[Model], instance: Conversation, raw: bool = False, update_fields: Any = None, **kw: Any
) -> None:
    instance._dashboard_old = None
    if raw or instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & {*KEY_FIELDS, "credential"}:
        instance._dashboard_old = "unchanged"
        return
    row = Conversation.objects.filter(pk=instance.pk).values(*KEY_FIELDS).first()
    instance._dashboard_old = bucket(row) if row else None


def _after_save(
    sender: type[Model], instance: Conversation, created: bool, raw: bool = False, **kw: Any
) -> None:
    old = getattr(instance, "_dashboard_old", None)
    if raw or old == "unchanged":
        return
    new = bucket({name: getattr(instance, name) for name in KEY_FIELDS})
    if old == new:
        return
    if old is not None:
        bump(old, -1)
    if new is not None:
        bump(new, 1)


def _after_delete(sender: type[Model], instance: Conversation, **kw: Any) -> None:
    key = bucket({name: getattr(instance, name) for name in KEY_FIELDS})
    if key is not None:
        bump(key, -1)


def connect() -> None:
    uid = "dashboard-rollup"
    pre_save.connect(_before_save, sender=Conversation, dispatch_uid=uid)
    post_save.connect(_after_save, sender=Conversation, dispatch_uid=uid)
    post_delete.connect(_after_delete, sender=Conversation, dispatch_uid=uid)


def rebuild_outcomes(start: datetime | None = None) -> int:
    """Count the records created since the local day of ``start`` (None: all) again; return the number of
    hourly rows written. Reads the records through the ``created_at`` index."""
    records = Conversation.objects.order_by()
    hourly, daily = HourlyOutcome.objects.all(), DailyOutcome.objects.all()
    if start:
        first_day = timezone.localdate(start)
        start = day_start(first_day)
        records = records.filter(created_at__gte=start)
        hourly, daily = hourly.filter(hour__gte=start), daily.filter(day__gte=first_day)
    groups = (
        records.annotate(
            h=TruncHour("created_at", tzinfo=UTC), message=Substr("error_message", 1, MESSAGE_CHARS)
        )
        .values("h", "provider", "credential_id", "status", "outcome_unknown", "error_code", "message")
        .annotate(n=Count("id"))
    )
    per_hour: Counter[tuple] = Counter()
    for g in groups:
        per_hour[bucket({**g, "created_at": g["h"], "error_message": g["message"]})] += g["n"]
    per_day: Counter[tuple] = Counter()
    for (hour, *rest), n in per_hour.items():
        per_day[(timezone.localdate(hour), *rest)] += n

    def fields(rest: list[Any]) -> dict[str, Any]:
        provider, credential_id, outcome, code, message = rest
        return dict(
            provider=provider,
            credential_id=credential_id,
            outcome=outcome,
            error_code=code,
            error_message=message,
        )

    with transaction.atomic():
        hourly.delete()
        daily.delete()
        HourlyOutcome.objects.bulk_create(
            (HourlyOutcome(hour=hour, count=n, **fields(rest)) for (hour, *rest), n in per_hour.items()),
            batch_size=2000,
        )
        DailyOutcome.objects.bulk_create(
            (DailyOutcome(day=day, count=n, **fields(rest)) for (day, *rest), n in per_day.items()),
            batch_size=2000,
        )
    return len(per_hour)


def latency_bucket(ms: int) -> int:
    return LATENCY_BUCKETS[min(bisect_left(LATENCY_BUCKETS, ms), len(LATENCY_BUCKETS) - 1)]


def roll_up_latency(now: datetime | None = None) -> int:
    """Count create calls saved since the last run into the latency histogram; return how many."""
    cutoff = (now or timezone.now()) - timedelta(minutes=SETTLE_MINUTES)
    total = 0
    while True:
        with transaction.atomic():
            mark, _ = RollupMark.objects.select_for_update().get_or_create(name="latency")
            rows = list(
                Exchange.objects.filter(pk__gt=mark.value, started_at__lt=cutoff)
                .order_by("pk")
                .values_list(
                    "pk", "purpose", "credential_id", "credential__provider", "started_at", "duration_ms"
                )[:LATENCY_BATCH]
            )
            if not rows:
                return total
            counts: Counter[tuple] = Counter(
                (timezone.localdate(started), provider, credential_id, latency_bucket(ms))
                for _, purpose, credential_id, provider, started, ms in rows
                if purpose == Purpose.CREATE and credential_id is not None
            )
            for (day, provider, credential_id, le_ms), n in counts.items():
                key = dict(day=day, provider=provider, credential_id=credential_id, le_ms=le_ms)
                if not DailyLatency.objects.filter(**key).update(count=F("count") + n):
                    DailyLatency.objects.create(**key, count=n)  # one writer: the mark row is locked
            mark.value = rows[-1][0]
            mark.save(update_fields=["value"])
            total += sum(counts.values())


def rebuild_latency() -> int:
    """Count every create call again (after a time zone change, or to repair)."""
    with transaction.atomic():
        DailyLatency.objects.all().delete()
        RollupMark.objects.filter(name="latency").delete()
    return roll_up_latency()
