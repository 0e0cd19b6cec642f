"""The batch job: pace, 429 + Retry-After, a killed worker's rows never sent twice, retry of failed rows."""

from __future__ import annotations

import httpx
import pytest
from django.utils import timezone

from convadmin.bulk import limits, services
from convadmin.bulk.models import Batch, BatchRow, RowStatus, State
from convadmin.bulk.rows import validate_file
from convadmin.conversations import services as conversation_services
from convadmin.conversations.models import Conversation, Status
from tests.create_support import CH, TWILIO, twilio_conversation, twilio_credential, twilio_error
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = f"{TWILIO}/v1/ConversationWithParticipants"


@pytest.fixture
def slept(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(limits, "sleep", calls.append)
    return calls


def draft(text: str, **credential_kwargs) -> Batch:
    credential = twilio_credential(**credential_kwargs)
    report = validate_file("rows.csv", text.encode(), credential)
    return services.do_upload_batch(
        report, credential=credential, file_name="rows.csv", acting_user=UserFactory()
    )


def test_the_pacer_waits_when_the_window_is_full(monkeypatch, slept):
    now = [100.0]
    monkeypatch.setattr(limits, "clock", lambda: now[0])
    pacer = limits.Pacer(2, 10.0)
    pacer.wait()
    now[0] = 101.0
    pacer.wait()
    assert slept == []
    now[0] = 103.0
    pacer.wait()
    assert slept == [7.0]  # the first of the two in the window leaves it at 110


def test_defaults_come_from_the_provider_and_settings_override_per_credential(settings):
    credential = twilio_credential(label="busy")
    assert limits.limit_for(credential) == (10, 1.0)
    settings.BULK_LIMITS = {"busy": (3, 2)}
    assert limits.limit_for(credential) == (3, 2.0)


def test_a_429_waits_retry_after_and_sends_the_row_again(respx_mock, slept):
    batch = draft("FriendlyName\nA\n")
    too_many = twilio_error(20429, "Too many concurrent requests", 429)
    too_many.headers["Retry-After"] = "3"
    route = respx_mock.post(URL).mock(side_effect=[too_many, httpx.Response(201, json=twilio_conversation())])
    services.do_start_batch(batch, acting_user=batch.created_by, wait=True)
    row = BatchRow.objects.get()
    assert route.call_count == 2 and 3.0 in slept
    assert row.status == RowStatus.CREATED and row.conversation.retry_of is not None
    assert row.conversation.batch == batch


def test_a_killed_worker_resumes_without_creating_anything_twice(respx_mock, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    batch = draft("FriendlyName,UniqueName\nA,a-1\nB,b-1\n")
    services.do_start_batch(batch, acting_user=batch.created_by)
    first = BatchRow.objects.get(number=2)
    # The killed worker had saved row 2's record and sent it; it died before noting the outcome.
    record = conversation_services.do_create_conversation(
        first.body,
        credential=batch.credential,
        acting_user=batch.created_by,
        idempotency_key=first.key,
        batch=batch,
    )
    Conversation.objects.filter(pk=record.pk).update(attempts=1, sent_at=timezone.now())
    post = respx_mock.post(URL).respond(201, json=twilio_conversation(sid="CH" + "1" * 32))
    respx_mock.get(f"{TWILIO}/v1/Conversations/a-1").respond(200, json=twilio_conversation(unique_name="a-1"))
    respx_mock.get(url__regex=rf"{TWILIO}/v1/Conversations/{CH}/Participants.*").respond(
        200, json={"participants": [], "meta": {"next_page_url": None}}
    )
    services.run_batch(batch.pk)
    assert post.call_count == 1  # only row 3 was sent
    assert Conversation.objects.count() == 2
    record.refresh_from_db()
    assert record.status == Status.CREATED and record.external_id == CH
    assert set(BatchRow.objects.values_list("status", flat=True)) == {RowStatus.CREATED}
    assert Batch.objects.get().status == State.DONE


def test_a_paused_batch_sends_nothing_more(respx_mock, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    batch = draft("FriendlyName\nA\nB\n")
    services.do_start_batch(batch, acting_user=batch.created_by)
    services.do_pause_batch(batch, acting_user=batch.created_by)
    route = respx_mock.post(URL)
    services.run_batch(batch.pk)
    assert not route.called and Batch.objects.get().status == State.PAUSED


def test_retry_failed_rows_sends_them_again_as_retries(respx_mock, slept):
    batch = draft("FriendlyName,UniqueName\nA,a-1\n")
    route = respx_mock.post(URL).mock(
        side_effect=[
            twilio_error(50373, "No Messaging Service", 400),
            httpx.Response(201, json=twilio_conversation()),
        ]
    )
    batch = services.do_start_batch(batch, acting_user=batch.created_by, wait=True)
    assert BatchRow.objects.get().status == RowStatus.FAILED
    services.do_retry_failed(batch, acting_user=batch.created_by)
    row = BatchRow.objects.get()
    assert route.call_count == 2
    assert row.status == RowStatus.CREATED and row.conversation.retry_of is not None
    assert row.conversation.batch_id == batch.pk
    assert Batch.objects.get().status == State.DONE


def test_a_row_already_created_is_flagged_as_a_duplicate():
    credential = twilio_credential()
    Conversation.objects.create(
        provider="twilio",
        credential=credential,
        created_by=UserFactory(),
        status=Status.CREATED,
        request_body={"UniqueName": "a-1"},
    )
    report = validate_file("rows.csv", b"FriendlyName,UniqueName\nA,a-1\nB,b-1\n", credential)
    assert [row.status for row in report.rows] == ["duplicate", "ready"]
    assert "already has this" in report.rows[0].errors[0]["message"]


def test_a_running_batch_whose_worker_stopped_can_be_resumed(settings, support_client):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    batch = draft("FriendlyName\nA\n")
    services.do_start_batch(batch, acting_user=batch.created_by)
    with pytest.raises(services.BatchRefused):
        services.do_resume_batch(batch, acting_user=batch.created_by)
    Batch.objects.filter(pk=batch.pk).update(heartbeat=timezone.now() - services.STALE_AFTER * 2)
    page = support_client.get(f"/bulk/{batch.pk}/").content.decode()
    assert "its worker was lost" in page and "Resume" in page
    batch.refresh_from_db()
    services.do_resume_batch(batch, acting_user=batch.created_by)
    assert Batch.objects.get().heartbeat > timezone.now() - services.STALE_AFTER
