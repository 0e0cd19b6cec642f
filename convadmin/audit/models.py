"""The audit log: append-only rows written by service functions in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    LOGIN = "login", "Logged in"
    LOGOUT = "logout", "Logged out"
    LOGIN_FAILED = "login_failed", "Failed login"
    FIRST_ADMIN_CREATED = "first_admin_created", "First administrator created"
    USER_CREATED = "user_created", "User created"
    USER_CHANGED = "user_changed", "User role or status changed"
    PASSWORD_CHANGED = "password_changed", "Password changed"
    CREDENTIAL_ADDED = "credential_added", "Credential added"
    CREDENTIAL_EDITED = "credential_edited", "Credential edited"
    CREDENTIAL_SECRET_REPLACED = "credential_secret_replaced", "Credential secret replaced"
    CREDENTIAL_CHECKED = "credential_checked", "Credential checked"
    CREDENTIAL_DISABLED = "credential_disabled", "Credential disabled"
    CREDENTIAL_ENABLED = "credential_enabled", "Credential enabled"
    CREDENTIAL_SIGNED_IN = "credential_signed_in", "Microsoft account signed in"
    CREDENTIAL_TOKEN_ROTATED = "credential_token_rotated", "Credential token rotated"
    CONVERSATION_REQUESTED = "conversation_requested", "Conversation requested"
    CONVERSATION_CREATED = "conversation_created", "Conversation created"
    CONVERSATION_FAILED = "conversation_failed", "Conversation failed"
    CONVERSATION_REFRESHED = "conversation_refreshed", "Conversation refreshed"
    CONVERSATION_RETRIED = "conversation_retried", "Conversation retried"
    CONVERSATIONS_EXPORTED = "conversations_exported", "Conversations exported"
    AUDIT_EXPORTED = "audit_exported", "Audit log exported"
    EXPORT_DOWNLOADED = "export_downloaded", "Export downloaded"
    KEYS_ROTATED = "keys_rotated", "Encryption keys rotated"
    TEMPLATE_SAVED = "template_saved", "Template saved"
    TEMPLATE_RENAMED = "template_renamed", "Template renamed"
    TEMPLATE_DELETED = "template_deleted", "Template deleted"
    BATCH_UPLOADED = "batch_uploaded", "Bulk file uploaded"
    BATCH_STARTED = "batch_started", "Bulk create started"
    BATCH_PAUSED = "batch_paused", "Bulk create paused"
    BATCH_RESUMED = "batch_resumed", "Bulk create resumed"
    BATCH_CANCELLED = "batch_cancelled", "Bulk create cancelled"
    BATCH_FINISHED = "batch_finished", "Bulk create finished"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One audit row. Append-only in the ORM (below) and in the database itself: a trigger refuses any
    UPDATE or DELETE of the table (migration 0002), so users are deactivated, never deleted."""

    event_time = models.DateTimeField(auto_now_add=True, db_index=True)
    event_type = models.CharField(max_length=40, choices=EventType.choices, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    extra = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-event_time", "-id"]
        indexes = [
            models.Index(fields=["-event_time", "-id"], name="audit_time_id"),
            models.Index(fields=["event_type", "-event_time"], name="audit_type_time"),
            models.Index(fields=["actor", "-event_time"], name="audit_actor_time"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.event_time:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.get_event_type_display()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")
