from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings as django_settings
from django.db import models
from django.utils import timezone

import providers
from convadmin.credentials import crypto
from providers.base import Credential as ProviderCredential


def provider_choices() -> list[tuple[str, str]]:
    """Every registered provider (a callable, so a new provider needs no migration)."""
    return list(providers.NAMES.items())


class CredentialQuerySet(models.QuerySet):
    def enabled(self) -> CredentialQuerySet:
        return self.filter(disabled=False)


class Credential(models.Model):
    """A provider credential: non-secret settings in clear, secrets encrypted and write-only."""

    provider = models.CharField(max_length=20, choices=provider_choices)
    label = models.CharField(max_length=100, unique=True)
    settings = models.JSONField(default=dict, blank=True)
    secret = models.TextField(editable=False)  # Fernet token of the secrets' JSON
    secret_last4 = models.CharField(max_length=4, blank=True, editable=False)
    fingerprint = models.CharField(max_length=16, blank=True, editable=False)
    sandbox = models.BooleanField(default=False, help_text="Points at the sandbox emulator (QA and demos).")
    disabled = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    secret_updated_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True)
    last_check_message = models.TextField(blank=True)
    #: A Check job holds the credential until then (one check at a time; the page polls meanwhile).
    check_until = models.DateTimeField(null=True, blank=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "label"]

    def __str__(self) -> str:
        return self.label

    @property
    def provider_module(self) -> providers.base.Provider:
        return providers.get(self.provider)

    @property
    def checking(self) -> bool:
        """A Check job is queued or running for the credential."""
        return self.check_until is not None and self.check_until > timezone.now()

    @property
    def provider_label(self) -> str:
        return providers.NAMES.get(self.provider, self.provider)

    def set_secrets(self, secrets: dict[str, str]) -> None:
        """Encrypt ``secrets``; keep only the last 4 characters of the main one and a fingerprint."""
        self.secret = crypto.encrypt(secrets)
        main = next(
            (
                secrets[f.name]
                for f in self.provider_module.CREDENTIAL_FIELDS
                if f.secret and secrets.get(f.name)
            ),
            next(iter(secrets.values()), ""),
        )
        self.secret_last4 = main[-4:] if len(main) >= 12 else ""
        # A cached access token changes hourly: it is not what the fingerprint identifies.
        cached = self.provider_module.CACHED_SECRETS
        kept = {k: v for k, v in secrets.items() if k not in cached}
        digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
        self.fingerprint = digest[:12]

    def get_secrets(self) -> dict[str, str]:
        """Decrypt the secrets (services only; never into a page, log or export)."""
        return crypto.decrypt(self.secret)

    def to_provider(self, **overrides: Any) -> ProviderCredential:
        """The provider-side credential; rotated secrets (refresh tokens, a cached access token) are saved
        at once. ``calls.provider_session`` adds the lock a refresh holds."""

        def persist(secrets: dict[str, str]) -> None:
            self.set_secrets(secrets)
            Credential.objects.filter(pk=self.pk).update(
                secret=self.secret, secret_last4=self.secret_last4, fingerprint=self.fingerprint
            )

        return ProviderCredential(
            provider=self.provider,
            settings={**self.settings, **overrides},
            secrets=self.get_secrets(),
            on_change=persist,
        )

    @property
    def secret_display(self) -> str:
        last4 = f"…{self.secret_last4} · " if self.secret_last4 else ""
        return f"{last4}sha256:{self.fingerprint}"
