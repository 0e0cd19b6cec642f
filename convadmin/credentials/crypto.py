"""Secrets at rest: MultiFernet over ENCRYPTION_KEYS (the first key encrypts, every key decrypts)."""

from __future__ import annotations

import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS is empty: set at least one Fernet key.")
    fernets = []
    for index, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEYS entry {index} is not a Fernet key (32 url-safe base64-encoded bytes). "
                'Make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            ) from exc
    return MultiFernet(fernets)


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(secrets: dict[str, str]) -> str:
    return fernet().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict[str, str]:
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken:
        raise SecretUnreadable(
            "The stored secret cannot be decrypted with the configured ENCRYPTION_KEYS. If the keys were "
            "rotated, add the old key after the new one (comma-separated) and run rotate_encryption_keys."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` under the first key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("The stored secret cannot be decrypted with any configured key.") from None
