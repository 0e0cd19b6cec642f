"""Writing the audit log. Call :func:`record` inside the transaction that makes the change."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpRequest

from convadmin.audit.models import AuditEvent, EventType


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address as Django sees it (REMOTE_ADDR; a proxy must set it right)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    event_type: EventType,
    *,
    actor: Any = None,
    target: models.Model | None = None,
    ip: str | None = None,
    extra: dict[str, Any] | None = None,
    actor_name: str = "",
) -> AuditEvent:
    """Append one audit event. ``extra`` holds old/new values and must never hold a secret."""
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        event_type=event_type,
        actor=actor if authenticated else None,
        actor_name=actor_name or (actor.get_username() if authenticated else ""),
        ip=ip,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:255] if target is not None else "",
        extra=extra or {},
    )
