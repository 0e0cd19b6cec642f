"""Provider calls as jobs: the page never waits on a provider, nothing is created twice, nothing stays pending."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from unittest import mock

import httpx
import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from convadmin.audit.models import AuditEvent, EventType
from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from tests.create_support import (
    CH,
    MIXIN,
    MIXIN_CONTACT_ID,
    MIXIN_USER,
    TWILIO,
    mixin_conversation,
    mixin_credential,
    twilio_conversation,
    twilio_credential,
    twilio_members,
)

pytestmark = pytest.mark.django_db
BODY = {"FriendlyName": "Order 9", "UniqueName": "order-9", "Participant": [{"identity": "alice"}]}
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture
def queued(settings):
    """Jobs go to the database queue and wait there, as with a real worker that has not run them yet."""
    settings.TASKS = DATABASE_TASKS


@pytest.fixture
def twilio_ok(respx_mock):
    create = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        202, json=twilio_conversation()
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    return create


def make_pending(support, **changes) -> Conversation:
    """A record as the web leaves it: pending, its create job queued (and not run)."""
    with mock.patch(
        "convadmin.conversations.services.create.enqueue_in_transaction", return_value=lambda: None
    ):
        conversation = services.do_create_conversation(
            BODY, credential=twilio_credential(), acting_user=support
        )
    Conversation.objects.filter(pk=conversation.pk).update(**changes)
    conversation.refresh_from_db()
    return conversation


def test_a_create_is_saved_pending_with_its_job_in_one_transaction_and_nothing_is_sent(
    support, queued, respx_mock
):
    conversation = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    assert conversation.status == Status.PENDING and conversation.action == "create"
    job = DBTaskResult.objects.get()
    assert job.task_path == "convadmin.conversations.tasks.create_conversation"
    assert job.args_kwargs["args"][0] == conversation.pk
    assert not respx_mock.calls


def test_the_page_answers_at_once_and_its_panel_follows_the_job(
    support_client, htmx_headers, queued, twilio_ok
):
    credential = twilio_credential(label="Twilio main")
    data = {
        "provider": "twilio",
        "credential": str(credential.pk),
        "idempotency_key": "7b8f2c8e-1d5e-4a0a-9a53-0c1f6f1e2a10",
        "FriendlyName": "Order 9",
        "participants-TOTAL_FORMS": "0",
        "participants-INITIAL_FORMS": "0",
    }
    page = support_client.post("/conversations/new/", data, headers=htmx_headers).content.decode()
    conversation = Conversation.objects.get()
    status_url = f"/conversations/new/status/{conversation.pk}/"
    assert "Creating at Twilio Conversations" in page and f'hx-get="{status_url}"' in page
    assert twilio_ok.call_count == 0
    services.run_create(conversation.pk)
    panel = support_client.get(status_url, headers=htmx_headers).content.decode()
    assert "Conversation created" in panel and CH in panel and "hx-trigger" not in panel
    assert twilio_ok.call_count == 1


def test_a_job_delivered_twice_sends_once(support, twilio_ok):
    conversation = make_pending(support)
    services.run_create(conversation.pk)
    services.run_create(conversation.pk)
    assert twilio_ok.call_count == 1
    assert Conversation.objects.get().status == Status.CREATED


def test_a_record_held_by_a_live_job_is_left_alone(support, twilio_ok):
    conversation = make_pending(support, lease_until=timezone.now() + timedelta(minutes=1), attempts=1)
    assert services.run_create(conversation.pk).status == Status.PENDING
    assert twilio_ok.call_count == 0


def test_after_a_killed_worker_the_rerun_looks_up_first_and_never_sends_again(support, respx_mock):
    conversation = make_pending(support, lease_until=timezone.now() - timedelta(seconds=1), attempts=1)
    create = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        202, json=twilio_conversation()
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-9").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    lines = services.settle_conversations()
    settled = Conversation.objects.get(pk=conversation.pk)
    assert lines == [{"id": conversation.pk, "action": "create", "result": "created"}]
    assert settled.status == Status.CREATED and settled.external_id == CH
    assert create.call_count == 0
    assert settled.lookup["result"] == "found"


def test_after_a_killed_worker_a_unique_key_not_found_is_sent_again(support, twilio_ok, respx_mock):
    conversation = make_pending(support, lease_until=timezone.now() - timedelta(seconds=1), attempts=1)
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-9").respond(404, json={"code": 20404, "status": 404})
    settled = services.run_create(conversation.pk)
    assert settled.status == Status.CREATED and twilio_ok.call_count == 1
    assert list(settled.exchanges.values_list("purpose", flat=True)) == [
        "lookup",
        "create",
        "create",
        "create",
    ]


def test_a_create_whose_job_never_started_is_run_by_the_settle_job(support, twilio_ok):
    conversation = make_pending(support)
    assert services.settle_conversations() == []  # young: its job may still be in the queue
    Conversation.objects.filter(pk=conversation.pk).update(created_at=timezone.now() - timedelta(minutes=6))
    services.settle_conversations()
    assert Conversation.objects.get().status == Status.CREATED and twilio_ok.call_count == 1


def test_settle_conversations_command_says_whether_anything_is_left(support, twilio_ok):
    conversation = make_pending(support, lease_until=timezone.now() + timedelta(minutes=1), attempts=1)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("settle_conversations", stdout=out)
    assert exit_.value.code == 1
    assert json.loads(out.getvalue().splitlines()[-1]) == {"summary": True, "unsettled": 1}
    Conversation.objects.filter(pk=conversation.pk).update(lease_until=None, attempts=0)
    out = io.StringIO()
    call_command("settle_conversations", "--id", str(conversation.pk), stdout=out)
    first = json.loads(out.getvalue().splitlines()[0])
    assert first == {"id": conversation.pk, "action": "create", "result": "created"}


def test_an_unknown_outcome_is_looked_up_again_by_the_settle_job(support, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    lookup = respx_mock.get(f"{TWILIO}/v1/Conversations/order-9")
    lookup.side_effect = [
        httpx.Response(404, json={"code": 20404, "status": 404}),
        httpx.Response(200, json=twilio_conversation()),
    ]
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    first = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    assert first.outcome_unknown and first.settle_after is not None
    assert services.settle_conversations() == []  # not due yet
    Conversation.objects.filter(pk=first.pk).update(settle_after=timezone.now())
    services.settle_conversations()
    settled = Conversation.objects.get(pk=first.pk)
    assert settled.status == Status.CREATED and not settled.outcome_unknown and settled.settle_after is None


def test_two_retry_clicks_make_one_retry(support, support_client, htmx_headers, queued, respx_mock):
    original = Conversation.objects.create(
        provider="mixin",
        credential=mixin_credential(),
        created_by=support,
        status=Status.FAILED,
        error_message="Forbidden.",
        error_code="403",
        error_status=403,
        request_body={
            "category": "CONTACT",
            "conversation_id": MIXIN_CONTACT_ID,
            "participants": [{"user_id": MIXIN_USER}],
        },
    )
    url = f"/conversations/{original.pk}/retry/"
    first = support_client.post(url, headers=htmx_headers).content.decode()
    second = support_client.post(url, headers=htmx_headers).content.decode()
    assert "Retrying…" in first and "hx-trigger" in first
    assert "Not retried" in second and "already under way" in second
    assert DBTaskResult.objects.count() == 1
    route = respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    job = DBTaskResult.objects.get()
    services.run_action(*job.args_kwargs["args"])
    services.run_action(*job.args_kwargs["args"])  # redelivered: the record is released, nothing runs
    assert route.call_count == 1 and Conversation.objects.filter(retry_of=original).count() == 1
    page = support_client.get(f"/conversations/{original.pk}/", headers=htmx_headers).content.decode()
    assert "Retried as record" in page and "hx-trigger" not in page


def test_an_action_whose_job_was_lost_is_released_by_the_settle_job(support, queued):
    conversation = make_pending(support)
    Conversation.objects.filter(pk=conversation.pk).update(
        status=Status.CREATED,
        external_id=CH,
        action="refresh",
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert services.settle_conversations() == [
        {"id": conversation.pk, "action": "refresh", "result": "released"}
    ]
    released = Conversation.objects.get(pk=conversation.pk)
    assert released.action == "" and "stopped before it finished" in released.action_result["error"]


def test_an_outcome_survives_a_lost_database_connection(transactional_db, support, twilio_ok):
    conversation = make_pending(support)
    real_save = Conversation.save
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_save(self, *args, **kwargs)

    with mock.patch.object(Conversation, "save", flaky), mock.patch("time.sleep"):
        settled = services.run_create(conversation.pk)
    assert calls["n"] == 2 and Conversation.objects.get().status == Status.CREATED == settled.status
    assert AuditEvent.objects.filter(event_type=EventType.CONVERSATION_CREATED).count() == 1


def test_the_cli_can_queue_without_waiting(support, tmp_path, queued, respx_mock):
    credential = mixin_credential()
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"category": "CONTACT", "participants": [{"user_id": MIXIN_USER}]}))
    out = io.StringIO()
    call_command("create_conversation", credential.label, "--file", str(path), "--no-wait", stdout=out)
    record = Conversation.objects.get()
    assert json.loads(out.getvalue()) == {"id": record.pk, "status": "pending"}
    assert record.status == Status.PENDING and DBTaskResult.objects.count() == 1 and not respx_mock.calls


def test_text_postgresql_cannot_store_is_escaped_before_saving(support, respx_mock):
    reply = {**twilio_conversation(), "friendly_name": "Order\u0000 9"}
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(202, json=reply)
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=reply)
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    conversation = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    assert conversation.status == Status.CREATED
    assert Conversation.objects.get().response_body["friendly_name"] == "Order\\u0000 9"


def test_a_pending_record_no_job_owns_is_looked_up_before_anything_is_sent(support, respx_mock):
    orphan = Conversation.objects.create(
        provider="twilio",
        credential=twilio_credential(),
        created_by=support,
        status=Status.PENDING,
        request_body=BODY,
        created_at=timezone.now(),
    )
    Conversation.objects.filter(pk=orphan.pk).update(created_at=timezone.now() - timedelta(hours=1))
    create = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(409, json={"code": 50353})
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-9").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    services.settle_conversations()
    assert Conversation.objects.get(pk=orphan.pk).status == Status.CREATED and create.call_count == 0


def test_already_exists_after_an_earlier_attempt_is_looked_up_not_reported_as_a_failure(support, respx_mock):
    conversation = make_pending(support, lease_until=timezone.now() - timedelta(seconds=1), attempts=1)
    lookup = respx_mock.get(f"{TWILIO}/v1/Conversations/order-9")
    # The earlier attempt's conversation appears only after the re-run's first look-up (provider lag).
    lookup.side_effect = [
        httpx.Response(404, json={"code": 20404, "status": 404}),
        httpx.Response(200, json=twilio_conversation()),
    ]
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        409,
        json={
            "code": 50353,
            "message": "Conversation with provided unique name already exists",
            "status": 409,
        },
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    settled = services.run_create(conversation.pk)
    assert settled.status == Status.CREATED and settled.external_id == CH
    assert settled.lookup["result"] == "found"


def test_a_look_up_the_provider_could_not_answer_is_tried_again_later(support, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    lookup = respx_mock.get(f"{TWILIO}/v1/Conversations/order-9")
    lookup.side_effect = [
        httpx.Response(404, json={"code": 20404, "status": 404}),
        httpx.ConnectError("down"),
    ]
    first = services.do_create_conversation(BODY, credential=twilio_credential(), acting_user=support)
    Conversation.objects.filter(pk=first.pk).update(settle_after=timezone.now())
    services.settle_conversations()
    again = Conversation.objects.get(pk=first.pk)
    assert again.outcome_unknown and again.settle_after > timezone.now()  # not given up after one failure


def test_an_unexpected_error_after_sending_is_looked_up_again_later(support, respx_mock):
    sent = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        202, json=twilio_conversation()
    )
    conversation = make_pending(support)
    with mock.patch("providers.twilio.raise_for_response", side_effect=RuntimeError("a bug after sending")):
        settled = services.run_create(conversation.pk)
    assert sent.call_count == 1
    assert (
        settled.error_code == "internal_error"
        and settled.outcome_unknown
        and settled.settle_after is not None
    )


def test_after_a_retry_only_the_retry_is_looked_up(support, respx_mock):
    original = Conversation.objects.create(
        provider="twilio",
        credential=twilio_credential(),
        created_by=support,
        status=Status.FAILED,
        outcome_unknown=True,
        error_code="timeout",
        settle_after=timezone.now(),
        request_body=BODY,
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-9").respond(404, json={"code": 20404, "status": 404})
    create = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        202, json=twilio_conversation()
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    retry = services.do_retry_conversation(original, acting_user=support)
    assert retry.status == Status.CREATED and create.call_count == 1
    services.settle_conversations()
    original.refresh_from_db()
    assert original.status == Status.FAILED and original.settle_after is None
    # Looked up as not found before the retry was sent: known, not unknown, and never checked again.
    assert not original.outcome_unknown
    with pytest.raises(services.ActionRefused):
        services.do_check_with_provider(original, acting_user=support)


def test_a_retry_settles_the_first_attempt_as_not_created(support, respx_mock):
    original = Conversation.objects.create(
        provider="twilio",
        credential=twilio_credential(),
        created_by=support,
        status=Status.FAILED,
        outcome_unknown=True,
        error_code="timeout",
        request_body=BODY,
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-9").respond(404, json={"code": 20404, "status": 404})
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(202, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    services.do_retry_conversation(original, acting_user=support)
    original.refresh_from_db()
    assert (original.status, original.outcome_unknown, original.lookup["result"]) == (
        "failed",
        False,
        "not_found",
    )
    assert services.unsettled() == 0
