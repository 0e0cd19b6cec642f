"""Credential changes and provider calls, each written with its audit event in one transaction.

Audit ``extra`` holds labels, non-secret settings (old → new) and fingerprints, never a secret value.
"""

from __future__ import annotations

import logging
import secrets as secrets_module
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

import providers
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.credentials import calls
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.models import Credential
from convadmin.exchanges.services import save_exchanges
from convadmin.jobs.enqueue import enqueue_in_transaction
from providers import msgraph
from providers.base import Credential as ProviderCredential
from providers.base import FieldError, InvalidCredential, ProviderError, is_loopback
from providers.redact import redact_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from providers.base import Provider

logger = logging.getLogger(__name__)

#: Who signed in with Microsoft and when: kept in settings, shown on the credential page.
#: ``signed_in_via`` is "given" when the refresh token came with the credential (file or form), not a sign-in here.
SIGN_IN_SETTINGS = ("signed_in_as", "signed_in_name", "signed_in_at", "signed_in_via")
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
    module = providers.get(provider)
    return [*(f.name for f in module.CREDENTIAL_FIELDS if not f.secret), *module.URL_HOSTS]


def kept_secrets(provider: str) -> tuple[str, ...]:
    """Secrets a replacement keeps when it leaves them out (the provider's ``KEPT_SECRETS``: obtained by
    signing in, not typed)."""
    return providers.get(provider).KEPT_SECRETS if provider in providers.NAMES else ()


def sign_in_providers() -> list[str]:
    """The providers whose credentials a person signs in to through the browser (``SIGN_IN``)."""
    return [name for name in providers.NAMES if providers.get(name).SIGN_IN]


def retyped_secret_names(provider: str) -> list[str]:
    """The secrets to type again when a URL setting changes (not those obtained by signing in)."""
    kept = kept_secrets(provider)
    return [f.name for f in providers.get(provider).CREDENTIAL_FIELDS if f.secret and f.name not in kept]


@sensitive_variables()
def parse(provider: str, data: dict[str, Any]) -> ProviderCredential:
    """The provider's own parsing, with the operator's extra hosts (``PROVIDER_EXTRA_HOSTS``)."""
    return provider_module(provider).parse_credential(data, django_settings.PROVIDER_EXTRA_HOSTS)


@sensitive_variables()
def credential_errors(provider: str, data: dict[str, Any]) -> list[FieldError]:
    """Every problem the provider finds in ``data`` ([] when it would be accepted)."""
    try:
        parse(provider, data)
    except InvalidCredential as exc:
        return exc.errors
    return []


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


def _given_sign_in(provider: str, secrets: dict[str, str]) -> dict[str, Any]:
    """A refresh token that came with the credential, not from a sign-in here: say when, not whose."""
    if not any(secrets.get(k) for k in kept_secrets(provider)):
        return {}
    return {"signed_in_at": timezone.now().isoformat(), "signed_in_via": "given"}


def _host(url: str | None) -> str:
    return (urlsplit(url).netloc if url else "") or "the provider's default host"


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
    provider_module(provider)
    errors: list[FieldError] = []
    try:
        label = _clean_label(label)
    except InvalidCredential as exc:
        errors += exc.errors
    errors += credential_errors(provider, data)
    if errors:  # every problem in one answer, the label's included
        if label and not replace and Credential.objects.filter(label=label.strip()).exists():
            errors.insert(0, LabelTaken(label.strip()).errors[0])
        raise InvalidCredential(errors)
    parsed = parse(provider, data)
    parsed.settings.update(_given_sign_in(provider, parsed.secrets))
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
    secret_data: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Change the label and non-secret settings (an empty value removes a setting).

    Changing where the secret is sent (``base_url``, ``login_url``) needs the secret typed again in
    ``secret_data``: the stored secrets never go to a new host, so an administrator cannot redirect them
    to a host of their own; a Graph sign-in is dropped with them. Secrets typed without a URL change
    replace the stored ones as "Replace the secret" would. The result is validated together with the
    secrets. Returns the audited old → new values ({} when nothing changed).
    Raises :class:`InvalidCredential`, or :class:`SecretUnreadable` when the secrets cannot be read.
    """
    changes = dict(settings_changes)
    label = _clean_label(changes.pop("label", credential.label))
    secret_names = secret_field_names(credential.provider)
    if secret_names & changes.keys():
        raise ValueError("do_edit_credential takes secrets in secret_data only.")
    if (
        label != credential.label
        and Credential.objects.filter(label=label).exclude(pk=credential.pk).exists()
    ):
        raise LabelTaken(label)
    merged = {**credential.settings, **changes}
    merged = {k: v for k, v in merged.items() if v not in (None, "") and k not in SIGN_IN_SETTINGS}
    moved = [
        name
        for name in credential.provider_module.URL_HOSTS
        if (credential.settings.get(name) or "").rstrip("/") != (merged.get(name) or "").strip().rstrip("/")
    ]
    given = {k: v for k, v in (secret_data or {}).items() if k in secret_names and v not in (None, "")}
    if moved and not given:
        fields = {f.name: f.label for f in credential.provider_module.CREDENTIAL_FIELDS}
        needed = " or ".join(fields[n] for n in retyped_secret_names(credential.provider))
        raise InvalidCredential(
            [
                FieldError(
                    name,
                    f"Changing where the secret is sent needs the secret typed again: enter the {needed} "
                    "in this form too.",
                )
                for name in moved
            ]
        )
    if given:
        kept = {} if moved else _stored(credential, kept_secrets(credential.provider), given)
        parsed = parse(credential.provider, {**merged, **kept, **given})
    else:
        parsed = parse(credential.provider, {**merged, **credential.get_secrets()})
    if moved:
        sign_in = _given_sign_in(credential.provider, given)  # the old sign-in was for the old host
    elif set(kept_secrets(credential.provider)) & given.keys():
        sign_in = _given_sign_in(credential.provider, given)
    else:
        sign_in = _kept_sign_in(credential.settings)
    new_settings = {**parsed.settings, **sign_in}
    with transaction.atomic(durable=True):
        old = _snapshot(credential)
        credential.label = label
        credential.settings = new_settings
        credential.sandbox = is_sandbox(new_settings)
        if given:
            credential.set_secrets(parsed.secrets)
        diff = _changes(old, _snapshot(credential))
        if not diff:
            return {}
        if given:
            credential.secret_updated_at = timezone.now()
            _reset_check(credential)
            diff["secret_retyped"] = sorted(given)
        if moved:
            diff["destination"] = {
                name: {"old": _host(old.get(name)), "new": _host(new_settings.get(name))} for name in moved
            }
        if given:
            credential.save()
        else:  # the stored secrets may have rotated since this page was loaded: leave them as they are
            credential.save(update_fields=["label", "settings", "sandbox", "updated_at"])
        record(EventType.CREDENTIAL_EDITED, actor=acting_user, target=credential, ip=ip, extra=diff)
    return diff


def _stored(credential: Credential, names: tuple[str, ...], given: dict[str, Any]) -> dict[str, str]:
    """The stored secrets among ``names`` not given anew (unreadable ones are simply not kept)."""
    names = tuple(n for n in names if n not in given)
    if not names:
        return {}
    try:
        stored = credential.get_secrets()
    except SecretUnreadable:
        return {}
    return {k: stored[k] for k in names if stored.get(k)}


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
        kept = _stored(credential, kept_secrets(credential.provider), given_values)
        settings = {k: v for k, v in credential.settings.items() if k not in SIGN_IN_SETTINGS}
        data = {**settings, **kept, **given_values}
    parsed = parse(credential.provider, data)
    new_settings = dict(parsed.settings)
    if "refresh_token" not in given and parsed.secrets.get("refresh_token"):
        new_settings.update(_kept_sign_in(credential.settings))  # still the same signed-in account
    else:
        new_settings.update(
            _given_sign_in(credential.provider, {k: parsed.secrets.get(k, "") for k in given})
        )
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
    http = None
    try:
        with calls.provider_session(credential, acting_user=acting_user, ip=ip, purpose="check") as (
            provider_credential,
            http,
        ):
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
            save_exchanges(http.exchanges, credential=credential)
        credential.last_checked_at = timezone.now()
        credential.last_check_ok = ok
        credential.last_check_message = message
        credential.check_until = None
        credential.save(
            update_fields=["last_checked_at", "last_check_ok", "last_check_message", "check_until"]
        )
        record(
            EventType.CREDENTIAL_CHECKED,
            actor=acting_user,
            target=credential,
            ip=ip,
            extra={"ok": ok, "message": message},
        )
    return ok, message


def start_check_credential(
    credential: Credential, *, acting_user: AbstractBaseUser, ip: str | None = None
) -> None:
    """Queue a Check job (the provider is called by a worker, never in the request); a second click while
    one is under way starts nothing (the claim is a conditional update)."""
    from convadmin.credentials.tasks import check_credential

    now = timezone.now()
    with transaction.atomic(durable=True):
        claimed = (
            Credential.objects.filter(pk=credential.pk)
            .filter(Q(check_until__isnull=True) | Q(check_until__lt=now))
            .update(check_until=now + timedelta(seconds=2 * django_settings.PROVIDER_DEADLINE + 30))
        )
        send = (
            enqueue_in_transaction(check_credential, credential.pk, acting_user.pk, ip) if claimed else None
        )
    if send:
        send()
    credential.refresh_from_db()


# --- Microsoft sign-in ----------------------------------------------------------------------------


def microsoft_sign_in_start(credential: Credential, *, redirect_uri: str) -> tuple[str, str, str]:
    """``(authorize_url, state, code_verifier)`` for a new sign-in; the caller keeps state and verifier."""
    state = secrets_module.token_urlsafe(32)
    module = credential.provider_module
    verifier, challenge = module.pkce_pair()
    # The authorize URL needs only settings: no secret is decrypted for it.
    settings_only = ProviderCredential(provider=credential.provider, settings=dict(credential.settings))
    url = module.authorize_url(
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
    # the new refresh token is audited by the sign-in event itself
    with calls.provider_session(credential, audit_rotation=False, purpose="sign-in") as (
        provider_credential,
        http,
    ):
        try:
            signed_in = credential.provider_module.redeem_code(
                provider_credential,
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
                http=http,
            )
        except ProviderError:
            save_exchanges(http.exchanges, credential=credential)
            if credential.fingerprint != before:
                # The new refresh token is stored but the account could not be read: say so.
                unknown = credential.provider_module.SignedIn(
                    user="", display_name="", obtained_at=datetime.now(UTC)
                )
                do_store_microsoft_sign_in(credential, unknown, acting_user=acting_user, ip=ip)
            raise
        save_exchanges(http.exchanges, credential=credential)
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
            **{k: v for k, v in credential.settings.items() if k != "signed_in_via"},
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
