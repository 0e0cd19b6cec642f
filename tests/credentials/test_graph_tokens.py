"""Microsoft Graph: one refresh per credential at a time, the access token reused until it expires (issue 12).

Microsoft's refresh tokens work once: parallel creates that each refreshed the same one failed with
AADSTS70008 ("the sign-in expired") although it had not.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qsl

import httpx
import pytest
from django.db import connection, connections

from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials import services
from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from tests.credentials.samples import APP_ACCESS, GRAPH, GROUP, MSGRAPH, TOKEN_URL
from tests.factories import UserFactory

FIRST_REFRESH = "0.AXoA-first-refresh-token"
UNIFIED = {"id": GROUP, "displayName": "Sales", "mailEnabled": True, "groupTypes": ["Unified"]}


class SingleUseRefreshTokens:
    """Microsoft's token endpoint: each refresh token works once, a reused one gets AADSTS70008."""

    def __init__(self, valid: str, delay: float = 0.0):
        self.valid = {valid}
        self.refreshes = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        if form["grant_type"] == "client_credentials":
            return httpx.Response(
                200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": APP_ACCESS}
            )
        time.sleep(self.delay)  # a real refresh takes a moment: lets parallel callers overlap
        with self.lock:
            if form["refresh_token"] not in self.valid:
                return httpx.Response(
                    400,
                    json={
                        "error": "invalid_grant",
                        "error_description": "AADSTS70008: The provided authorization code or refresh token "
                        "has expired due to inactivity.",
                        "error_codes": [70008],
                    },
                )
            self.valid.discard(form["refresh_token"])
            self.refreshes += 1
            n = self.refreshes
            self.valid.add(f"0.AXoA-refresh-{n}")
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": 3599,
                "access_token": f"eyJ0eXAi.delegated-{n}.sig",
                "refresh_token": f"0.AXoA-refresh-{n}",
            },
        )


def graph_credential(actor) -> Credential:
    return services.do_add_credential(
        "msgraph", "graph", {**MSGRAPH, "refresh_token": FIRST_REFRESH}, acting_user=actor
    )


def route(respx_mock, tokens: SingleUseRefreshTokens) -> None:
    respx_mock.post(TOKEN_URL).mock(side_effect=tokens)
    respx_mock.get(url__startswith=f"{GRAPH}/v1.0/groups/{GROUP}").respond(200, json=UNIFIED)
    respx_mock.get(url__startswith=f"{GRAPH}/v1.0/me").respond(
        200, json={"userPrincipalName": "adele@contoso.com"}
    )


@pytest.mark.django_db
def test_checks_reuse_the_stored_access_token_and_audit_the_one_rotation(respx_mock):
    actor = UserFactory(role="Administrator")
    credential = graph_credential(actor)
    before = credential.fingerprint
    tokens = SingleUseRefreshTokens(FIRST_REFRESH)
    route(respx_mock, tokens)
    assert services.do_check_credential(credential, acting_user=actor)[0] is True
    assert (
        services.do_check_credential(Credential.objects.get(pk=credential.pk), acting_user=actor)[0] is True
    )
    assert tokens.refreshes == 1
    credential.refresh_from_db()
    secrets = credential.get_secrets()
    assert (secrets["refresh_token"], secrets["access_token"]) == (
        "0.AXoA-refresh-1",
        "eyJ0eXAi.delegated-1.sig",
    )
    # A secret like the others: encrypted, never in an exchange, the audit or the fingerprint's display.
    assert "delegated-1" not in credential.secret
    stored = json.dumps(list(Exchange.objects.values()), default=str)
    assert "delegated-1" not in stored and "0.AXoA-refresh-1" not in stored
    rotated = AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_TOKEN_ROTATED)
    assert [e.extra for e in rotated] == [
        {"fields": ["refresh_token"], "fingerprint": {"old": before, "new": credential.fingerprint}}
    ]
    assert "delegated-1" not in json.dumps(list(AuditEvent.objects.values("extra")))


@pytest.mark.django_db
def test_an_expired_stored_token_is_refreshed_and_the_rotation_audited_again(respx_mock, monkeypatch):
    from providers import msgraph

    actor = UserFactory(role="Administrator")
    credential = graph_credential(actor)
    tokens = SingleUseRefreshTokens(FIRST_REFRESH)
    route(respx_mock, tokens)
    assert services.do_check_credential(credential, acting_user=actor)[0] is True
    monkeypatch.setattr(msgraph, "ACCESS_TOKEN_MARGIN", 3600)  # the stored token now counts as expiring
    assert (
        services.do_check_credential(Credential.objects.get(pk=credential.pk), acting_user=actor)[0] is True
    )
    assert tokens.refreshes == 2
    assert AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_TOKEN_ROTATED).count() == 2


@pytest.mark.django_db(transaction=True)
def test_five_parallel_checks_refresh_once_and_all_succeed(respx_mock):
    if connection.vendor != "postgresql":
        pytest.skip("threads share the test database with row locks on PostgreSQL only (in-memory SQLite)")
    actor = UserFactory(role="Administrator")
    credential = graph_credential(actor)
    tokens = SingleUseRefreshTokens(FIRST_REFRESH, delay=0.2)
    route(respx_mock, tokens)
    start = threading.Barrier(5)
    results: list[tuple[bool, str]] = []

    def check() -> None:
        try:
            start.wait()
            row = Credential.objects.get(pk=credential.pk)
            results.append(services.do_check_credential(row, acting_user=actor))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=check) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(True, "Group 'Sales' (Microsoft 365) reachable; signed in as adele@contoso.com")] * 5
    assert tokens.refreshes == 1
    assert AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_TOKEN_ROTATED).count() == 1
    assert Credential.objects.get(pk=credential.pk).get_secrets()["refresh_token"] == "0.AXoA-refresh-1"


@pytest.mark.django_db
def test_editing_the_label_keeps_a_refresh_token_rotated_meanwhile():
    actor = UserFactory(role="Administrator")
    loaded = graph_credential(actor)  # the edit page's copy
    rotated = Credential.objects.get(pk=loaded.pk)
    rotated.to_provider().update_secrets(refresh_token="0.AXoA-rotated-by-a-create")
    services.do_edit_credential(loaded, {"label": "graph renamed"}, acting_user=actor)
    stored = Credential.objects.get(pk=loaded.pk)
    assert stored.label == "graph renamed"
    assert stored.get_secrets()["refresh_token"] == "0.AXoA-rotated-by-a-create"


def test_a_rotated_token_reaches_the_database_even_if_the_connection_drops(transactional_db):
    from unittest import mock

    from django.db import OperationalError
    from django.db.models import QuerySet

    from convadmin.audit.models import AuditEvent, EventType
    from convadmin.credentials import calls
    from tests.factories import CredentialFactory

    credential = CredentialFactory()
    real_update = QuerySet.update
    failures = {"left": 2}

    def flaky(self, **kwargs):
        if "secret" in kwargs and failures["left"]:
            failures["left"] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return real_update(self, **kwargs)

    with (
        calls.provider_session(credential) as (provider_credential, _http),
        mock.patch.object(QuerySet, "update", flaky),
        mock.patch("time.sleep"),
    ):
        provider_credential.update_secrets(auth_token="rotated-token-value-0001")
    credential.refresh_from_db()
    assert credential.get_secrets()["auth_token"] == "rotated-token-value-0001"
    assert AuditEvent.objects.filter(event_type=EventType.CREDENTIAL_TOKEN_ROTATED).count() == 1
