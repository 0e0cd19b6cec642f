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
    #: The pace the job keeps: at most ``rate_requests`` creates per ``rate_seconds`` (see limits.py).
    rate_requests = models.PositiveIntegerField(default=1)
    rate_seconds = models.FloatField(default=1.0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Written by the job before each row: a running batch whose job stopped (a killed worker) goes stale
    #: and may be resumed.
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

    class Meta:
        ordering = ["number"]
        indexes = [models.Index(fields=["batch", "status", "number"], name="bulk_row_status")]
        constraints = [models.UniqueConstraint(fields=["batch", "number"], name="bulk_row_number")]

    def __str__(self) -> str:
        return f"Row {self.number} of batch {self.batch_id}"
