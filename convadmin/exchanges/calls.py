"""Calling a provider for a stored credential: one HTTP session, exchanges stored afterwards.

Views never call httpx nor decrypt secrets: services use :func:`provider_session` and :func:`store_exchanges`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from convadmin.exchanges.models import Exchange
from providers.base import Credential as ProviderCredential
from providers.http import Http

if TYPE_CHECKING:
    from convadmin.conversations.models import Conversation
    from convadmin.credentials.models import Credential


def timeout() -> httpx.Timeout:
    return httpx.Timeout(settings.PROVIDER_TIMEOUT, connect=settings.PROVIDER_CONNECT_TIMEOUT)


@contextmanager
def provider_session(credential: Credential, **overrides: Any) -> Iterator[tuple[ProviderCredential, Http]]:
    """The decrypted provider credential and an ``Http`` that knows its secrets (for redaction)."""
    provider_credential = credential.to_provider(**overrides)
    with Http(provider_credential.secret_values(), timeout=timeout()) as http:
        yield provider_credential, http


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
