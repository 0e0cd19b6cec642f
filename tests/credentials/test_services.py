from __future__ import annotations

import json

import pytest
import respx
from cryptography.fernet import Fernet

from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials import services
from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from providers.base import InvalidCredential
from tests.credentials.samples import MSGRAPH, SECRET, TWILIO, VALID, mock_check
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def actor(db):
    return UserFactory(username="ann-admin", role="Administrator")


def audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("extra", "target_label")))


def exchanges_text() -> str:
    return json.dumps(
        list(
            Exchange.objects.values(
                "url", "request_headers", "request_body", "response_headers", "response_body"
            )
        ),
        default=str,
    )


@pytest.mark.parametrize("provider", list(VALID))
def test_it_adds_each_provider_with_its_audit_event_and_no_secret_in_it(provider, actor):
    credential = services.do_add_credential(
        provider, f"{provider} prod", VALID[provider], acting_user=actor, ip="10.0.0.9"
    )
    stored = Credential.objects.get(pk=credential.pk)
    assert (
        stored.get_secrets()[next(iter(k for k, v in VALID[provider].items() if v == SECRET[provider]))]
        == SECRET[provider]
    )
    assert SECRET[provider] not in stored.secret
    assert stored.created_by == actor and not stored.sandbox
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_ADDED)
    assert event.actor == actor and event.ip == "10.0.0.9" and event.target_id == str(credential.pk)
    assert event.extra["provider"] == provider and event.extra["fingerprint"] == stored.fingerprint
    assert SECRET[provider] not in audit_text()


def test_a_loopback_base_url_marks_the_credential_as_sandbox(actor):
    credential = services.do_add_credential(
        "twilio", "sandbox", {**TWILIO, "base_url": "http://127.0.0.1:8765"}, acting_user=actor
    )
    assert credential.sandbox
    assert credential.settings["base_url"] == "http://127.0.0.1:8765"


def test_it_refuses_a_malformed_field_with_its_path(actor):
    with pytest.raises(InvalidCredential) as caught:
        services.do_add_credential("twilio", "bad", {**TWILIO, "account_sid": "XX123"}, acting_user=actor)
    assert [e.path for e in caught.value.errors] == ["account_sid"]
    assert not Credential.objects.exists() and not AuditEvent.objects.exists()


def test_it_refuses_an_existing_label_unless_replacing(actor):
    first = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    with pytest.raises(services.LabelTaken):
        services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    replaced = services.do_add_credential(
        "twilio", "prod", {**TWILIO, "auth_token": "0" * 32}, acting_user=actor, replace=True
    )
    assert replaced.pk == first.pk and replaced.get_secrets() == {"auth_token": "0" * 32}
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_SECRET_REPLACED)
    assert event.extra["changes"]["fingerprint"]["new"] == replaced.fingerprint


def test_replacing_cannot_change_the_provider(actor):
    services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    with pytest.raises(InvalidCredential) as caught:
        services.do_add_credential("msgraph", "prod", MSGRAPH, acting_user=actor, replace=True)
    assert caught.value.errors[0].path == "provider"


def test_unknown_provider_is_an_error_at_provider(actor):
    with pytest.raises(InvalidCredential) as caught:
        services.do_add_credential("telegram", "x", {}, acting_user=actor)
    assert caught.value.errors[0].path == "provider"


def test_editing_settings_is_audited_old_to_new(actor):
    credential = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    service = "IS" + "1" * 32
    changes = services.do_edit_credential(
        credential, {"label": "prod EU", "service_sid": service}, acting_user=actor
    )
    assert changes == {
        "label": {"old": "prod", "new": "prod EU"},
        "service_sid": {"old": None, "new": service},
    }
    assert Credential.objects.get(pk=credential.pk).settings["service_sid"] == service
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_EDITED)
    assert event.extra == changes


def test_editing_is_validated_with_the_stored_secrets(actor):
    credential = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    with pytest.raises(InvalidCredential) as caught:
        services.do_edit_credential(credential, {"api_key_sid": "SK" + "f" * 32}, acting_user=actor)
    assert "not both" in caught.value.errors[0].message
    assert not AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_EDITED).exists()


def test_editing_nothing_writes_no_event(actor):
    credential = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    assert services.do_edit_credential(credential, {"label": "prod"}, acting_user=actor) == {}
    assert not AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_EDITED).exists()


def test_replacing_the_secret_changes_the_fingerprint_and_is_audited(actor):
    credential = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    before = credential.fingerprint
    new = "a1" * 16
    services.do_replace_secret(credential, {"auth_token": new}, acting_user=actor)
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.get_secrets() == {"auth_token": new} and stored.fingerprint != before
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_SECRET_REPLACED)
    assert event.extra["fields"] == ["auth_token"]
    assert event.extra["changes"]["fingerprint"] == {"old": before, "new": stored.fingerprint}
    assert new not in audit_text()


def test_replacing_a_graph_secret_keeps_the_signed_in_refresh_token(actor):
    credential = services.do_add_credential(
        "msgraph", "graph", {**MSGRAPH, "refresh_token": "0.AXoA-refresh"}, acting_user=actor
    )
    credential.settings = {**credential.settings, "signed_in_as": "adele@contoso.com"}
    credential.save()
    services.do_replace_secret(
        credential, {"client_secret": "Ab8Q~newSecretValue.123456789"}, acting_user=actor
    )
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.get_secrets()["refresh_token"] == "0.AXoA-refresh"
    assert stored.settings["signed_in_as"] == "adele@contoso.com"


def test_replacing_with_nothing_is_refused(actor):
    credential = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    with pytest.raises(InvalidCredential):
        services.do_replace_secret(credential, {"auth_token": ""}, acting_user=actor)


def test_disable_and_enable_are_audited_once(actor):
    credential = services.do_add_credential("twilio", "prod", TWILIO, acting_user=actor)
    assert services.do_set_disabled(credential, True, acting_user=actor)
    assert not services.do_set_disabled(credential, True, acting_user=actor)
    assert services.do_set_disabled(credential, False, acting_user=actor)
    types = list(AuditEvent.objects.order_by("id").values_list("event_type", flat=True))
    assert types[-2:] == [EventType.CREDENTIAL_DISABLED, EventType.CREDENTIAL_ENABLED]


@pytest.mark.parametrize("provider", list(VALID))
def test_check_accepted_stores_result_exchanges_and_audit(provider, actor):
    credential = services.do_add_credential(provider, "c", VALID[provider], acting_user=actor)
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, provider)
        ok, message = services.do_check_credential(credential, acting_user=actor)
    assert ok, message
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.last_check_ok is True and stored.last_check_message == message and stored.last_checked_at
    assert Exchange.objects.filter(credential=credential, purpose="check").exists()
    assert SECRET[provider] not in exchanges_text()
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_CHECKED)
    assert event.extra == {"ok": True, "message": message}


@pytest.mark.parametrize("provider", list(VALID))
def test_check_refused_is_stored_as_failed_with_the_providers_message(provider, actor):
    credential = services.do_add_credential(provider, "c", VALID[provider], acting_user=actor)
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, provider, ok=False)
        ok, message = services.do_check_credential(credential, acting_user=actor)
    assert not ok and message
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.last_check_ok is False and stored.last_check_message == message
    exchange = Exchange.objects.get(credential=credential, purpose="check")
    assert exchange.status == 401
    assert SECRET[provider] not in exchanges_text() + message + audit_text()


def test_check_with_an_unreachable_host_fails_with_a_clear_message(actor):
    import httpx

    credential = services.do_add_credential("twilio", "c", TWILIO, acting_user=actor)
    with respx.mock() as router:
        router.get("https://conversations.twilio.com/v1/Configuration").mock(
            side_effect=httpx.ConnectError("refused")
        )
        ok, message = services.do_check_credential(credential, acting_user=actor)
    assert not ok and "Could not connect" in message
    assert Exchange.objects.get(credential=credential).error


def test_check_with_an_unreadable_secret_says_so(actor, settings):
    credential = services.do_add_credential("twilio", "c", TWILIO, acting_user=actor)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    ok, message = services.do_check_credential(Credential.objects.get(pk=credential.pk), acting_user=actor)
    assert not ok and "ENCRYPTION_KEYS" in message
    assert Credential.objects.get(pk=credential.pk).last_check_ok is False
