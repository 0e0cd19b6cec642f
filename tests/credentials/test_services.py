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
from tests.credentials.samples import GRAPH, GROUP, MSGRAPH, SECRET, TOKEN_URL, TWILIO, VALID, mock_check
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


# --- where a secret may be sent (issue 10, items 16 and 18) -----------------------------------------


@pytest.mark.parametrize(
    ("provider", "key", "url"),
    [
        ("twilio", "base_url", "https://attacker.example"),
        ("highlevel", "base_url", "https://services.leadconnectorhq.com.attacker.example"),
        ("mixin", "base_url", "https://169.254.169.254"),
        ("msgraph", "login_url", "https://10.0.0.5"),
        ("msgraph", "base_url", "https://login.microsoftonline.com"),  # a login host is not a Graph host
    ],
)
def test_a_secret_is_never_sent_to_a_host_that_is_not_the_providers(actor, provider, key, url):
    with pytest.raises(InvalidCredential) as info:
        services.do_add_credential(provider, "x", {**VALID[provider], key: url}, acting_user=actor)
    assert [e.path for e in info.value.errors] == [key]
    assert "PROVIDER_EXTRA_HOSTS" in info.value.errors[0].message
    assert not Credential.objects.exists()


@pytest.mark.parametrize(
    ("provider", "key", "url"),
    [
        ("mixin", "base_url", "https://mixin-api.zeromesh.net"),
        ("twilio", "base_url", "https://conversations.dublin.ie1.twilio.com"),
        ("highlevel", "base_url", "https://services.leadconnectorhq.com"),
        ("msgraph", "base_url", "https://graph.microsoft.us"),
        ("msgraph", "login_url", "https://login.partner.microsoftonline.cn"),
        ("twilio", "base_url", "http://127.0.0.1:8402"),
    ],
)
def test_the_providers_own_hosts_and_loopback_are_accepted(actor, provider, key, url):
    credential = services.do_add_credential(provider, "x", {**VALID[provider], key: url}, acting_user=actor)
    assert credential.settings[key] == url


def test_the_operator_may_allow_more_hosts(actor, settings):
    settings.PROVIDER_EXTRA_HOSTS = ["twilio-proxy.corp.example", "10.0.0.5"]
    for n, url in enumerate(["https://twilio-proxy.corp.example", "https://10.0.0.5:8443"]):
        credential = services.do_add_credential(
            "twilio", f"t{n}", {**TWILIO, "base_url": url}, acting_user=actor
        )
        assert credential.settings["base_url"] == url


def test_changing_where_the_secret_goes_needs_the_secret_typed_again(actor):
    credential = services.do_add_credential("twilio", "t", TWILIO, acting_user=actor)
    with pytest.raises(InvalidCredential) as info:
        services.do_edit_credential(credential, {"base_url": "http://127.0.0.1:8402"}, acting_user=actor)
    assert [e.path for e in info.value.errors] == ["base_url"]
    assert "typed again" in info.value.errors[0].message
    assert "base_url" not in Credential.objects.get(pk=credential.pk).settings
    assert not AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_EDITED).exists()


def test_a_url_change_with_the_secret_is_stored_and_audited_old_and_new_host(actor):
    credential = services.do_add_credential("twilio", "t", TWILIO, acting_user=actor)
    typed = "feedc0de" * 4
    services.do_edit_credential(
        credential,
        {"base_url": "http://127.0.0.1:8402"},
        secret_data={"auth_token": typed},
        acting_user=actor,
        ip="10.0.0.9",
    )
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.settings["base_url"] == "http://127.0.0.1:8402" and stored.sandbox
    assert stored.get_secrets() == {"auth_token": typed}
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_EDITED)
    assert event.extra["destination"] == {
        "base_url": {"old": "the provider's default host", "new": "127.0.0.1:8402"}
    }
    assert event.extra["secret_retyped"] == ["auth_token"] and event.actor == actor
    assert typed not in audit_text() and TWILIO["auth_token"] not in audit_text()


def test_moving_graphs_login_url_drops_the_sign_in_with_the_old_refresh_token(actor):
    credential = services.do_add_credential(
        "msgraph", "g", {**MSGRAPH, "refresh_token": "0.AXoA-old-refresh"}, acting_user=actor
    )
    services.do_edit_credential(
        credential,
        {"login_url": "http://127.0.0.1:8404"},
        secret_data={"client_secret": "Zz8Q~new-secret-value-for-tests.WX0y"},
        acting_user=actor,
    )
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.get_secrets() == {"client_secret": "Zz8Q~new-secret-value-for-tests.WX0y"}
    assert "signed_in_at" not in stored.settings


def test_a_refresh_token_from_the_file_is_marked_as_given_not_signed_in(actor):
    credential = services.do_add_credential(
        "msgraph", "g", {**MSGRAPH, "refresh_token": "0.AXoA-cli-refresh"}, acting_user=actor
    )
    assert credential.settings["signed_in_via"] == "given" and credential.settings["signed_in_at"]
    assert "signed_in_as" not in credential.settings


def test_every_problem_of_a_new_credential_is_reported_at_once(actor):
    with pytest.raises(InvalidCredential) as info:
        services.do_add_credential("twilio", " ", {"account_sid": "AB1"}, acting_user=actor)
    assert {e.path for e in info.value.errors} == {"label", "account_sid", "auth_token"}


# --- rotated tokens (issue 10, item 19) --------------------------------------------------------------


def test_a_token_rotated_by_a_create_is_audited_with_who_made_the_call(actor, respx_mock):
    from convadmin.conversations import services as conversation_services

    credential = services.do_add_credential(
        "msgraph", "g", {**MSGRAPH, "refresh_token": "0.AXoA-first-refresh"}, acting_user=actor
    )
    before = credential.fingerprint
    respx_mock.post(TOKEN_URL).respond(
        200,
        json={"access_token": "eyJ.delegated.sig", "refresh_token": "0.AXoA-rotated", "token_type": "Bearer"},
    )
    respx_mock.post(f"{GRAPH}/v1.0/groups/{GROUP}/conversations").respond(
        201, json={"id": "AAQkADconv=", "topic": "Launch"}
    )
    body = {"topic": "Launch", "threads": [{"posts": [{"body": {"contentType": "text", "content": "Hi"}}]}]}
    conversation = conversation_services.do_create_conversation(
        body, credential=credential, acting_user=actor, ip="10.0.0.9"
    )
    assert conversation.status == "created"
    credential.refresh_from_db()
    assert credential.get_secrets()["refresh_token"] == "0.AXoA-rotated"
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_TOKEN_ROTATED)
    assert (event.actor, event.ip, event.target_id) == (actor, "10.0.0.9", str(credential.pk))
    assert event.extra == {
        "fields": ["refresh_token"],
        "fingerprint": {"old": before, "new": credential.fingerprint},
    }
    assert "0.AXoA-rotated" not in audit_text()


def test_a_stored_url_that_is_no_longer_allowed_is_never_called(actor, settings, respx_mock):
    settings.PROVIDER_EXTRA_HOSTS = ["twilio-proxy.corp.example"]
    credential = services.do_add_credential(
        "twilio", "t", {**TWILIO, "base_url": "https://twilio-proxy.corp.example"}, acting_user=actor
    )
    settings.PROVIDER_EXTRA_HOSTS = []
    ok, message = services.do_check_credential(credential, acting_user=actor)
    assert not ok and message.startswith("Nothing was sent: twilio-proxy.corp.example is not a host")
    assert not respx_mock.calls and not Exchange.objects.exists()
