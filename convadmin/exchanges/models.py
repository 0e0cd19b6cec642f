"""The record of one HTTP exchange with a provider, whatever asked for it: a conversation's create, look-up
or refresh, or a credential's check or sign-in. Below both apps: it names them only by string."""

from __future__ import annotations

from typing import Any

from django.db import models


class Purpose(models.TextChoices):
    CREATE = "create", "Create"
    LOOKUP = "lookup", "Look-up"
    REFRESH = "refresh", "Refresh"
    CHECK = "check", "Check"
    SIGN_IN = "sign-in", "Sign-in"


class Exchange(models.Model):
    """One HTTP exchange with a provider, already redacted by providers.redact."""

    conversation = models.ForeignKey(
        "conversations.Conversation",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="exchanges",
    )
    credential = models.ForeignKey(
        "credentials.Credential", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.CREATE)
    method = models.CharField(max_length=10)
    url = models.TextField()
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField(blank=True)
    request_size = models.PositiveIntegerField(default=0)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.TextField(blank=True)
    response_size = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)
    started_at = models.DateTimeField()

    class Meta:
        db_table = "conversations_exchange"  # its first home; the table stayed when the model moved here
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.method} {self.url} → {self.status or self.error}"

    @classmethod
    def from_record(cls, record: Any, **links: Any) -> Exchange:
        """An unsaved row from a ``providers.http.Exchange``."""
        return cls(**record.as_dict(), **links)
