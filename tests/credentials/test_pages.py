from __future__ import annotations

import json

import pytest
import respx
from django.core.files.uploadedfile import SimpleUploadedFile

from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from tests.credentials.samples import HIGHLEVEL, MIXIN, MSGRAPH, SECRET, TWILIO, VALID, mock_check
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def credential(admin):
    return CredentialFactory(
        label="Twilio prod", created_by=admin, secrets=dict(auth_token=TWILIO["auth_token"])
    )


def pages(pk: int) -> list[tuple[str, str]]:
    return [
        ("get", "/credentials/"),
        ("get", "/credentials/new/"),
        ("post", "/credentials/new/"),
        ("get", f"/credentials/{pk}/"),
        ("post", f"/credentials/{pk}/"),
        ("post", f"/credentials/{pk}/secret/"),
        ("post", f"/credentials/{pk}/disable/"),
        ("post", f"/credentials/{pk}/check/"),
        ("get", f"/credentials/{pk}/microsoft/sign-in/"),
        ("get", "/credentials/microsoft/callback/"),
    ]


def test_anonymous_is_sent_to_login_everywhere(client, credential):
    for method, url in pages(credential.pk):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


def test_htmx_anonymous_gets_a_client_redirect(client, credential, htmx_headers):
    response = client.post(f"/credentials/{credential.pk}/check/", headers=htmx_headers)
    assert response["HX-Redirect"].startswith("/accounts/login/")


@pytest.mark.parametrize("who", ["support_client", "auditor_client", "outsider_client"])
def test_only_administrators_may_use_credential_pages(request, who, credential):
    client = request.getfixturevalue(who)
    for method, url in pages(credential.pk):
        assert getattr(client, method)(url).status_code == 403, url
    assert not AuditEvent.objects.filter(event_type__startswith="credential").exists()


# --- list -----------------------------------------------------------------------------------------


def test_the_list_shows_an_empty_state(admin_client):
    response = admin_client.get("/credentials/")
    assert b"No credentials yet" in response.content
    assert b'href="/credentials/new/"' in response.content


def test_the_list_shows_settings_secret_display_and_creator_never_the_secret(admin_client, credential):
    response = admin_client.get("/credentials/")
    body = response.content.decode()
    assert "Twilio prod" in body and "Twilio Conversations" in body
    assert credential.settings["account_sid"] in body
    assert credential.secret_display in body
    assert "ann-admin" in body and "Never checked" in body
    assert TWILIO["auth_token"] not in body
    assert 'hx-indicator="#check-spinner-' in body and 'hx-disabled-elt="find button"' in body


# --- add ------------------------------------------------------------------------------------------


def test_the_add_page_works_without_js_by_provider_parameter(admin_client):
    response = admin_client.get("/credentials/new/?provider=twilio")
    body = response.content.decode()
    assert "<html" in body
    assert 'name="account_sid"' in body and 'type="password" name="auth_token"' in body
    assert 'name="base_url"' in body


def test_the_add_page_swaps_in_provider_fields_by_htmx(admin_client, htmx_headers):
    response = admin_client.get("/credentials/new/?provider=msgraph", headers=htmx_headers)
    body = response.content.decode()
    assert "<html" not in body
    assert body.strip().startswith('<div id="provider-fields">')
    for name in ("tenant_id", "client_id", "client_secret", "group_id", "cloud", "base_url", "login_url"):
        assert f'name="{name}"' in body, name


def test_going_back_to_a_pushed_provider_choice_gets_the_whole_page(admin_client, htmx_headers):
    """The chooser pushes ``?provider=…``; htmx's history restore asks for it again and needs the page."""
    headers = {**htmx_headers, "HX-History-Restore-Request": "true"}
    body = admin_client.get("/credentials/new/?provider=msgraph", headers=headers).content.decode()
    assert "<html" in body and 'name="tenant_id"' in body


def test_the_mixin_form_offers_a_keystore_upload(admin_client):
    body = admin_client.get("/credentials/new/?provider=mixin").content.decode()
    assert 'type="file" name="keystore"' in body


@pytest.mark.parametrize("provider", list(VALID))
def test_administrator_adds_a_credential_of_each_provider(admin_client, admin, provider):
    response = admin_client.post(
        "/credentials/new/", {"provider": provider, "label": f"{provider} one", **VALID[provider]}
    )
    credential = Credential.objects.get(label=f"{provider} one")
    assert response.status_code == 302 and response["Location"] == f"/credentials/{credential.pk}/"
    assert credential.provider == provider and credential.created_by == admin
    assert SECRET[provider] in credential.get_secrets().values()
    assert SECRET[provider] not in json.dumps(list(AuditEvent.objects.values("extra")))
    page = admin_client.get(response["Location"]).content.decode()
    assert SECRET[provider] not in page and credential.secret_display in page


def test_mixin_keystore_file_is_used_instead_of_the_fields(admin_client):
    upload = SimpleUploadedFile("keystore.json", json.dumps(MIXIN).encode(), "application/json")
    response = admin_client.post(
        "/credentials/new/", {"provider": "mixin", "label": "bot", "keystore": upload}
    )
    assert response.status_code == 302
    credential = Credential.objects.get(label="bot")
    assert credential.settings["app_id"] == MIXIN["app_id"]
    assert credential.get_secrets() == {"session_private_key": MIXIN["session_private_key"]}


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe\x00", "not text")],
)
def test_a_bad_keystore_file_is_refused_at_the_file_input(admin_client, content, words):
    upload = SimpleUploadedFile("keystore.json", content, "application/json")
    response = admin_client.post(
        "/credentials/new/", {"provider": "mixin", "label": "bot", "keystore": upload}
    )
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors["keystore"])
    assert not Credential.objects.exists()


def test_a_keystore_with_a_bad_field_names_the_field_at_the_file_input(admin_client):
    data = {**MIXIN, "session_id": "26f481d3"}
    upload = SimpleUploadedFile("keystore.json", json.dumps(data).encode(), "application/json")
    response = admin_client.post(
        "/credentials/new/", {"provider": "mixin", "label": "bot", "keystore": upload}
    )
    errors = response.context["form"].errors["keystore"]
    assert errors[0].startswith("session_id: ") and "UUID" in errors[0]
    assert MIXIN["session_private_key"] not in response.content.decode()


def test_errors_land_at_the_field_and_the_secret_is_not_echoed(admin_client):
    response = admin_client.post(
        "/credentials/new/",
        {"provider": "twilio", "label": "t", "account_sid": "AB123", "auth_token": TWILIO["auth_token"]},
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert "account_sid" in form.errors and "auth_token" not in form.errors
    body = response.content.decode()
    assert TWILIO["auth_token"] not in body
    assert 'name="account_sid" value="AB123"' in body and 'aria-invalid="true"' in body
    assert not Credential.objects.exists()


def test_a_textarea_secret_is_not_echoed_either(admin_client):
    response = admin_client.post(
        "/credentials/new/",
        {
            "provider": "mixin",
            "label": "m",
            "app_id": "nope",
            "private_key": "-----BEGIN RSA PRIVATE KEY-----\nsecretbits",
        },
    )
    assert "secretbits" not in response.content.decode()


def test_a_plain_http_base_url_is_refused_at_its_field(admin_client):
    response = admin_client.post(
        "/credentials/new/",
        {"provider": "highlevel", "label": "h", **HIGHLEVEL, "base_url": "http://api.example.com"},
    )
    assert "https" in " ".join(response.context["form"].errors["base_url"])
    assert HIGHLEVEL["token"] not in response.content.decode()


def test_an_existing_label_is_refused_at_the_label(admin_client, credential):
    response = admin_client.post(
        "/credentials/new/", {"provider": "twilio", "label": "Twilio prod", **TWILIO}
    )
    assert "already exists" in response.context["form"].errors["label"][0]


def test_a_post_without_a_provider_asks_for_one(admin_client):
    response = admin_client.post("/credentials/new/", {"label": "x"})
    assert "Choose a provider" in response.content.decode()


def test_a_graph_credential_needs_no_refresh_token_to_be_added(admin_client):
    response = admin_client.post(
        "/credentials/new/", {"provider": "msgraph", "label": "g", **MSGRAPH, "cloud": ""}
    )
    assert response.status_code == 302
    assert Credential.objects.get(label="g").settings["cloud"] == "global"


# --- edit -----------------------------------------------------------------------------------------


def test_the_edit_page_shows_settings_and_empty_secret_inputs(admin_client, credential):
    body = admin_client.get(f"/credentials/{credential.pk}/").content.decode()
    assert f'value="{credential.settings["account_sid"]}"' in body
    assert 'type="password" name="auth_token" autocomplete="new-password"' in body
    assert TWILIO["auth_token"] not in body
    assert "Sign in with Microsoft" not in body


def test_editing_settings_is_audited_old_to_new(admin_client, credential):
    response = admin_client.post(
        f"/credentials/{credential.pk}/",
        {
            "label": "Twilio EU",
            "account_sid": credential.settings["account_sid"],
            "service_sid": "IS" + "2" * 32,
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_EDITED)
    assert event.extra["label"] == {"old": "Twilio prod", "new": "Twilio EU"}
    assert event.extra["service_sid"] == {"old": None, "new": "IS" + "2" * 32}


def test_editing_with_a_bad_setting_shows_it_at_the_field(admin_client, credential):
    response = admin_client.post(f"/credentials/{credential.pk}/", {"label": "x", "account_sid": "nope"})
    assert response.status_code == 200
    assert "account_sid" in response.context["settings_form"].errors
    assert Credential.objects.get(pk=credential.pk).label == "Twilio prod"


def test_replacing_the_secret_changes_the_fingerprint(admin_client, credential):
    before = credential.fingerprint
    new = "c0ffee00" * 4
    response = admin_client.post(f"/credentials/{credential.pk}/secret/", {"auth_token": new})
    assert response.status_code == 302
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.fingerprint != before and stored.get_secrets() == {"auth_token": new}
    page = admin_client.get(f"/credentials/{credential.pk}/").content.decode()
    assert new not in page and stored.secret_display in page
    assert new not in json.dumps(list(AuditEvent.objects.values("extra")))


def test_a_refused_replacement_does_not_echo_the_secret(admin_client, credential):
    response = admin_client.post(
        f"/credentials/{credential.pk}/secret/", {"api_key_secret": "kS3cr3tValueForTests0123"}
    )
    assert response.status_code == 200
    assert response.context["secret_form"].errors
    assert "kS3cr3tValueForTests0123" not in response.content.decode()


def test_disable_and_enable(admin_client, credential):
    admin_client.post(f"/credentials/{credential.pk}/disable/", {"disabled": "1"})
    assert Credential.objects.get(pk=credential.pk).disabled
    admin_client.post(f"/credentials/{credential.pk}/disable/", {"disabled": "0"})
    assert not Credential.objects.get(pk=credential.pk).disabled
    assert (
        AuditEvent.objects.filter(
            event_type__in=[EventType.CREDENTIAL_DISABLED, EventType.CREDENTIAL_ENABLED]
        ).count()
        == 2
    )


# --- check ----------------------------------------------------------------------------------------


def test_check_from_the_list_returns_the_result_fragment(admin_client, credential, htmx_headers):
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, "twilio")
        response = admin_client.post(
            f"/credentials/{credential.pk}/check/", {"where": "list"}, headers=htmx_headers
        )
    body = response.content.decode()
    assert "<html" not in body and "Accepted" in body and "reachable" in body
    assert Exchange.objects.get(credential=credential).purpose == "check"


def test_a_refused_check_on_the_page_shows_the_message_and_the_exchange(
    admin_client, credential, htmx_headers
):
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, "twilio", ok=False)
        response = admin_client.post(
            f"/credentials/{credential.pk}/check/", {"where": "page"}, headers=htmx_headers
        )
    body = response.content.decode()
    assert "<html" not in body and "Failed" in body and "Authenticate" in body
    assert 'id="recent-exchanges"' in body and 'hx-swap-oob="true"' in body
    assert "GET https://conversations.twilio.com/v1/Configuration" in body
    assert TWILIO["auth_token"] not in body
    exchange = Exchange.objects.get(credential=credential)
    headers = {k.lower(): v for k, v in exchange.request_headers.items()}
    assert headers["authorization"] == "Basic [redacted]"


def test_check_without_js_redirects_with_a_message(admin_client, credential):
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, "twilio")
        response = admin_client.post(f"/credentials/{credential.pk}/check/", follow=True)
    assert b"Check: Account" in response.content
    assert b"Accepted" in response.content


def test_the_edit_page_lists_the_last_five_exchanges_redacted(admin_client, credential):
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, "twilio")
        for _ in range(6):
            admin_client.post(f"/credentials/{credential.pk}/check/")
    response = admin_client.get(f"/credentials/{credential.pk}/")
    assert len(response.context["exchanges"]) == 5
    assert TWILIO["auth_token"] not in response.content.decode()


def test_views_receiving_secrets_hide_post_parameters_from_error_reports(admin_client, credential):
    response = admin_client.post("/credentials/new/", {"provider": "twilio", "label": "t", **TWILIO})
    assert response.wsgi_request.sensitive_post_parameters == "__ALL__"
    response = admin_client.post(f"/credentials/{credential.pk}/secret/", {"auth_token": "x"})
    assert response.wsgi_request.sensitive_post_parameters == "__ALL__"


def test_a_new_mixin_keystore_replaces_session_and_key_at_once(admin_client, admin):
    admin_client.post("/credentials/new/", {"provider": "mixin", "label": "bot", **MIXIN})
    credential = Credential.objects.get(label="bot")
    new_session = "0b0c7c5c-3c1f-4a7e-9a55-2f3a6a1e9d10"
    new_key = "1" * 64
    keystore = {**MIXIN, "session_id": new_session, "session_private_key": new_key}
    upload = SimpleUploadedFile("keystore.json", json.dumps(keystore).encode(), "application/json")
    response = admin_client.post(f"/credentials/{credential.pk}/secret/", {"keystore": upload})
    assert response.status_code == 302
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.settings["session_id"] == new_session
    assert stored.get_secrets() == {"session_private_key": new_key}
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_SECRET_REPLACED)
    assert event.extra["changes"]["session_id"] == {"old": MIXIN["session_id"], "new": new_session}
    assert new_key not in json.dumps(event.extra)


def test_an_unreadable_secret_gives_a_clear_check_result_not_a_crash(
    admin_client, credential, settings, htmx_headers
):
    from cryptography.fernet import Fernet

    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    response = admin_client.post(
        f"/credentials/{credential.pk}/check/", {"where": "list"}, headers=htmx_headers
    )
    assert response.status_code == 200
    assert "cannot be decrypted with the configured ENCRYPTION_KEYS" in response.content.decode()
    assert admin_client.get(f"/credentials/{credential.pk}/").status_code == 200


# --- issue 10: one round, an empty body, secrets typed again ------------------------------------


def test_an_empty_post_shows_the_form_again_not_a_server_error(admin_client):
    response = admin_client.post("/credentials/new/")
    assert response.status_code == 200
    assert "Choose a provider first." in response.content.decode()


def test_an_empty_submit_flags_the_label_and_every_provider_field_at_once(admin_client):
    response = admin_client.post("/credentials/new/", {"provider": "twilio"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {"label", "account_sid", "auth_token"} <= set(errors)
    assert not Credential.objects.exists()


def test_after_an_error_the_page_says_which_typed_secrets_to_type_again(admin_client):
    response = admin_client.post(
        "/credentials/new/",
        {
            "provider": "twilio",
            "label": "",
            "account_sid": TWILIO["account_sid"],
            "auth_token": SECRET["twilio"],
        },
    )
    body = response.content.decode()
    assert "Type the Auth Token again" in body
    assert SECRET["twilio"] not in body
    assert "label" in response.context["form"].errors


def test_a_url_change_on_the_settings_form_without_the_secret_is_refused_at_the_url(admin_client, credential):
    response = admin_client.post(
        f"/credentials/{credential.pk}/",
        {
            "label": "Twilio prod",
            "account_sid": credential.settings["account_sid"],
            "base_url": "http://127.0.0.1:9",
        },
    )
    assert response.status_code == 200
    assert "typed again" in response.context["settings_form"].errors["base_url"][0]
    assert "base_url" not in Credential.objects.get(pk=credential.pk).settings


def test_a_url_change_with_the_secret_typed_again_is_saved(admin_client, credential):
    typed = "feedc0de" * 4
    response = admin_client.post(
        f"/credentials/{credential.pk}/",
        {
            "label": "Twilio prod",
            "account_sid": credential.settings["account_sid"],
            "base_url": "http://127.0.0.1:9",
            "auth_token": typed,
        },
        follow=True,
    )
    body = response.content.decode()
    assert "The secret now goes to 127.0.0.1:9." in body and typed not in body
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.settings["base_url"] == "http://127.0.0.1:9" and stored.get_secrets() == {
        "auth_token": typed
    }


def test_a_host_of_the_administrators_choice_is_refused_even_with_the_secret(admin_client, credential):
    response = admin_client.post(
        f"/credentials/{credential.pk}/",
        {
            "label": "Twilio prod",
            "account_sid": credential.settings["account_sid"],
            "base_url": "https://collector.attacker.example",
            "auth_token": "feedc0de" * 4,
        },
    )
    assert "not a host of this provider" in response.context["settings_form"].errors["base_url"][0]
    assert "Type the Auth Token again" in response.content.decode()
    assert Credential.objects.get(pk=credential.pk).get_secrets() == {"auth_token": TWILIO["auth_token"]}


def test_the_settings_form_and_the_secret_form_have_distinct_ids(admin_client, credential):
    body = admin_client.get(f"/credentials/{credential.pk}/").content.decode()
    assert body.count('id="id_auth_token"') == 1 and body.count('id="settings_auth_token"') == 1


def test_a_refused_keystore_upload_asks_for_the_file_again(admin_client):
    upload = SimpleUploadedFile(
        "keystore.json", json.dumps({**MIXIN, "session_id": "x"}).encode(), "application/json"
    )
    response = admin_client.post("/credentials/new/", {"provider": "mixin", "label": "", "keystore": upload})
    errors = response.context["form"].errors
    assert "label" in errors and errors["keystore"][0].startswith("session_id: ")
    assert "Choose the keystore file again" in response.content.decode()
    assert MIXIN["session_private_key"] not in response.content.decode()


def test_check_is_a_job_the_page_follows_and_two_clicks_check_once(
    admin_client, credential, htmx_headers, settings
):
    from django_tasks_db.models import DBTaskResult

    from convadmin.credentials.tasks import check_credential

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    url = f"/credentials/{credential.pk}/check/"
    first = admin_client.post(url, {"where": "list"}, headers=htmx_headers).content.decode()
    admin_client.post(url, {"where": "list"}, headers=htmx_headers)
    assert "Checking…" in first and f"/credentials/{credential.pk}/check/status/?where=list" in first
    assert DBTaskResult.objects.count() == 1
    with respx.mock(assert_all_mocked=True) as router:
        route = mock_check(router, credential.provider)
        check_credential.call(*DBTaskResult.objects.get().args_kwargs["args"])
    assert route.call_count == 1
    done = admin_client.get(f"{url}status/?where=list", headers=htmx_headers).content.decode()
    assert "Accepted" in done and "hx-trigger" not in done
    assert AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_CHECKED).count() == 1
