"""Saving the HTTP exchanges a provider session recorded (already redacted by providers.http)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from convadmin.exchanges.models import Exchange

if TYPE_CHECKING:
    from convadmin.conversations.models import Conversation
    from convadmin.credentials.models import Credential


def save_exchanges(
    records: Iterable[Any], *, credential: Credential, conversation: Conversation | None = None
) -> list[Exchange]:
    """Save ``providers.http.Exchange`` records (each tagged with its purpose by ``Http``) as rows."""
    return Exchange.objects.bulk_create(
        Exchange.from_record(record, credential=credential, conversation=conversation) for record in records
    )
