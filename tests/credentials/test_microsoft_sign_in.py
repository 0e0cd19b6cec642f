from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials import services
from convadmin.credentials.models import Credential
from convadmin.credentials.views import SIGN_IN_SESSION_KEY
from convadmin.exchanges.models import Exchange
from providers.msgraph import pkce_challenge
from tests.credentials.samples import APP_ACCESS, GRAPH, GROUP, LOGIN, MSGRAPH, TENANT, TOKEN_URL, TWILIO

pytestmark = pytest.mark.django_db

CODE = "M.C507_BAY.2.U.4f0d8a7e-code-for-tests"
USER_REFRESH = "0.AXoA-signed-in-refresh-token"
ROTATED = "0.AXoA-rotated-refresh-token"
USER_ACCESS = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.delegated.sig"
ME = {
    "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
    "userPrincipalName": "adele@contoso.com",
    "displayName": "Adele Vance",
}


@pytest.fixture
def graph(admin):
    return services.do_add_credential("msgraph", "Graph", MSGRAPH, acting_user=admin)


def start(client, credential) -> tuple[str, dict[str, list[str]]]:
    response = client.get(f"/credentials/{credential.pk}/microsoft/sign-in/")
    assert response.status_code == 302
    location = response["Location"]
    return location, parse_qs(urlsplit(location).query)


def everything_stored() -> str:
    exchanges = Exchange.objects.values(
        "url", "request_headers", "request_body", "response_headers", "response_body"
    )
    return json.dumps(list(exchanges), default=str) + json.dumps(list(AuditEvent.objects.values("extra")))


def test_sign_in_redirects_to_microsoft_with_state_and_pkce_in_query_mode(admin_client, graph):
    location, query = start(admin_client, graph)
    assert location.startswith(f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize?")
    assert query["response_mode"] == ["query"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://testserver/credentials/microsoft/callback/"]
    assert query["code_challenge_method"] == ["S256"]
    pending = admin_client.session[SIGN_IN_SESSION_KEY]
    assert query["state"] == [pending["state"]] and pending["credential"] == graph.pk
    assert query["code_challenge"] == [pkce_challenge(pending["verifier"])]
    assert pending["verifier"] not in location


def test_the_redirect_uri_uses_public_base_url_when_set(admin_client, graph, settings):
    settings.PUBLIC_BASE_URL = "https://convadmin.example.com/"
    _, query = start(admin_client, graph)
    assert query["redirect_uri"] == ["https://convadmin.example.com/credentials/microsoft/callback/"]


def test_the_full_sign_in_stores_the_refresh_token_encrypted_and_says_who(admin_client, admin, graph):
    _, query = start(admin_client, graph)
    verifier = admin_client.session[SIGN_IN_SESSION_KEY]["verifier"]
    with respx.mock(assert_all_mocked=True) as router:
        token = router.post(TOKEN_URL).mock(
            httpx.Response(
                200,
                json={
                    "access_token": USER_ACCESS,
                    "refresh_token": USER_REFRESH,
                    "token_type": "Bearer",
                    "expires_in": 3599,
                },
            )
        )
        router.get(f"{GRAPH}/v1.0/me").mock(httpx.Response(200, json=ME))
        response = admin_client.get(
            "/credentials/microsoft/callback/", {"code": CODE, "state": query["state"][0]}
        )
    assert response.status_code == 302 and response["Location"] == f"/credentials/{graph.pk}/"
    sent = parse_qs(token.calls.last.request.content.decode())
    assert sent["grant_type"] == ["authorization_code"] and sent["code"] == [CODE]
    assert sent["code_verifier"] == [verifier]
    assert sent["redirect_uri"] == ["http://testserver/credentials/microsoft/callback/"]

    stored = Credential.objects.get(pk=graph.pk)
    assert stored.get_secrets()["refresh_token"] == USER_REFRESH
    assert USER_REFRESH not in stored.secret
    assert stored.settings["signed_in_as"] == "adele@contoso.com" and stored.settings["signed_in_at"]
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_SIGNED_IN)
    assert event.actor == admin and event.extra["account"] == "adele@contoso.com"
    assert set(Exchange.objects.filter(credential=graph).values_list("purpose", flat=True)) == {"sign-in"}
    leaked = everything_stored()
    for secret in (USER_REFRESH, USER_ACCESS, CODE, verifier, MSGRAPH["client_secret"]):
        assert secret not in leaked
    assert SIGN_IN_SESSION_KEY not in admin_client.session

    page = admin_client.get(response["Location"]).content.decode()
    assert "Signed in with Microsoft as Adele Vance (adele@contoso.com)" in page
    assert "Signed in as <strong>Adele Vance (adele@contoso.com)</strong>" in page
    assert USER_REFRESH not in page


def test_a_rotated_refresh_token_is_persisted_by_the_next_check(admin_client, graph):
    graph = services.do_add_credential(
        "msgraph",
        "Graph",
        {**MSGRAPH, "refresh_token": USER_REFRESH},
        acting_user=graph.created_by,
        replace=True,
    )

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        if form["grant_type"] == ["client_credentials"]:
            return httpx.Response(
                200, json={"access_token": APP_ACCESS, "token_type": "Bearer", "expires_in": 3599}
            )
        assert form["refresh_token"] == [USER_REFRESH]
        return httpx.Response(
            200, json={"access_token": USER_ACCESS, "refresh_token": ROTATED, "expires_in": 3599}
        )

    with respx.mock(assert_all_mocked=True) as router:
        router.post(TOKEN_URL).mock(side_effect=token_endpoint)
        router.get(f"{GRAPH}/v1.0/groups/{GROUP}").mock(
            httpx.Response(
                200,
                json={"id": GROUP, "displayName": "Support", "mailEnabled": True, "groupTypes": ["Unified"]},
            )
        )
        router.get(f"{GRAPH}/v1.0/me").mock(httpx.Response(200, json=ME))
        response = admin_client.post(f"/credentials/{graph.pk}/check/")
    assert response.status_code == 302
    stored = Credential.objects.get(pk=graph.pk)
    assert stored.last_check_ok and "adele@contoso.com" in stored.last_check_message
    assert stored.get_secrets()["refresh_token"] == ROTATED
    rotated = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_TOKEN_ROTATED)
    assert rotated.extra["fingerprint"]["new"] == stored.fingerprint
    assert ROTATED not in everything_stored() and USER_REFRESH not in everything_stored()


def test_a_forged_state_is_refused_and_nothing_is_sent(admin_client, graph):
    start(admin_client, graph)
    with respx.mock(assert_all_called=False) as router:
        token = router.post(TOKEN_URL).mock(httpx.Response(200, json={}))
        response = admin_client.get(
            "/credentials/microsoft/callback/", {"code": CODE, "state": "forged-state"}, follow=True
        )
    assert not token.called
    assert "does not belong to a sign-in started in this browser session" in response.content.decode()
    assert "refresh_token" not in Credential.objects.get(pk=graph.pk).get_secrets()
    assert SIGN_IN_SESSION_KEY not in admin_client.session


def test_a_callback_without_a_started_sign_in_is_refused(admin_client, graph):
    response = admin_client.get("/credentials/microsoft/callback/", {"code": CODE, "state": "x"}, follow=True)
    assert response.redirect_chain[-1][0] == "/credentials/"
    assert "Nothing was stored" in response.content.decode()


def test_a_cancelled_sign_in_shows_microsofts_reason(admin_client, graph):
    _, query = start(admin_client, graph)
    response = admin_client.get(
        "/credentials/microsoft/callback/",
        {
            "error": "access_denied",
            "error_description": "AADSTS65004: User declined to consent to access the app.",
            "state": query["state"][0],
        },
        follow=True,
    )
    body = response.content.decode()
    assert "The sign-in was cancelled" in body and "AADSTS65004" in body
    assert not AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_SIGNED_IN).exists()


def test_missing_admin_consent_says_an_administrator_must_consent(admin_client, graph):
    _, query = start(admin_client, graph)
    response = admin_client.get(
        "/credentials/microsoft/callback/",
        {
            "error": "invalid_client",
            "error_description": "AADSTS65001: The user or administrator has not consented to use the application.",
            "state": query["state"][0],
        },
        follow=True,
    )
    assert "An administrator must grant consent" in response.content.decode()


def test_a_refused_code_is_shown_and_its_exchange_kept(admin_client, graph):
    _, query = start(admin_client, graph)
    with respx.mock(assert_all_mocked=True) as router:
        router.post(TOKEN_URL).mock(
            httpx.Response(
                400,
                json={
                    "error": "invalid_grant",
                    "error_description": "AADSTS70008: The provided authorization code or refresh token has expired.",
                    "error_codes": [70008],
                },
            )
        )
        response = admin_client.get(
            "/credentials/microsoft/callback/", {"code": CODE, "state": query["state"][0]}, follow=True
        )
    assert "Microsoft refused the sign-in" in response.content.decode()
    exchange = Exchange.objects.get(credential=graph)
    assert exchange.purpose == "sign-in" and exchange.status == 400
    assert CODE not in everything_stored()
    assert "refresh_token" not in Credential.objects.get(pk=graph.pk).get_secrets()


def test_sign_in_is_only_for_graph_credentials(admin_client, admin):
    twilio = services.do_add_credential("twilio", "T", TWILIO, acting_user=admin)
    assert admin_client.get(f"/credentials/{twilio.pk}/microsoft/sign-in/").status_code == 404


def test_sign_in_is_a_link_because_the_csp_blocks_a_forms_redirect_to_microsoft(admin_client, graph):
    body = admin_client.get(f"/credentials/{graph.pk}/").content.decode()
    assert f'href="/credentials/{graph.pk}/microsoft/sign-in/"' in body
    assert f'action="/credentials/{graph.pk}/microsoft/sign-in/"' not in body
    assert "form-action 'self'" in admin_client.get(f"/credentials/{graph.pk}/")["Content-Security-Policy"]
    assert admin_client.post(f"/credentials/{graph.pk}/microsoft/sign-in/").status_code == 405


def test_a_refresh_token_from_the_command_line_is_not_called_nobody_signed_in(admin_client, admin):
    credential = services.do_add_credential(
        "msgraph", "Graph CLI", {**MSGRAPH, "refresh_token": USER_REFRESH}, acting_user=admin
    )
    body = admin_client.get(f"/credentials/{credential.pk}/").content.decode()
    assert "Nobody has signed in yet" not in body
    assert "A refresh token was given with the credential" in body
    assert "Sign in again with Microsoft" in body and USER_REFRESH not in body
