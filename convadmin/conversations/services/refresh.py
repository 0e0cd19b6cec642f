"""Read a created conversation back from the provider: its participants now, and what changed since."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

import providers
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services.common import (
    ActionRefused,
    CallFailed,
    Session,
    body_of,
    scrub,
)
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.jobs.durable import save_durably
from providers.base import ProviderError, dig
from providers.redact import redact_text

VOLATILE = {"date_updated", "dateUpdated", "updated_at", "url", "links"}


def participant_key(participant: Any, paths: tuple[str, ...]) -> str:
    """What identifies a participant across two reads: the first of the provider's ``paths`` it has."""
    for path in paths:
        value = dig(participant, path)
        if isinstance(value, str) and value:
            return value.lower() if "@" in value else value
    return json.dumps(participant, sort_keys=True, default=str)


def participant_differences(
    previous: list[Any], current: list[Any], paths: tuple[str, ...]
) -> dict[str, Any]:
    """Participants added, removed and changed (field by field) between two reads; ``paths`` identify one."""
    before = {participant_key(p, paths): p for p in previous}
    after = {participant_key(p, paths): p for p in current}
    changed = []
    for key in before.keys() & after.keys():
        old, new = before[key], after[key]
        if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
            continue
        fields = {
            name: {"before": old.get(name), "after": new.get(name)}
            for name in sorted(old.keys() | new.keys())
            if name not in VOLATILE and old.get(name) != new.get(name)
        }
        if fields:
            changed.append({"participant": key, "fields": fields})
    return {
        "added": [after[k] for k in after if k not in before],
        "removed": [before[k] for k in before if k not in after],
        "changed": sorted(changed, key=lambda c: c["participant"]),
    }


def do_refresh_conversation(
    conversation: Conversation, *, acting_user: Any, ip: str | None = None
) -> dict[str, Any]:
    """Read the conversation back from the provider; store its participants; return what changed.

    Returns ``{"added", "removed", "changed", "previous", "current", "previous_refreshed_at",
    "conversation"}``. Raises :class:`CallFailed` when the provider cannot answer (the exchanges are
    stored and the failed attempt audited).
    """
    if conversation.status != Status.CREATED or not conversation.external_id:
        raise ActionRefused("Only a created conversation can be refreshed from the provider.")
    module = providers.get(conversation.provider)
    session = Session(acting_user=acting_user, ip=ip)
    try:
        with session.open(conversation.credential, "refresh") as (credential, http):
            fetched = module.fetch(conversation.external_id, credential, http, body_of(conversation))
    except (SecretUnreadable, ProviderError) as exc:
        error = CallFailed(
            f"The provider could not be read: {redact_text(str(exc), session.secrets)}",
            code=getattr(exc, "code", None) or "secret_unreadable",
            status=getattr(exc, "status", None),
        )

        def write_failure() -> None:
            session.store(conversation.credential, conversation)
            record(
                EventType.CONVERSATION_REFRESHED,
                actor=acting_user,
                target=conversation,
                ip=ip,
                extra={"action": "refresh", "ok": False, "error": str(error)[:500], "error_code": error.code},
            )

        save_durably(write_failure)
        raise error from None
    previous = list(conversation.provider_participants or [])
    previous_refreshed_at = conversation.refreshed_at
    current = scrub(fetched.participants, session.secrets)
    paths = module.PARTICIPANT_IDENTITY
    differences = participant_differences(previous, current, paths)
    conversation.provider_participants = current
    conversation.refreshed_at = timezone.now()

    def write() -> None:
        conversation.save(update_fields=["provider_participants", "refreshed_at"])
        session.store(conversation.credential, conversation)
        record(
            EventType.CONVERSATION_REFRESHED,
            actor=acting_user,
            target=conversation,
            ip=ip,
            extra={
                "action": "refresh",
                "ok": True,
                "participants": len(current),
                "added": [participant_key(p, paths) for p in differences["added"]][:50],
                "removed": [participant_key(p, paths) for p in differences["removed"]][:50],
                "changed": [c["participant"] for c in differences["changed"]][:50],
            },
        )

    save_durably(write)
    return {
        **differences,
        "previous": previous,
        "current": current,
        "previous_refreshed_at": previous_refreshed_at,
        "conversation": scrub(fetched.conversation, session.secrets),
    }


def refresh_summary(result: dict[str, Any], conversation: Conversation) -> list[tuple[str, str]]:
    """What a refresh found, as ``(name, text)`` lines: participants added, removed, changed field by field."""
    paths = providers.get(conversation.provider).PARTICIPANT_IDENTITY
    lines = []
    if result.get("added"):
        lines.append(("Added", ", ".join(participant_key(p, paths) for p in result["added"])))
    if result.get("removed"):
        lines.append(("Removed", ", ".join(participant_key(p, paths) for p in result["removed"])))
    for change in result.get("changed") or []:
        fields = "; ".join(
            f"{name}: {_plain(v.get('before'))} → {_plain(v.get('after'))}"
            for name, v in change["fields"].items()
        )
        lines.append((f"Changed {change['participant']}", fields))
    return lines


def _plain(value: Any) -> str:
    return (
        "—" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    )
