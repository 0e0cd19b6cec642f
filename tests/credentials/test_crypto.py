from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials import crypto
from convadmin.credentials.models import Credential
from tests.factories import TWILIO_TOKEN, CredentialFactory

pytestmark = pytest.mark.django_db


def test_secret_is_stored_encrypted_and_reads_back():
    credential = CredentialFactory()
    stored = Credential.objects.values_list("secret", flat=True).get(pk=credential.pk)
    assert TWILIO_TOKEN not in stored
    assert Credential.objects.get(pk=credential.pk).get_secrets() == {"auth_token": TWILIO_TOKEN}


def test_secret_is_displayed_as_last_four_and_fingerprint_only():
    credential = CredentialFactory()
    assert credential.secret_display.startswith(f"…{TWILIO_TOKEN[-4:]} · sha256:")
    assert TWILIO_TOKEN[:-4] not in credential.secret_display


def test_rotation_re_encrypts_every_row_under_the_new_key(settings):
    old_key = settings.ENCRYPTION_KEYS[0]
    credentials = CredentialFactory.create_batch(3)
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys")
    settings.ENCRYPTION_KEYS = [new_key]  # the old key is gone: every row must still decrypt
    for credential in credentials:
        assert Credential.objects.get(pk=credential.pk).get_secrets() == {"auth_token": TWILIO_TOKEN}
    assert AuditEvent.objects.get(event_type=EventType.KEYS_ROTATED).extra == {"credentials": 3}


def test_rotation_changes_nothing_when_a_row_cannot_be_decrypted(settings):
    readable = CredentialFactory(label="readable")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    CredentialFactory(label="written-with-other-key")
    before = Credential.objects.get(pk=readable.pk).secret
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), settings.ENCRYPTION_KEYS[0]]
    with pytest.raises(CommandError, match="readable"):
        call_command("rotate_encryption_keys")
    assert Credential.objects.get(pk=readable.pk).secret == before


def test_a_wrong_key_gives_a_clear_error_not_a_crash(settings):
    credential = CredentialFactory()
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(
        crypto.SecretUnreadable, match="cannot be decrypted with the configured ENCRYPTION_KEYS"
    ):
        Credential.objects.get(pk=credential.pk).get_secrets()


def test_a_malformed_key_is_a_configuration_error(settings):
    settings.ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="entry 1 is not a Fernet key"):
        crypto.encrypt({"a": "b"})


def test_rotated_refresh_tokens_are_saved_at_once():
    credential = CredentialFactory()
    provider_credential = credential.to_provider()
    provider_credential.update_secrets(auth_token="rotated-token-value-123")
    assert Credential.objects.get(pk=credential.pk).get_secrets() == {"auth_token": "rotated-token-value-123"}
