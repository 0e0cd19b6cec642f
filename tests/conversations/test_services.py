from __future__ import annotations

import json
import uuid
from datetime import timedelta
from urllib.parse import parse_qsl

import httpx
import pytest
from django.utils import timezone

from convadmin.audit.models import AuditEvent, EventType
from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from convadmin.exchanges.models import Exchange
from providers import highlevel, twilio
from tests.create_support import (
    CH,
    GRAPH,
    GRAPH_GROUP,
    GRAPH_LOGIN,
    GRAPH_SECRETS,
    GRAPH_TENANT,
    HIGHLEVEL,
    HL_CONTACT,
    HL_CONVERSATION,
    HL_LOCATION,
    HL_TOKEN,
    MIXIN,
    MIXIN_APP,
    MIXIN_CONTACT_ID,
    MIXIN_OTHER,
    MIXIN_SEED,
    MIXIN_USER,
    TWILIO,
    TWILIO_BASIC,
    assert_no_secret,
    graph_body,
    graph_credential,
    highlevel_credential,
    mixin_conversation,
    mixin_credential,
    stored_text,
    twilio_conversation,
    twilio_credential,
    twilio_error,
    twilio_members,
)
from tests.factories import TWILIO_TOKEN, ConversationFactory

pytestmark = pytest.mark.django_db

BODY = {"FriendlyName": "Order 123", "UniqueName": "order-123", "Participant": [{"identity": "alice"}]}


@pytest.fixture
def twilio_ok(respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(202, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    return respx_mock


def audit_types() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("event_type", flat=True))


def all_audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("extra", "target_label")), default=str)


# --- create -------------------------------------------------------------------------------------


def test_the_record_is_pending_and_committed_before_the_provider_is_called(support, respx_mock):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(list(Conversation.objects.values_list("status", flat=True)))
        seen.append(list(AuditEvent.objects.values_list("event_type", flat=True)))
        return httpx.Response(201, json=twilio_conversation())

    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=handler)
    conversation = services.do_create_conversation(
        {"FriendlyName": "Order 123"}, credential=twilio_credential(), acting_user=support
    )
    assert seen == [[Status.PENDING], [EventType.CONVERSATION_REQUESTED]]
    assert conversation.status == Status.CREATED


def test_it_creates_a_twilio_conversation_and_keeps_the_providers_answer(support, twilio_ok):
    credential = twilio_credential()
    conversation = services.do_create_conversation(BODY, credential=credential, acting_user=support)
    conversation.refresh_from_db()
    assert conversation.status == Status.CREATED
    assert conversation.external_id == CH
    assert conversation.name == "Order 123"
    assert conversation.participants == ["alice"]
    assert conversation.request_body == BODY
    assert conversation.response_body["sid"] == CH
    assert [p["identity"] for p in conversation.provider_participants] == ["alice"]
    assert conversation.completed_at is not None
    sent = twilio_ok.calls[0].request
    assert sent.headers["Authorization"] == f"Basic {TWILIO_BASIC}"
    assert parse_qsl(sent.content.decode()) == [
        ("FriendlyName", "Order 123"),
        ("UniqueName", "order-123"),
        ("Participant", '{"identity":"alice"}'),
    ]
    assert list(conversation.exchanges.values_list("purpose", "status")) == [
        ("create", 202),
        ("create", 200),
        ("create", 200),
    ]
    assert audit_types() == [EventType.CONVERSATION_REQUESTED, EventType.CONVERSATION_CREATED]
    assert AuditEvent.objects.get(event_type=EventType.CONVERSATION_CREATED).extra["external_id"] == CH


def test_exchanges_and_audit_hold_no_secret(support, twilio_ok):
    services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    text = stored_text()
    assert "Basic [redacted]" in text
    assert_no_secret(text, all_audit_text())


def test_a_provider_refusal_is_saved_as_failed_with_its_message_code_and_status(support, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(
        return_value=twilio_error(50353, "Conversation with provided unique name already exists", 409)
    )
    conversation = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    conversation.refresh_from_db()
    assert conversation.status == Status.FAILED
    assert conversation.error_message.startswith("Conversation with provided unique name already exists")
    assert conversation.error_code == "50353"
    assert conversation.error_status == 409
    assert conversation.outcome_unknown is False
    assert conversation.exchanges.get().status == 409
    assert audit_types() == [EventType.CONVERSATION_REQUESTED, EventType.CONVERSATION_FAILED]
    assert AuditEvent.objects.get(event_type=EventType.CONVERSATION_FAILED).extra["error_code"] == "50353"


def test_after_a_timeout_it_looks_the_conversation_up_and_finds_it(support, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-123").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    conversation = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    assert conversation.status == Status.CREATED
    assert conversation.external_id == CH
    assert conversation.outcome_unknown is False
    assert conversation.lookup["result"] == "found"
    assert list(conversation.exchanges.values_list("purpose", flat=True)) == ["create", "lookup", "lookup"]
    assert conversation.exchanges.first().error  # the timeout is on record


def test_after_a_timeout_not_found_is_failed_with_the_outcome_unknown(support, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-123").respond(
        404, json={"code": 20404, "message": "The requested resource was not found", "status": 404}
    )
    conversation = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    assert conversation.status == Status.FAILED
    assert conversation.outcome_unknown is True
    assert conversation.error_code == "timeout"
    assert "did not answer in time" in conversation.error_message
    assert conversation.lookup["result"] == "not_found"
    assert list(conversation.exchanges.values_list("purpose", flat=True)) == ["create", "lookup"]


def test_without_a_unique_name_one_is_generated_so_a_timeout_can_be_looked_up(support, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    key = uuid.uuid4()
    respx_mock.get(f"{TWILIO}/v1/Conversations/convadmin-{key}").respond(
        404, json={"code": 20404, "message": "not found", "status": 404}
    )
    conversation = services.do_create_conversation(
        {"FriendlyName": "x"}, credential=twilio_credential(), acting_user=support, idempotency_key=key
    )
    assert conversation.request_body["UniqueName"] == f"convadmin-{key}"
    assert conversation.outcome_unknown is True
    assert conversation.lookup["result"] == "not_found"
    assert conversation.settle_after is not None  # the settle job looks again
    assert len(respx_mock.calls) == 2


def test_the_same_idempotency_key_creates_once(support, twilio_ok):
    credential, key = twilio_credential(), uuid.uuid4()
    first = services.do_create_conversation(
        BODY, credential=credential, acting_user=support, idempotency_key=key
    )
    again = services.do_create_conversation(
        BODY, credential=credential, acting_user=support, idempotency_key=key
    )
    assert again.pk == first.pk
    assert Conversation.objects.count() == 1
    assert twilio_ok.calls.call_count == 3  # create + read-back, once


def test_an_invalid_body_saves_and_sends_nothing(support, respx_mock):
    with pytest.raises(services.ValidationFailed) as info:
        services.do_create_conversation(
            {"Participant": [{"identity": "alice"}, {"identity": "alice"}], "State": "closed"},
            credential=twilio_credential(),
            acting_user=support,
        )
    assert set(info.value.errors) == {"State", "Participant.1.identity"}
    assert Conversation.objects.count() == 0
    assert AuditEvent.objects.count() == 0
    assert not respx_mock.calls


def test_a_disabled_credential_is_refused(support, respx_mock):
    with pytest.raises(services.ValidationFailed) as info:
        services.do_create_conversation(
            BODY, credential=twilio_credential(disabled=True), acting_user=support
        )
    assert "disabled" in info.value.errors["credential"][0]
    assert Conversation.objects.count() == 0


def test_an_unreadable_secret_fails_the_record_with_a_clear_message(support, respx_mock):
    credential = twilio_credential()
    credential.secret = "not-a-fernet-token"
    credential.save()
    conversation = services.do_create_conversation(BODY, credential=credential, acting_user=support)
    assert conversation.status == Status.FAILED
    assert conversation.error_code == "secret_unreadable"
    assert "ENCRYPTION_KEYS" in conversation.error_message
    assert not respx_mock.calls


def test_an_unexpected_error_never_leaves_the_record_pending(support, respx_mock, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(twilio, "create", broken)
    conversation = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    conversation.refresh_from_db()
    assert conversation.status == Status.FAILED
    assert conversation.error_code == "internal_error"
    assert "server log" in conversation.error_message
    assert "bug" in caplog.text


def test_mixin_contact_gets_its_computed_conversation_id(support, respx_mock):
    route = respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    conversation = services.do_create_conversation(
        {"category": "CONTACT", "participants": [{"user_id": MIXIN_USER.upper()}]},
        credential=mixin_credential(),
        acting_user=support,
    )
    assert conversation.status == Status.CREATED
    assert conversation.external_id == MIXIN_CONTACT_ID
    assert conversation.request_body["conversation_id"] == MIXIN_CONTACT_ID
    sent = json.loads(route.calls[0].request.content)
    assert sent == {
        "category": "CONTACT",
        "conversation_id": MIXIN_CONTACT_ID,
        "participants": [{"user_id": MIXIN_USER}],
    }
    assert route.calls[0].request.headers["Authorization"].startswith("Bearer ey")
    assert "Bearer [redacted]" in stored_text()
    assert_no_secret(stored_text(), all_audit_text())
    assert MIXIN_SEED not in json.dumps(conversation.response_body)


def test_mixin_error_inside_a_2xx_is_a_failure(support, respx_mock):
    respx_mock.post(f"{MIXIN}/conversations").respond(
        202, json={"error": {"status": 202, "code": 10002, "description": "Invalid conversation id."}}
    )
    conversation = services.do_create_conversation(
        {"category": "CONTACT", "participants": [{"user_id": MIXIN_USER}]},
        credential=mixin_credential(),
        acting_user=support,
    )
    assert conversation.status == Status.FAILED
    assert conversation.error_message == "Invalid conversation id."
    assert conversation.error_code == "10002"


def test_highlevel_duplicate_keeps_the_existing_conversation(support, respx_mock, monkeypatch):
    monkeypatch.setattr(highlevel, "sleep", lambda seconds: None)
    respx_mock.post(f"{HIGHLEVEL}/conversations/").respond(
        400, json={"statusCode": 400, "message": "Conversation already exists!"}
    )
    respx_mock.get(f"{HIGHLEVEL}/conversations/search").respond(
        200, json={"conversations": [{"id": HL_CONVERSATION, "contactId": HL_CONTACT}], "total": 1}
    )
    conversation = services.do_create_conversation(
        {"contactId": HL_CONTACT}, credential=highlevel_credential(), acting_user=support
    )
    assert conversation.status == Status.FAILED
    assert conversation.error_message == "Conversation already exists!"
    assert conversation.error_code == "duplicate_contact"
    assert conversation.existing_conversation_id == HL_CONVERSATION and conversation.response_body == {}
    assert conversation.request_body == {"locationId": HL_LOCATION, "contactId": HL_CONTACT}
    assert HL_TOKEN not in stored_text()


# --- retry, check -------------------------------------------------------------------------------


def failed_mixin(support, **changes) -> Conversation:
    body = {
        "category": "CONTACT",
        "conversation_id": MIXIN_CONTACT_ID,
        "participants": [{"user_id": MIXIN_USER}],
    }
    fields = {
        "credential": mixin_credential(),
        "created_by": support,
        "status": Status.FAILED,
        "request_body": body,
        "external_id": "",
        "error_message": "Forbidden.",
        "error_code": "403",
        "error_status": 200,
    }
    return ConversationFactory(**(fields | changes))


def test_retry_creates_a_new_linked_attempt_with_the_same_body(support, respx_mock):
    route = respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    original = failed_mixin(support)
    attempt = services.do_retry_conversation(original, acting_user=support, ip="10.0.0.9")
    assert attempt.pk != original.pk
    assert attempt.retry_of == original
    assert attempt.status == Status.CREATED
    assert json.loads(route.calls[0].request.content)["conversation_id"] == MIXIN_CONTACT_ID
    retried = AuditEvent.objects.get(event_type=EventType.CONVERSATION_RETRIED)
    assert retried.target_id == str(original.pk) and retried.extra == {"new_attempt": attempt.pk}
    assert retried.ip == "10.0.0.9"
    with pytest.raises(services.ActionRefused):
        services.do_retry_conversation(original, acting_user=support)


def test_retry_after_an_unknown_outcome_looks_up_first_and_marks_the_original_created(support, respx_mock):
    post = respx_mock.post(f"{MIXIN}/conversations")
    respx_mock.get(f"{MIXIN}/conversations/{MIXIN_CONTACT_ID}").respond(200, json=mixin_conversation())
    original = failed_mixin(support, outcome_unknown=True, error_code="timeout", error_status=None)
    result = services.do_retry_conversation(original, acting_user=support)
    assert result.pk == original.pk
    original.refresh_from_db()
    assert original.status == Status.CREATED
    assert original.external_id == MIXIN_CONTACT_ID
    assert original.error_message == "" and original.outcome_unknown is False
    assert not post.called
    assert list(original.exchanges.values_list("purpose", flat=True)) == ["lookup"]
    assert Conversation.objects.count() == 1


def test_retry_after_an_unknown_outcome_not_found_sends_again(support, respx_mock):
    respx_mock.get(f"{MIXIN}/conversations/{MIXIN_CONTACT_ID}").respond(
        200, json={"error": {"status": 404, "code": 404, "description": "The endpoint is not found."}}
    )
    post = respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    original = failed_mixin(support, outcome_unknown=True, error_code="timeout", error_status=None)
    attempt = services.do_retry_conversation(original, acting_user=support)
    assert attempt.retry_of == original and attempt.status == Status.CREATED
    assert post.call_count == 1


def test_retry_refuses_a_disabled_credential(support, respx_mock):
    original = failed_mixin(support)
    original.credential.disabled = True
    original.credential.save()
    with pytest.raises(services.ActionRefused, match="disabled"):
        services.do_retry_conversation(original, acting_user=support)
    assert not respx_mock.calls


def test_retry_refuses_a_created_conversation(support):
    with pytest.raises(services.ActionRefused):
        services.do_retry_conversation(ConversationFactory(), acting_user=support)


def test_retry_refuses_when_a_twilio_timeout_cannot_be_looked_up(support, respx_mock):
    original = ConversationFactory(
        status=Status.FAILED, outcome_unknown=True, error_code="timeout", request_body={"FriendlyName": "x"}
    )
    with pytest.raises(services.ActionRefused, match="UniqueName"):
        services.do_retry_conversation(original, acting_user=support)
    assert not respx_mock.calls


def test_check_with_provider_settles_a_pending_record_as_not_found(support, respx_mock):
    respx_mock.get(f"{MIXIN}/conversations/{MIXIN_CONTACT_ID}").respond(
        200, json={"error": {"status": 404, "code": 404, "description": "The endpoint is not found."}}
    )
    pending = failed_mixin(support, status=Status.PENDING, error_message="", error_code="", error_status=None)
    Conversation.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(hours=1))
    pending.refresh_from_db()
    checked = services.do_check_with_provider(pending, acting_user=support)
    assert checked.status == Status.FAILED
    assert "Not found at the provider" in checked.error_message
    assert checked.outcome_unknown is False
    assert AuditEvent.objects.get().event_type == EventType.CONVERSATION_REFRESHED
    assert list(checked.exchanges.values_list("purpose", flat=True)) == ["lookup"]


def test_check_with_provider_finds_an_unknown_outcome(support, respx_mock):
    respx_mock.get(f"{MIXIN}/conversations/{MIXIN_CONTACT_ID}").respond(200, json=mixin_conversation())
    record = failed_mixin(support, outcome_unknown=True, error_code="timeout")
    checked = services.do_check_with_provider(record, acting_user=support)
    assert checked.status == Status.CREATED and checked.external_id == MIXIN_CONTACT_ID


def test_check_with_provider_waits_for_a_call_that_may_still_run(support, respx_mock):
    pending = failed_mixin(support, status=Status.PENDING)
    with pytest.raises(services.ActionRefused, match="still being created"):
        services.do_check_with_provider(pending, acting_user=support)


# --- refresh ------------------------------------------------------------------------------------


def test_refresh_stores_the_participants_and_returns_the_differences(support, respx_mock):
    conversation = failed_mixin(
        support,
        status=Status.CREATED,
        external_id=MIXIN_CONTACT_ID,
        error_message="",
        provider_participants=[
            {"type": "participant", "user_id": MIXIN_USER, "role": ""},
            {"type": "participant", "user_id": MIXIN_APP, "role": "OWNER"},
        ],
    )
    respx_mock.get(f"{MIXIN}/conversations/{MIXIN_CONTACT_ID}").respond(
        200, json=mixin_conversation(MIXIN_CONTACT_ID, (MIXIN_USER, "ADMIN"), (MIXIN_OTHER, ""))
    )
    differences = services.do_refresh_conversation(conversation, acting_user=support)
    assert [p["user_id"] for p in differences["added"]] == [MIXIN_OTHER]
    assert differences["removed"] == []
    assert differences["changed"] == [
        {"participant": MIXIN_USER, "fields": {"role": {"before": "", "after": "ADMIN"}}}
    ]
    assert len(differences["previous"]) == 2 and len(differences["current"]) == 3
    conversation.refresh_from_db()
    assert conversation.refreshed_at is not None
    assert len(conversation.provider_participants) == 3
    assert list(conversation.exchanges.values_list("purpose", flat=True)) == ["refresh"]
    event = AuditEvent.objects.get(event_type=EventType.CONVERSATION_REFRESHED)
    assert event.extra["added"] == [MIXIN_OTHER]


def test_refresh_failure_is_a_clear_error_and_the_exchange_is_kept(support, respx_mock):
    conversation = ConversationFactory(credential=twilio_credential(), external_id=CH)
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").mock(
        return_value=twilio_error(20003, "Authenticate", 401)
    )
    with pytest.raises(services.CallFailed, match="Authenticate") as info:
        services.do_refresh_conversation(conversation, acting_user=support)
    assert info.value.status == 401
    assert conversation.exchanges.get().purpose == "refresh"
    assert TWILIO_TOKEN not in stored_text()
    assert AuditEvent.objects.get().extra["ok"] is False


# --- preview ------------------------------------------------------------------------------------


def test_preview_shows_the_exact_request_redacted_with_a_curl_using_env_placeholders(respx_mock):
    preview = services.preview_request(BODY, twilio_credential())
    assert preview.method == "POST"
    assert preview.url == f"{TWILIO}/v1/ConversationWithParticipants"
    assert preview.headers["Authorization"] == "Basic [redacted]"
    assert "Participant=%7B%22identity%22%3A%22alice%22%7D" in preview.body
    assert '-u "$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN"' in preview.curl
    assert "--data-binary 'FriendlyName=Order%20123" in preview.curl
    assert_no_secret(preview.curl, preview.body, json.dumps(preview.headers))
    assert not respx_mock.calls


def test_preview_for_mixin_masks_the_signed_token(respx_mock):
    preview = services.preview_request(
        {"category": "CONTACT", "participants": [{"user_id": MIXIN_USER}]}, mixin_credential()
    )
    assert preview.headers["Authorization"] == "Bearer [redacted]"
    assert '-H "Authorization: Bearer $MIXIN_JWT"' in preview.curl
    assert "eyJ" not in preview.curl and "eyJ" not in json.dumps(preview.headers)
    assert MIXIN_CONTACT_ID in preview.body


def test_preview_for_graph_needs_no_token_and_makes_no_call(respx_mock):
    preview = services.preview_request(graph_body(), graph_credential())
    assert (
        preview.url
        == "https://graph.microsoft.com/v1.0/groups/29981b6a-0e57-42dc-94c9-cd24f5306196/conversations"
    )
    assert '-H "Authorization: Bearer $MSGRAPH_ACCESS_TOKEN"' in preview.curl
    assert "graph-client-secret-value" not in preview.curl + preview.body
    assert "groupId" not in preview.body
    assert not respx_mock.calls


def test_preview_shows_the_body_bytes_as_sent():
    preview = services.preview_request({**BODY, "Attributes": '{"a": 1}'}, twilio_credential())
    assert "Attributes=%7B%22a%22%3A%201%7D" in preview.body


def test_graph_create_stores_the_rotated_refresh_token_and_masks_every_token(support, respx_mock):
    credential = graph_credential()
    token = respx_mock.post(f"{GRAPH_LOGIN}/{GRAPH_TENANT}/oauth2/v2.0/token").respond(
        200,
        json={"access_token": GRAPH_SECRETS[2], "refresh_token": GRAPH_SECRETS[3], "token_type": "Bearer"},
    )
    create = respx_mock.post(f"{GRAPH}/v1.0/groups/{GRAPH_GROUP}/conversations").respond(
        201, json={"id": "AAQkADconv=", "topic": "Launch"}
    )
    conversation = services.do_create_conversation(
        graph_body("adele@contoso.com"), credential=credential, acting_user=support
    )
    assert conversation.status == Status.CREATED and conversation.external_id == "AAQkADconv="
    assert conversation.request_body["groupId"] == GRAPH_GROUP
    assert "groupId" not in json.loads(create.calls[0].request.content)
    assert create.calls[0].request.headers["Authorization"] == f"Bearer {GRAPH_SECRETS[2]}"
    assert token.called
    credential.refresh_from_db()
    assert credential.get_secrets()["refresh_token"] == GRAPH_SECRETS[3]
    text = stored_text() + all_audit_text() + json.dumps(conversation.response_body)
    for secret in GRAPH_SECRETS:
        assert secret not in text


def test_preview_refuses_an_invalid_body():
    with pytest.raises(services.ValidationFailed):
        services.preview_request({"State": "closed"}, twilio_credential())


def test_participant_differences_ignore_volatile_fields():
    before = [{"sid": "MB1", "identity": "a", "date_updated": "1"}]
    after = [{"sid": "MB1", "identity": "a", "date_updated": "2"}]
    assert services.participant_differences(before, after, ("sid",)) == {
        "added": [],
        "removed": [],
        "changed": [],
    }


def test_exchange_rows_are_linked_to_the_credential(support, twilio_ok):
    credential = twilio_credential()
    services.do_create_conversation(BODY, credential=credential, acting_user=support)
    assert set(Exchange.objects.values_list("credential", flat=True)) == {credential.pk}
