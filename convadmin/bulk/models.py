"""A bulk create: one uploaded file (a batch) and its rows; each sent row becomes a normal conversation record
that names its batch (``Conversation.batch``)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from convadmin.credentials.models import Credential, provider_choices
from convadmin.drafts.models import ConversationTemplate


class State(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELLED = "cancelled", "Cancelled"
    DONE = "done", "Done"


class RowStatus(models.TextChoices):
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"
    DUPLICATE = "duplicate", "Duplicate"
    PENDING = "pending", "Pending"
    CREATED = "created", "Created"
    FAILED = "failed", "Failed"


class Batch(models.Model):
    provider = models.CharField(max_length=20, choices=provider_choices)
    credential = models.ForeignKey(Credential, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    file_name = models.CharField(max_length=255)
    #: The saved template whose values filled the file's blank cells (its name is kept if it is deleted).
    template = models.ForeignKey(
        ConversationTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    template_name = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    blank_rows = models.PositiveIntegerField(default=0)
    #: The credential's limits when the batch last started or resumed (see limits.py): at most ``rate_requests``
    #: creates per ``rate_seconds`` (shared by every batch of the credential), ``concurrency`` rows in flight.
    rate_requests = models.PositiveIntegerField(default=1)
    rate_seconds = models.FloatField(default=1.0)
    concurrency = models.PositiveSmallIntegerField(default=1)
    #: Raised by every start and resume: a sender of an earlier run stops at its next row.
    generation = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Written by the senders at each row and while they wait: a running batch whose senders all stopped (a
    #: killed worker) goes stale, and is resumed by hand or by the ``resume_stalled_batches`` job.
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Batch {self.pk} ({self.file_name})"


class BatchRow(models.Model):
    """One data row of the file: its cells, the body they make, its problems, and once sent its record."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="rows")
    number = models.PositiveIntegerField()  # the line in the file (the header is line 1)
    status = models.CharField(max_length=10, choices=RowStatus.choices)
    values = models.JSONField(default=dict)  # the cells as read, by column
    body = models.JSONField(default=dict)
    #: Each problem as {"column", "label", "message", "value"}.
    errors = models.JSONField(default=list, blank=True)
    natural_key = models.CharField(max_length=512, blank=True)
    #: The create key of the row's record: a re-run finds the record it made instead of sending again.
    key = models.UUIDField(default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        "conversations.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: A sender holds the row until then (a killed sender's row is taken again once it passes), and which.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    #: 429 answers so far (the row is sent again after the provider's Retry-After, a few times).
    throttled = models.PositiveSmallIntegerField(default=0)
    #: Send the row's failed attempt again (after a 429, or "Retry the failed rows").
    retry = models.BooleanField(default=False)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        indexes = [
            models.Index(fields=["batch", "status", "number"], name="bulk_row_status"),
            # The live claims of a credential (its rows in flight): a short range of future times.
            models.Index(fields=["claimed_until"], name="bulk_row_claim"),
        ]
        constraints = [models.UniqueConstraint(fields=["batch", "number"], name="bulk_row_number")]

    def __str__(self) -> str:
        return f"Row {self.number} of batch {self.batch_id}"


class Pace(models.Model):
    """A credential's send slots, shared by all its batches and every process: the next free slot (a Unix time)
    is taken under a row lock, a leaky bucket (see limits.py)."""

    credential = models.OneToOneField(
        Credential, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    next_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"Pace of credential {self.credential_id}"
