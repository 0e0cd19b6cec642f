from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

import providers
from convadmin.credentials.models import Credential, provider_choices


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    CREATED = "created", "Created"
    FAILED = "failed", "Failed"


def record_title(name: str, provider: str, participants: list, external_id: str) -> str:
    """What people call a record (see :func:`providers.record_title`)."""
    return providers.record_title(provider, name, participants, external_id)


class Conversation(models.Model):
    """One attempt to create a conversation: saved as pending before the call, outcome after."""

    provider = models.CharField(max_length=20, choices=provider_choices)
    credential = models.ForeignKey(Credential, on_delete=models.PROTECT, related_name="conversations")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    name = models.CharField(max_length=512, blank=True)
    participants = models.JSONField(default=list, blank=True)  # identities as sent (summary)
    participant_count = models.PositiveIntegerField(default=0)
    #: Lower-cased name, participants and external id, for the list's search box.
    search_text = models.TextField(blank=True)
    request_body = models.JSONField(default=dict)  # the prepared body, as sent (no secrets in bodies)
    response_body = models.JSONField(default=dict, blank=True)
    provider_participants = models.JSONField(default=list, blank=True)  # as the provider reports them
    external_id = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome_unknown = models.BooleanField(default=False)
    #: What a look-up after an unknown outcome found: {"result": found|not_found|ambiguous|impossible|error, "message"}.
    lookup = models.JSONField(default=dict, blank=True)
    #: The conversation the provider already had when it refused a duplicate (HighLevel's contact).
    existing_conversation_id = models.CharField(max_length=255, blank=True)
    #: Seconds the provider asked us to wait (Retry-After on a 429), for the advice and for bulk pacing.
    retry_after = models.FloatField(null=True, blank=True)
    #: Jobs: the action queued or running on this record ("" when idle), until when a worker holds it, how
    #: many create calls were started (a second one looks the first up before sending), when the last was
    #: sent, when the settle job looks at an unknown outcome again, and the last action's result for the page.
    action = models.CharField(max_length=16, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    settle_after = models.DateTimeField(null=True, blank=True)
    action_result = models.JSONField(default=dict, blank=True)
    idempotency_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    #: The bulk create this record came from (None: made one at a time).
    batch = models.ForeignKey(
        "bulk.Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="conv_created"),
            models.Index(fields=["provider", "-created_at", "-id"], name="conv_provider_created"),
            models.Index(fields=["status", "-created_at", "-id"], name="conv_status_created"),
            models.Index(fields=["credential", "-created_at", "-id"], name="conv_credential_created"),
            models.Index(fields=["created_by", "-created_at", "-id"], name="conv_creator_created"),
            models.Index(fields=["external_id"], name="conv_external_id"),
            models.Index(fields=["settle_after"], name="conv_settle_after"),
        ]
        constraints = [
            # Two Retry clicks make one retry: a failed record has at most one attempt that is not failed.
            models.UniqueConstraint(
                fields=["retry_of"], condition=~models.Q(status="failed"), name="conv_one_live_retry"
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.participant_count = len(self.participants or [])
        self.search_text = " ".join([self.name, self.external_id, *map(str, self.participants or [])]).lower()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "participant_count", "search_text"}
        super().save(*args, **kwargs)

    @property
    def title(self) -> str:
        return record_title(self.name, self.provider, self.participants or [], self.external_id)

    @property
    def provider_label(self) -> str:
        return providers.NAMES.get(self.provider, self.provider)
