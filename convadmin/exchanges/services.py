"""Saving the HTTP exchanges a provider session recorded (already redacted by providers.http)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from convadmin.exchanges.models import Exchange

if TYPE_CHECKING:
    from convadmin.conversations.models import Conversation
    from convadmin.credentials.models import Credential
    from providers.http import Http


def store_exchanges(
    http: Http, *, credential: Credential, purpose: str, conversation: Conversation | None = None
) -> list[Exchange]:
    """Save every exchange ``http`` recorded (already redacted) and forget them."""
    rows = save_exchanges(http.exchanges, credential=credential, purpose=purpose, conversation=conversation)
    http.exchanges.clear()
    return rows


def save_exchanges(
    records: Iterable[Any], *, credential: Credential, purpose: str, conversation: Conversation | None = None
) -> list[Exchange]:
    """Save ``providers.http.Exchange`` records as rows."""
    return Exchange.objects.bulk_create(
        Exchange.from_record(record, credential=credential, conversation=conversation, purpose=purpose)
        for record in records
    )
