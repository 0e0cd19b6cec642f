"""Rollups the dashboard reads: counts per hour and outcome, and create-call latency per day as a histogram."""

from __future__ import annotations

from django.db import models

from convadmin.credentials.models import Credential

#: Error messages are grouped by their first characters (a message with a record's own id in it would
#: otherwise make a reason of its own per record).
MESSAGE_CHARS = 200

#: Upper bounds (ms) of the latency histogram's buckets; the last catches everything slower.
LATENCY_BUCKETS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 2**31 - 1)


class Outcome(models.TextChoices):
    CREATED = "created", "Created"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown outcome"
    PENDING = "pending", "Pending"


class OutcomeCount(models.Model):
    """What both outcome rollups count, per period: provider, credential, outcome and (for failures) reason."""

    provider = models.CharField(max_length=20)
    credential = models.ForeignKey(Credential, on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=MESSAGE_CHARS, blank=True)
    count = models.IntegerField(default=0)

    class Meta:
        abstract = True


class HourlyOutcome(OutcomeCount):
    """How many records created in ``hour`` (UTC) with this provider and credential have this outcome (and,
    for failures, this error code and message)."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "provider", "credential", "outcome", "error_code", "error_message"],
                name="dash_outcome_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.provider} {self.outcome}: {self.count}"


class DailyOutcome(OutcomeCount):
    """The same counts per day in settings.TIME_ZONE: what the charts over days read (24 times fewer rows)."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "provider", "credential", "outcome", "error_code", "error_message"],
                name="dash_daily_key",
            )
        ]
        indexes = [models.Index(fields=["outcome", "day"], name="dash_daily_outcome")]

    def __str__(self) -> str:
        return f"{self.day} {self.provider} {self.outcome}: {self.count}"


class DailyLatency(models.Model):
    """How many create calls on ``day`` with this credential took at most ``le_ms`` (and more than the bucket
    below)."""

    day = models.DateField()
    provider = models.CharField(max_length=20)
    credential = models.ForeignKey(Credential, on_delete=models.CASCADE, related_name="+")
    le_ms = models.IntegerField()
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "provider", "credential", "le_ms"], name="dash_latency_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.provider} ≤{self.le_ms} ms: {self.count}"


class RollupMark(models.Model):
    """How far a rollup has read (the last exchange id counted)."""

    name = models.CharField(max_length=40, unique=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.value}"
