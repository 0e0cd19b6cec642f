"""Credential changes and provider calls, each written with its audit event in one transaction.

Audit ``extra`` holds labels, non-secret settings (old → new) and fingerprints, never a secret value.
"""

from __future__ import annotations

import logging
import secrets as secrets_module
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

import providers
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.models import Credential
from convadmin.exchanges import calls
from providers import msgraph
from providers.base import Credential as ProviderCredential
from providers.base import FieldError, InvalidCredential, ProviderError, is_loopback
from providers.redact import redact_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from providers.base import Provider

logger = logging.getLogger(__name__)

#: Who signed in with Microsoft and when: kept in settings, shown on the credential page.
SIGN_IN_SETTINGS = ("signed_in_as", "signed_in_name", "signed_in_at")
#: Secrets a replacement keeps when it leaves them out: Graph's refresh token comes from signing in.
KEPT_SECRETS = {"msgraph": ("refresh_token",)}
URL_SETTINGS = ("base_url", "login_url")
LABEL_MAX_LENGTH = Credential._meta.get_field("label").max_length


class LabelTaken(InvalidCredential):
    """Another credential already has this label."""

    def __init__(self, label: str):
        super().__init__([FieldError("label", f"A credential labelled “{label}” already exists.")])
        self.label = label


def provider_module(name: str) -> Provider:
    try:
        return providers.get(name)
    except KeyError:
        raise InvalidCredential(
            [
                FieldError(
                    "provider", f"Unknown provider “{name}”; choose one of {', '.join(providers.NAMES)}."
                )
            ]
        ) from None


def secret_field_names(provider: str) -> set[str]:
    return {f.name for f in providers.get(provider).CREDENTIAL_FIELDS if f.secret}


def setting_field_names(provider: str) -> list[str]:
    """The non-secret settings an administrator may type: the provider's fields and URL overrides."""
    names = [f.name for f in providers.get(provider).CREDENTIAL_FIELDS if not f.secret]
    return [*names, "base_url", *(["login_url"] if provider == "msgraph" else [])]


def _clean_label(label: str) -> str:
    label = (label or "").strip()
    if not label:
        raise InvalidCredential([FieldError("label", "A label is required.")])
    if len(label) > LABEL_MAX_LENGTH:
        raise InvalidCredential([FieldError("label", f"Use at most {LABEL_MAX_LENGTH} characters.")])
    return label


def is_sandbox(settings: dict[str, Any]) -> bool:
    """True when the credential points at a loopback host (the sandbox emulator, a local fake)."""
    url = settings.get("base_url")
    host = urlsplit(url).hostname if isinstance(url, str) and url else None
    return bool(host) and is_loopback(host)


def _snapshot(credential: Credential) -> dict[str, Any]:
    return {
        "label": credential.label,
        **credential.settings,
        "sandbox": credential.sandbox,
        "fingerprint": credential.fingerprint,
    }


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {"old": old.get(key), "new": new.get(key)}
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    }


def _kept_sign_in(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: settings[k] for k in SIGN_IN_SETTINGS if k in settings}


def _reset_check(credential: Credential) -> None:
    credential.last_checked_at = None
    credential.last_check_ok = None
    credential.last_check_message = ""


@sensitive_variables()
def do_add_credential(
    provider: str,
    label: str,
    data: dict[str, Any],
    *,
    acting_user: AbstractBaseUser,
    ip: str | None = None,
    replace: bool = False,
) -> Credential:
    """Parse ``data`` (the provider's credential JSON) and store it under ``label``.

    Raises :class:`InvalidCredential` (errors keyed by field), :class:`LabelTaken` when the label
    exists and ``replace`` is False. ``replace`` overwrites the settings and secrets of an existing
    credential of the same provider.
    """
    module = provider_module(provider)
    label = _clean_label(label)
    parsed = module.parse_credential(data)
    now = timezone.now()
    with transaction.atomic(durable=True):
        existing = Credential.objects.select_for_update().filter(label=label).first()
        if existing is not None and not replace:
            raise LabelTaken(label)
        if existing is not None:
            if existing.provider != provider:
                raise InvalidCredential(
                    [
                        FieldError(
                            "provider",
                            f"“{label}” is a {existing.provider_label} credential; replacing cannot change "
                            "its provider. Choose another label.",
                        )
                    ]
                )
            old = _snapshot(existing)
            existing.settings = parsed.settings
            existing.sandbox = is_sandbox(parsed.settings)
            existing.set_secrets(parsed.secrets)
            existing.secret_updated_at = now
            _reset_check(existing)
            existing.save()
            record(
                EventType.CREDENTIAL_SECRET_REPLACED,
                actor=acting_user,
                target=existing,
                ip=ip,
                extra={"replaced": True, "changes": _changes(old, _snapshot(existing))},
            )
            return existing
        credential = Credential(
            provider=provider,
            label=label,
            settings=parsed.settings,
            sandbox=is_sandbox(parsed.settings),
            created_by=acting_user,
            secret_updated_at=now,
        )
        credential.set_secrets(parsed.secrets)
        credential.save()
        record(
            EventType.CREDENTIAL_ADDED,
            actor=acting_user,
            target=credential,
            ip=ip,
            extra={
                "provider": provider,
                "label": label,
                "settings": parsed.settings,
                "sandbox": credential.sandbox,
                "fingerprint": credential.fingerprint,
            },
        )
    return credential


@sensitive_variables()
def do_edit_credential(
    credential: Credential,
    settings_changes: dict[str, Any],
    *,
    acting_user: AbstractBaseUser,
    ip: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Change the label and non-secret settings (an empty value removes a setting).

    The result is validated together with the stored secrets, so a combination the provider refuses
    is refused here too. Returns the audited old → new values ({} when nothing changed).
    Raises :class:`InvalidCredential`, or :class:`SecretUnreadable` when the secrets cannot be read.
    """
    changes = dict(settings_changes)
    label = _clean_label(changes.pop("label", credential.label))
    if secret_field_names(credential.provider) & changes.keys():
        raise ValueError("do_edit_credential changes non-secret settings only.")
    if (
        label != credential.label
        and Credential.objects.filter(label=label).exclude(pk=credential.pk).exists()
    ):
        raise LabelTaken(label)
    merged = {**credential.settings, **changes}
    merged = {k: v for k, v in merged.items() if v not in (None, "") and k not in SIGN_IN_SETTINGS}
    parsed = credential.provider_module.parse_credential({**merged, **credential.get_secrets()})
    new_settings = {**parsed.settings, **_kept_sign_in(credential.settings)}
    with transaction.atomic(durable=True):
        old = _snapshot(credential)
        credential.label = label
        credential.settings = new_settings
        credential.sandbox = is_sandbox(new_settings)
        diff = _changes(old, _snapshot(credential))
        if not diff:
            return {}
        credential.save(update_fields=["label", "settings", "sandbox", "updated_at"])
        record(EventType.CREDENTIAL_EDITED, actor=acting_user, target=credential, ip=ip, extra=diff)
    return diff


@sensitive_variables()
def do_replace_secret(
    credential: Credential,
    secret_data: dict[str, Any],
    *,
    acting_user: AbstractBaseUser,
    ip: str | None = None,
    whole: bool = False,
) -> Credential:
    """Replace the secrets, validated together with the stored settings.

    ``secret_data`` holds the new secret fields; empty ones are ignored, except that the set given
    replaces the stored set (Graph's signed-in refresh token is kept unless a new one is given).
    ``whole``: ``secret_data`` is a complete credential file (a new Mixin keystore) whose settings
    replace the stored ones too; a stored ``base_url`` is kept unless the file has its own.
    """
    secret_names = secret_field_names(credential.provider)
    if whole:
        data = {
            **{k: credential.settings[k] for k in URL_SETTINGS if k in credential.settings},
            **secret_data,
        }
        given = {k for k in secret_names if secret_data.get(k)}
    else:
        given_values = {k: v for k, v in secret_data.items() if k in secret_names and v not in (None, "")}
        if not given_values:
            raise InvalidCredential([FieldError("secret", "Enter the new secret.")])
        given = set(given_values)
        kept: dict[str, str] = {}
        names = [k for k in KEPT_SECRETS.get(credential.provider, ()) if k not in given]
        if names:
            try:
                stored = credential.get_secrets()
            except SecretUnreadable:
                stored = {}
            kept = {k: stored[k] for k in names if stored.get(k)}
        settings = {k: v for k, v in credential.settings.items() if k not in SIGN_IN_SETTINGS}
        data = {**settings, **kept, **given_values}
    parsed = credential.provider_module.parse_credential(data)
    new_settings = dict(parsed.settings)
    if "refresh_token" not in given and parsed.secrets.get("refresh_token"):
        new_settings.update(_kept_sign_in(credential.settings))  # still the same signed-in account
    with transaction.atomic(durable=True):
        old = _snapshot(credential)
        credential.settings = new_settings
        credential.sandbox = is_sandbox(new_settings)
        credential.set_secrets(parsed.secrets)
        credential.secret_updated_at = timezone.now()
        _reset_check(credential)
        credential.save()
        record(
            EventType.CREDENTIAL_SECRET_REPLACED,
            actor=acting_user,
            target=credential,
            ip=ip,
            extra={"fields": sorted(given), "changes": _changes(old, _snapshot(credential))},
        )
    return credential


def do_set_disabled(
    credential: Credential, disabled: bool, *, acting_user: AbstractBaseUser, ip: str | None = None
) -> bool:
    """Disable or enable; returns False when it already was."""
    with transaction.atomic(durable=True):
        if credential.disabled == disabled:
            return False
        credential.disabled = disabled
        credential.save(update_fields=["disabled", "updated_at"])
        record(
            EventType.CREDENTIAL_DISABLED if disabled else EventType.CREDENTIAL_ENABLED,
            actor=acting_user,
            target=credential,
            ip=ip,
            extra={"disabled": {"old": not disabled, "new": disabled}},
        )
    return True


@sensitive_variables()
def do_check_credential(
    credential: Credential, *, acting_user: AbstractBaseUser, ip: str | None = None
) -> tuple[bool, str]:
    """Call the provider's ``check``; store the exchanges, the result on the credential and its audit event."""
    before = credential.fingerprint
    http = None
    try:
        with calls.provider_session(credential) as (provider_credential, http):
            try:
                ok, message = True, credential.provider_module.check(provider_credential, http)
            except ProviderError as exc:
                ok, message = False, str(exc)
            except Exception as exc:  # a provider bug: keep the record of what was sent, say so plainly
                logger.exception("Checking credential %s failed unexpectedly", credential.pk)
                ok, message = (
                    False,
                    f"Unexpected error while checking ({exc.__class__.__name__}); see the log.",
                )
            message = redact_text(message, http.secrets)
    except SecretUnreadable as exc:
        ok, message = False, str(exc)
    with transaction.atomic(durable=True):
        if http is not None:
            calls.store_exchanges(http, credential=credential, purpose="check")
        credential.last_checked_at = timezone.now()
        credential.last_check_ok = ok
        credential.last_check_message = message
        credential.save(update_fields=["last_checked_at", "last_check_ok", "last_check_message"])
        record(
            EventType.CREDENTIAL_CHECKED,
            actor=acting_user,
            target=credential,
            ip=ip,
            extra={"ok": ok, "message": message},
        )
        if credential.fingerprint != before:
            record(
                EventType.CREDENTIAL_TOKEN_ROTATED,
                actor=acting_user,
                target=credential,
                ip=ip,
                extra={"fingerprint": {"old": before, "new": credential.fingerprint}},
            )
    return ok, message


# --- Microsoft sign-in ----------------------------------------------------------------------------


def microsoft_sign_in_start(credential: Credential, *, redirect_uri: str) -> tuple[str, str, str]:
    """``(authorize_url, state, code_verifier)`` for a new sign-in; the caller keeps state and verifier."""
    state = secrets_module.token_urlsafe(32)
    verifier, challenge = msgraph.pkce_pair()
    # The authorize URL needs only settings: no secret is decrypted for it.
    settings_only = ProviderCredential(provider=credential.provider, settings=dict(credential.settings))
    url = msgraph.authorize_url(
        settings_only, redirect_uri=redirect_uri, state=state, code_challenge=challenge
    )
    return url, state, verifier


@sensitive_variables()
def do_microsoft_sign_in(
    credential: Credential,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    acting_user: AbstractBaseUser,
    ip: str | None = None,
) -> msgraph.SignedIn:
    """Redeem the sign-in ``code``: the refresh token is stored (encrypted) as soon as Microsoft returns it.

    Raises :class:`ProviderError` (exchanges stored) or :class:`SecretUnreadable`.
    """
    before = credential.fingerprint
    with calls.provider_session(credential) as (provider_credential, http):
        try:
            signed_in = msgraph.redeem_code(
                provider_credential,
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
                http=http,
            )
        except ProviderError:
            calls.store_exchanges(http, credential=credential, purpose="sign-in")
            if credential.fingerprint != before:
                # The new refresh token is stored but the account could not be read: say so.
                unknown = msgraph.SignedIn(user="", display_name="", obtained_at=datetime.now(UTC))
                do_store_microsoft_sign_in(credential, unknown, acting_user=acting_user, ip=ip)
            raise
        calls.store_exchanges(http, credential=credential, purpose="sign-in")
    do_store_microsoft_sign_in(credential, signed_in, acting_user=acting_user, ip=ip)
    return signed_in


def do_store_microsoft_sign_in(
    credential: Credential,
    signed_in: msgraph.SignedIn,
    *,
    acting_user: AbstractBaseUser,
    ip: str | None = None,
) -> None:
    """Record who signed in and when (the refresh token itself was stored by ``to_provider``)."""
    with transaction.atomic(durable=True):
        old = credential.settings.get("signed_in_as")
        credential.settings = {
            **credential.settings,
            "signed_in_as": signed_in.user,
            "signed_in_name": signed_in.display_name,
            "signed_in_at": signed_in.obtained_at.isoformat(),
        }
        credential.save(update_fields=["settings", "updated_at"])
        record(
            EventType.CREDENTIAL_SIGNED_IN,
            actor=acting_user,
            target=credential,
            ip=ip,
            extra={
                "account": signed_in.user,
                "name": signed_in.display_name,
                "signed_in_as": {"old": old, "new": signed_in.user},
                "fingerprint": credential.fingerprint,
            },
        )
