"""Calling a provider for a stored credential: one HTTP session whose rotated tokens are stored and audited.

Views never call httpx nor decrypt secrets: services use :func:`provider_session`, then save what it recorded
with ``convadmin.exchanges.services``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.jobs.durable import CONNECTION_LOST, save_durably
from providers.base import Credential as ProviderCredential
from providers.base import check_base_url
from providers.http import Http

if TYPE_CHECKING:
    from convadmin.credentials.models import Credential


def timeout() -> httpx.Timeout:
    return httpx.Timeout(settings.PROVIDER_TIMEOUT, connect=settings.PROVIDER_CONNECT_TIMEOUT)


class DestinationRefused(SecretUnreadable):
    """A stored URL setting names a host a secret may not be sent to (any more): nothing is sent."""


def check_destinations(credential: Credential) -> None:
    """Refuse to send a secret to a host that is no longer allowed (stored before the rule, or the
    operator removed it from ``PROVIDER_EXTRA_HOSTS``)."""
    for name, hosts in credential.provider_module.URL_HOSTS.items():
        url = credential.settings.get(name)
        errors = check_base_url(url, name, hosts, settings.PROVIDER_EXTRA_HOSTS) if url else []
        if errors:
            raise DestinationRefused(
                f"Nothing was sent: {errors[0].message} Change the URL on the credential page "
                "(with the secret typed again)."
            )


@contextmanager
def provider_session(
    credential: Credential,
    *,
    acting_user: Any = None,
    ip: str | None = None,
    audit_rotation: bool = True,
    purpose: str = "create",
) -> Iterator[tuple[ProviderCredential, Http]]:
    """The decrypted provider credential and an ``Http`` that knows its secrets (for redaction).

    A token the provider rotates during the call (a refresh token) is stored at once, in the same
    transaction as its ``credential_token_rotated`` audit event, whoever the caller is (a check, a
    create, a refresh); a cached access token is stored too, but is no rotation and is not audited.
    A refresh holds :func:`refresh_lock` on the credential's row. ``audit_rotation=False`` for the
    sign-in, which audits its new token itself.
    Raises :class:`SecretUnreadable` (or :class:`DestinationRefused`) before anything is sent.
    """
    check_destinations(credential)
    provider_credential = credential.to_provider()
    store = provider_credential.on_change
    cached = credential.provider_module.CACHED_SECRETS

    unsaved: list[tuple[dict[str, str], str, dict[str, str]]] = []  # a rotation the database did not take

    def write(secrets: dict[str, str], before: str, previous: dict[str, str]) -> None:
        store(secrets)
        if audit_rotation and credential.fingerprint != before:
            changed = (k for k, v in secrets.items() if v != previous.get(k) and k not in cached)
            record(
                EventType.CREDENTIAL_TOKEN_ROTATED,
                actor=acting_user,
                target=credential,
                ip=ip,
                extra={
                    "fields": sorted(changed),
                    "fingerprint": {"old": before, "new": credential.fingerprint},
                },
            )

    def store_and_audit(secrets: dict[str, str]) -> None:
        # A rotated single-use token is spent at the provider: it must reach the database, connection or not.
        args = (secrets, credential.fingerprint, dict(provider_secrets))
        if connection.in_atomic_block:  # inside the refresh lock: its transaction; a loss is retried after it
            try:
                with transaction.atomic():
                    write(*args)
            except CONNECTION_LOST:
                unsaved.append(args)
                raise
        else:
            save_durably(lambda: write(*args))
        provider_secrets.clear()
        provider_secrets.update(secrets)

    @contextmanager
    def locked() -> Iterator[None]:
        try:
            with refresh_lock(credential, reload):
                yield
        except CONNECTION_LOST:
            if unsaved:
                connection.close()
                save_durably(lambda: write(*unsaved.pop()))
            raise

    def reload(secrets: dict[str, str]) -> None:
        provider_credential.secrets.clear()
        provider_credential.secrets.update(secrets)
        provider_secrets.clear()
        provider_secrets.update(secrets)

    provider_credential.lock = locked
    provider_secrets = dict(provider_credential.secrets)
    provider_credential.on_change = store_and_audit if store else None
    with Http(
        provider_credential.secret_values(),
        timeout=timeout(),
        deadline=settings.PROVIDER_DEADLINE,
        purpose=purpose,
    ) as http:
        yield provider_credential, http


@contextmanager
def refresh_lock(credential: Credential, reload: Callable[[dict[str, str]], None]) -> Iterator[None]:
    """Hold the credential's row while a single-use token is refreshed, with its secrets read afresh.

    One short transaction: PostgreSQL locks the row (``select_for_update``), so a second caller waits
    and then reads the tokens the first stored (and uses them instead of spending the refresh token
    again). SQLite has no row locks: a write first takes its database write lock (the settings begin
    transactions IMMEDIATE already; the write keeps this right under any transaction mode).
    """
    with transaction.atomic():
        rows = type(credential).objects.filter(pk=credential.pk)
        if connection.vendor == "sqlite":
            rows.update(secret=F("secret"))
        stored = rows.select_for_update().only("secret", "secret_last4", "fingerprint").get()
        credential.secret = stored.secret
        credential.secret_last4 = stored.secret_last4
        credential.fingerprint = stored.fingerprint
        reload(credential.get_secrets())
        yield
