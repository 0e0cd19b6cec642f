"""The conversation jobs (``django.tasks``): each is a thin wrapper over a service that is safe to run twice."""

from __future__ import annotations

from typing import Any

from django.tasks import task

from convadmin.conversations import services


@task
def create_conversation(pk: int, ip: str | None = None) -> str:
    """Send one pending record (or settle it by look-up when an earlier attempt may have sent it)."""
    return services.run_create(pk, ip=ip).status


@task
def run_conversation_action(pk: int, action: str, user_id: int | None, ip: str | None) -> dict[str, Any]:
    """Retry, Check with provider or Refresh, started from the record's page."""
    return services.run_action(pk, action, user_id, ip)


@task
def settle_conversations() -> int:
    """Every minute (JOBS_SCHEDULE): nothing stays pending, unknown outcomes are looked up again."""
    return len(services.settle_conversations())
