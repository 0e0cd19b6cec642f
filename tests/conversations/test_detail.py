from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import respx
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from convadmin.audit.models import AuditEvent, EventType
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.record_views import PREVIEW_CHARS
from convadmin.exchanges.models import Exchange
from tests.factories import TWILIO_SID, TWILIO_TOKEN, ConversationFactory

pytestmark = pytest.mark.django_db

API = "https://conversations.twilio.com/v1"
SID = "CH" + "b" * 32
BASIC = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()


def url(conversation, name="conversation_detail"):
    return reverse(name, args=[conversation.pk])


def add_exchange(conversation, **fields) -> Exchange:
    values = {
        "purpose": "create",
        "method": "POST",
        "url": f"{API}/ConversationWithParticipants",
        "request_headers": {
            "authorization": "Basic ********",
            "content-type": "application/x-www-form-urlencoded",
        },
        "request_body": "FriendlyName=Order%207&Participant=%7B%22identity%22%3A%22alice%22%7D",
        "request_size": 70,
        "status": 201,
        "response_headers": {"content-type": "application/json"},
        "response_body": json.dumps({"sid": SID, "friendly_name": "Order 7"}),
        "response_size": 50,
        "duration_ms": 123,
        "started_at": timezone.now(),
        "conversation": conversation,
        "credential": conversation.credential,
    }
    return Exchange.objects.create(**(values | fields))


@pytest.fixture
def created():
    return ConversationFactory(name="Order 7", external_id=SID, status=Status.CREATED)


# --- access ----------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, created):
    response = client.get(url(created))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_outsider_is_refused(outsider_client, created):
    assert outsider_client.get(url(created)).status_code == 403


def test_unknown_record_is_404(support_client):
    assert support_client.get(reverse("conversation_detail", args=[999999])).status_code == 404


def test_auditor_reads_it_without_any_action(auditor_client, created):
    body = auditor_client.get(url(created)).content.decode()
    assert "Order 7" in body
    for action in ("Refresh from provider", "Retry", "Check with provider", "Duplicate as new"):
        assert action not in body


@pytest.mark.parametrize("name", ["conversation_refresh", "conversation_retry", "conversation_check"])
def test_auditor_cannot_post_actions(auditor_client, created, name):
    assert auditor_client.post(url(created, name)).status_code == 403


@pytest.mark.parametrize("name", ["conversation_refresh", "conversation_retry", "conversation_check"])
def test_actions_are_post_only(support_client, created, name):
    assert support_client.get(url(created, name)).status_code == 405


def test_support_sees_refresh_and_duplicate(support_client, created):
    body = support_client.get(url(created)).content.decode()
    assert "Refresh from provider" in body and f"/conversations/new/?from={created.pk}" in body
    assert "Retry" not in body and "Check with provider" not in body
    assert 'hx-disabled-elt="find button"' in body and "spinner htmx-indicator" in body


def test_htmx_gets_the_record_fragment(support_client, created, htmx_headers):
    body = support_client.get(url(created), headers=htmx_headers).content.decode()
    assert "<html" not in body and 'id="record"' in body and "Order 7" in body


# --- what it shows ---------------------------------------------------------------------------------


def test_it_shows_everything_about_the_record(support_client):
    original = ConversationFactory(status=Status.FAILED, error_message="first try failed")
    c = ConversationFactory(
        credential=original.credential,
        status=Status.FAILED,
        retry_of=original,
        name="Order 9",
        participants=["alice", "+15558675310"],
        request_body={"FriendlyName": "Order 9", "Participant": [{"identity": "alice"}]},
        provider_participants=[{"identity": "alice", "sid": "MB1"}],
        error_message='Participant <x> is "invalid" (see https://www.twilio.com/docs/errors/50407)',
        error_code="50407",
        error_status=400,
        external_id="",
    )
    retry = ConversationFactory(credential=c.credential, retry_of=c, status=Status.CREATED)
    body = support_client.get(url(c)).content.decode()
    assert "Order 9" in body and c.credential.label in body and c.created_by.username in body
    assert (
        "Participant &lt;x&gt; is &quot;invalid&quot; (see https://www.twilio.com/docs/errors/50407)" in body
    )
    assert "50407" in body and "HTTP 400" in body
    assert f'href="/conversations/{original.pk}/"' in body and f'href="/conversations/{retry.pk}/"' in body
    assert "+15558675310" in body and "&quot;FriendlyName&quot;: &quot;Order 9&quot;" in body  # pretty JSON
    assert "&quot;sid&quot;: &quot;MB1&quot;" in body  # as the provider reports them
    assert "Retry" in body and "Refresh from provider" not in body


def test_pending_record_explains_and_offers_a_check(support_client):
    c = ConversationFactory(
        status=Status.PENDING,
        external_id="",
        request_body={
            "FriendlyName": "Order 7",
            "UniqueName": "order-7",
            "Participant": [{"identity": "alice"}],
        },
    )
    body = support_client.get(url(c)).content.decode()
    assert "Still pending" in body and "died mid-call" in body and "Check with provider" in body
    assert "looks the conversation up by its UniqueName" in body


def test_unknown_outcome_explains(support_client):
    c = ConversationFactory(
        status=Status.FAILED,
        outcome_unknown=True,
        error_message="timed out",
        external_id="",
        request_body={"FriendlyName": "Order 7", "UniqueName": "order-7"},
    )
    body = support_client.get(url(c)).content.decode()
    assert "Outcome unknown" in body and "Check with provider" in body and "Retry" in body


def test_without_a_natural_key_it_says_to_check_at_the_provider(support_client):
    c = ConversationFactory(status=Status.FAILED, outcome_unknown=True, external_id="")
    body = support_client.get(url(c)).content.decode()
    assert "Check with provider" not in body and "finds a conversation only by its UniqueName" in body


def test_highlevel_duplicate_shows_the_existing_conversation(support_client):
    existing = ConversationFactory(external_id="hlconv123", status=Status.CREATED)
    c = ConversationFactory(
        credential=existing.credential,
        status=Status.FAILED,
        external_id="",
        error_message="Conversation with the contact id:abc already exists!",
        existing_conversation_id="hlconv123",
    )
    body = support_client.get(url(c)).content.decode()
    assert "already exists: <code>hlconv123</code>" in body and f"our record #{existing.pk}" in body


def test_exchange_timeline_is_collapsed_pretty_and_redacted(support_client, created):
    add_exchange(created)
    add_exchange(
        created,
        purpose="refresh",
        method="GET",
        url=f"{API}/Conversations/{SID}",
        request_body="",
        status=404,
        response_body='{"code": 20404, "message": "not found"}',
        error="",
    )
    body = support_client.get(url(created)).content.decode()
    assert body.count('class="exchange"') == 2 and "<details open" not in body
    assert "Basic ********" in body and BASIC not in body and TWILIO_TOKEN not in body
    assert "FriendlyName = Order 7" in body  # form body decoded, one field a line
    assert "&quot;sid&quot;: &quot;" + SID in body  # JSON pretty-printed
    assert 'http-status bad">404' in body and "123 ms" in body


def test_large_bodies_are_cut_with_a_download_of_the_stored_text(support_client, created):
    big = json.dumps({"items": ["x" * 50] * 400})
    ex = add_exchange(created, response_body=big, response_size=len(big))
    body = support_client.get(url(created)).content.decode()
    download = reverse("exchange_body", args=[created.pk, ex.pk, "response"])
    assert f'href="{download}"' in body and f"first {PREVIEW_CHARS} of {len(big)}" in body
    assert big not in body
    response = support_client.get(download)
    assert response.status_code == 200 and response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;") and response.content.decode() == big


def test_download_checks_the_record_and_the_part(support_client, outsider_client, created):
    ex = add_exchange(created)
    other = ConversationFactory()
    assert support_client.get(reverse("exchange_body", args=[other.pk, ex.pk, "request"])).status_code == 404
    assert support_client.get(f"/conversations/{created.pk}/exchanges/{ex.pk}/headers.txt").status_code == 404
    assert (
        outsider_client.get(reverse("exchange_body", args=[created.pk, ex.pk, "request"])).status_code == 403
    )
    assert support_client.get(
        reverse("exchange_body", args=[created.pk, ex.pk, "request"])
    ).content.startswith(b"FriendlyName=")


def test_query_count_does_not_grow_with_exchanges_or_retries(support_client, created):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert support_client.get(url(created)).status_code == 200
        return len(queries)

    add_exchange(created)
    ConversationFactory(credential=created.credential, retry_of=created, status=Status.FAILED)
    few = count()
    for _ in range(15):
        add_exchange(created)
        ConversationFactory(credential=created.credential, retry_of=created, status=Status.FAILED)
    assert count() == few <= 8


# --- actions (provider HTTP mocked with respx) -----------------------------------------------------


def participants_page(*identities):
    return {
        "participants": [
            {"sid": f"MB{i}", "identity": who, "attributes": "{}"} for i, who in enumerate(identities)
        ],
        "meta": {"key": "participants", "next_page_url": None},
    }


@respx.mock
def test_refresh_shows_the_differences_and_stores_the_exchange(support_client, created, htmx_headers):
    Conversation.objects.filter(pk=created.pk).update(
        provider_participants=[{"sid": "MB0", "identity": "alice"}]
    )
    respx.get(f"{API}/Conversations/{SID}").respond(200, json={"sid": SID, "friendly_name": "Order 7"})
    respx.get(f"{API}/Conversations/{SID}/Participants").respond(200, json=participants_page("alice", "bob"))
    response = support_client.post(url(created, "conversation_refresh"), headers=htmx_headers)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="record"' in body
    assert "Refreshed from the provider: 2 participants" in body and "Added" in body and "MB1" in body
    assert TWILIO_TOKEN not in body and BASIC not in body
    assert created.exchanges.filter(purpose="refresh").count() == 2
    assert AuditEvent.objects.filter(event_type=EventType.CONVERSATION_REFRESHED).exists()


@respx.mock
def test_refresh_failure_shows_the_provider_message(support_client, created, htmx_headers):
    respx.get(f"{API}/Conversations/{SID}").respond(
        404, json={"code": 20404, "message": "The requested resource was not found", "status": 404}
    )
    body = support_client.post(url(created, "conversation_refresh"), headers=htmx_headers).content.decode()
    assert "panel-error" in body and "The requested resource was not found" in body


@respx.mock
def test_refresh_without_htmx_redirects_with_a_message(support_client, created):
    respx.get(f"{API}/Conversations/{SID}").respond(200, json={"sid": SID})
    respx.get(f"{API}/Conversations/{SID}/Participants").respond(200, json=participants_page())
    response = support_client.post(url(created, "conversation_refresh"), follow=True)
    assert response.redirect_chain[-1][0] == url(created)
    assert "nothing changed" in response.content.decode()


def failed(**fields):
    values = {
        "status": Status.FAILED,
        "external_id": "",
        "error_message": "Invalid address",
        "error_code": "50407",
        "error_status": 400,
        "request_body": {"FriendlyName": "Order 7", "Participant": [{"identity": "alice"}]},
    }
    return ConversationFactory(**(values | fields))


@respx.mock
def test_retry_makes_a_new_linked_attempt_and_goes_there(support_client, htmx_headers):
    original = failed()
    respx.post(f"{API}/ConversationWithParticipants").respond(
        201, json={"sid": SID, "friendly_name": "Order 7"}
    )
    respx.get(f"{API}/Conversations/{SID}").respond(200, json={"sid": SID, "state": "active"})
    respx.get(f"{API}/Conversations/{SID}/Participants").respond(200, json=participants_page("alice"))
    response = support_client.post(url(original, "conversation_retry"), headers=htmx_headers)
    attempt = Conversation.objects.get(retry_of=original)
    assert attempt.status == Status.CREATED and attempt.external_id == SID
    assert response["HX-Redirect"] == url(attempt)
    page = support_client.get(url(attempt)).content.decode()
    assert f"Retried as record {attempt.pk}" in page and f'href="/conversations/{original.pk}/"' in page


@respx.mock
def test_retry_after_an_unknown_outcome_finds_it_instead_of_creating_again(support_client, htmx_headers):
    original = failed(
        outcome_unknown=True,
        error_code="timeout",
        error_status=None,
        request_body={
            "FriendlyName": "Order 7",
            "UniqueName": "order-7",
            "Participant": [{"identity": "alice"}],
        },
    )
    respx.get(f"{API}/Conversations/order-7").respond(200, json={"sid": SID, "unique_name": "order-7"})
    respx.get(f"{API}/Conversations/{SID}/Participants").respond(200, json=participants_page("alice"))
    create = respx.post(f"{API}/ConversationWithParticipants")
    body = support_client.post(url(original, "conversation_retry"), headers=htmx_headers).content.decode()
    original.refresh_from_db()
    assert not create.called and original.status == Status.CREATED and original.external_id == SID
    assert (
        "already had this conversation" in body
        and not Conversation.objects.filter(retry_of=original).exists()
    )


def test_retry_of_a_created_record_is_refused(support_client, created, htmx_headers):
    body = support_client.post(url(created, "conversation_retry"), headers=htmx_headers).content.decode()
    assert "Not retried" in body and "Only a failed conversation can be retried." in body


@pytest.mark.parametrize(("found", "status"), [(True, Status.CREATED), (False, Status.FAILED)])
@respx.mock
def test_check_with_provider_settles_a_pending_record(support_client, htmx_headers, found, status):
    c = ConversationFactory(
        status=Status.PENDING,
        external_id="",
        request_body={
            "FriendlyName": "Order 7",
            "UniqueName": "order-7",
            "Participant": [{"identity": "alice"}],
        },
    )
    Conversation.objects.filter(pk=c.pk).update(created_at=timezone.now() - timedelta(hours=1))
    if found:
        respx.get(f"{API}/Conversations/order-7").respond(200, json={"sid": SID, "unique_name": "order-7"})
        respx.get(f"{API}/Conversations/{SID}/Participants").respond(200, json=participants_page("alice"))
    else:
        respx.get(f"{API}/Conversations/order-7").respond(404, json={"code": 20404, "message": "not found"})
    body = support_client.post(url(c, "conversation_check"), headers=htmx_headers).content.decode()
    c.refresh_from_db()
    assert c.status == status and "Checked with the provider" in body
    assert ("it has this conversation" in body) is found
    assert c.exchanges.filter(purpose="lookup").exists()


def test_check_without_a_natural_key_is_refused_with_the_reason(support_client, htmx_headers):
    c = ConversationFactory(status=Status.PENDING, external_id="")
    Conversation.objects.filter(pk=c.pk).update(created_at=timezone.now() - timedelta(hours=1))
    body = support_client.post(url(c, "conversation_check"), headers=htmx_headers).content.decode()
    assert "Not checked" in body and "UniqueName" in body


def test_no_retry_button_when_an_unknown_outcome_cannot_be_looked_up(support_client):
    unknown = failed(outcome_unknown=True, error_code="timeout", error_status=None)
    page = support_client.get(url(unknown)).content.decode()
    assert "check at the provider directly" in page
    assert "conversation_retry" not in page and f"/conversations/{unknown.pk}/retry/" not in page
    plain = failed()
    assert f"/conversations/{plain.pk}/retry/" in support_client.get(url(plain)).content.decode()


# --- issue #10: wording and colour follow what happened -------------------------------------------


def test_a_graph_server_error_is_not_called_a_timeout(support_client):
    from tests.create_support import graph_credential

    c = ConversationFactory(
        credential=graph_credential(),
        provider="msgraph",
        status=Status.FAILED,
        outcome_unknown=True,
        external_id="",
        error_message="Microsoft Graph answered HTTP 500: a server error.",
        error_code="http_500",
        error_status=500,
        request_body={"topic": "Review", "threads": []},
    )
    body = support_client.get(url(c)).content.decode()
    assert "Microsoft Graph answered with a server error (HTTP 500): it may or may not have created" in body
    assert "did not answer in time" not in body


def test_a_timeout_is_still_called_one(support_client):
    c = failed(outcome_unknown=True, error_code="timeout", error_status=None)
    assert "Twilio Conversations did not answer in time" in support_client.get(url(c)).content.decode()


@respx.mock
def test_a_failed_retry_is_said_in_red_not_as_a_success(support_client, htmx_headers):
    original = failed()
    respx.post(f"{API}/ConversationWithParticipants").respond(
        400, json={"code": 50407, "message": "Invalid address", "status": 400}
    )
    response = support_client.post(url(original, "conversation_retry"), headers=htmx_headers)
    attempt = Conversation.objects.get(retry_of=original)
    assert attempt.status == Status.FAILED
    page = support_client.get(response["HX-Redirect"]).content.decode()
    assert f'<li class="msg-error">The retry failed too: record {attempt.pk}' in page
    assert "msg-success" not in page


@respx.mock
def test_a_rate_limited_record_says_how_long_to_wait(support_client):
    c = failed(
        error_code="20429",
        error_status=429,
        error_message="Too Many Requests",
        retry_after=30,
    )
    body = support_client.get(url(c)).content.decode()
    assert "Wait 30 seconds, then create again" in body


def test_participant_chips_show_the_distinguishing_end_and_the_whole_in_a_tooltip():
    from convadmin.conversations.templatetags.conversation_rows import chip

    one = chip("3f1c2a55-7b43-4c8e-9a61-2d0b5e8f9c10")
    two = chip("3f1c2a55-7b43-4c8e-9a61-2d0b5e8f0000")
    assert one != two
    assert 'title="3f1c2a55-7b43-4c8e-9a61-2d0b5e8f9c10"' in one and ">3f1c2a55…5e8f9c10<" in one
    assert chip("alice") == '<span class="chip" title="alice">alice</span> '
    assert "&lt;b&gt;" in chip("<b>")
