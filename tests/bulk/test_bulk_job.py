"""The batch senders: the credential's shared pace and concurrency, claiming rows, 429 + Retry-After, a killed
worker's rows never sent twice, pause/resume, retry of failed rows, and the automatic resume of stalled batches.

No test sleeps: ``limits.clock``/``limits.sleep`` are a fake clock that moves only when the code sleeps."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from convadmin.accounts.services import system_user
from convadmin.audit.models import AuditEvent, EventType
from convadmin.bulk import limits, services
from convadmin.bulk.models import Batch, BatchRow, RowStatus, State
from convadmin.bulk.rows import validate_file
from convadmin.conversations import services as conversation_services
from convadmin.conversations.models import Conversation, Status
from convadmin.jobs.clock import load_schedule
from tests.create_support import CH, TWILIO, twilio_conversation, twilio_credential, twilio_error
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = f"{TWILIO}/v1/ConversationWithParticipants"
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture(autouse=True)
def slept(monkeypatch):
    """The seconds each sleep asked for; the fake clock moves by exactly that much."""
    now, calls = [1_700_000_000.0], []

    def sleep(seconds: float) -> None:
        calls.append(round(seconds, 6))
        now[0] += seconds

    monkeypatch.setattr(limits, "clock", lambda: now[0])
    monkeypatch.setattr(limits, "sleep", sleep)
    return calls


def draft(text: str, credential=None, **credential_kwargs) -> Batch:
    credential = credential or twilio_credential(**credential_kwargs)
    report = validate_file("rows.csv", text.encode(), credential)
    return services.do_upload_batch(
        report, credential=credential, file_name="rows.csv", acting_user=UserFactory()
    )


def senders() -> list[list]:
    return [
        r.args_kwargs["args"] for r in DBTaskResult.objects.filter(task_path__endswith="bulk.tasks.run_batch")
    ]


def sent_before_the_kill(batch: Batch, row: BatchRow, **record) -> Conversation:
    """What a sender killed mid-call leaves: the row's record saved and sent (``record``: more of its fields),
    the outcome never noted; the provider has it (the look-up by ``UniqueName`` a-1 finds it)."""
    saved = conversation_services.do_create_conversation(
        row.body,
        credential=batch.credential,
        acting_user=batch.created_by,
        idempotency_key=row.key,
        batch=batch,
    )
    Conversation.objects.filter(pk=saved.pk).update(attempts=1, sent_at=timezone.now(), **record)
    return saved


@pytest.fixture
def lookup_finds_it(respx_mock):
    respx_mock.get(f"{TWILIO}/v1/Conversations/a-1").respond(200, json=twilio_conversation(unique_name="a-1"))
    respx_mock.get(url__regex=rf"{TWILIO}/v1/Conversations/{CH}/Participants.*").respond(
        200, json={"participants": [], "meta": {"next_page_url": None}}
    )


def test_defaults_come_from_the_provider_and_settings_override_per_credential(settings):
    credential = twilio_credential(label="busy")
    assert limits.limit_for(credential) == (10, 1.0, 4)
    settings.BULK_LIMITS = {"busy": (3, 2)}
    assert limits.limit_for(credential) == (3, 2.0, 4)
    settings.BULK_LIMITS = {"busy": (3, 2, 1)}
    assert limits.limit_for(credential) == (3, 2.0, 1)


def test_a_start_enqueues_one_sender_per_unit_of_concurrency(settings):
    settings.TASKS = DATABASE_TASKS
    settings.BULK_LIMITS = {"busy": (5, 1, 3)}
    batch = services.do_start_batch(draft("FriendlyName\nA\nB\n", label="busy"), acting_user=UserFactory())
    assert (batch.concurrency, batch.generation) == (3, 1)
    assert senders() == [[batch.pk, 1]] * 3


def test_two_batches_on_one_credential_share_its_pace(settings, respx_mock, slept):
    settings.BULK_LIMITS = {"shared": (2, 1)}  # a slot every 0.5 s
    respx_mock.post(URL).respond(201, json=twilio_conversation())
    credential = twilio_credential(label="shared")
    first, second = draft("FriendlyName\nA\nB\n", credential), draft("FriendlyName\nC\nD\n", credential)
    services.do_start_batch(first, acting_user=first.created_by, wait=True)
    assert slept == [0.5]
    services.do_start_batch(second, acting_user=second.created_by, wait=True)
    # The second batch's first row waits for the slot after the first batch's last one.
    assert slept == [0.5, 0.5, 0.5]
    other = draft("FriendlyName\nE\n", label="another credential")
    services.do_start_batch(other, acting_user=other.created_by, wait=True)
    assert slept == [0.5, 0.5, 0.5]  # another credential has its own pace
    assert set(BatchRow.objects.values_list("status", flat=True)) == {RowStatus.CREATED}
    # A 429 holds the whole credential: every batch's next slot comes after the provider's Retry-After.
    limits.hold(credential, 3)
    assert limits.reserve(credential, 0.5) == 3.0
    assert limits.reserve(other.credential, 0.5) == pytest.approx(0.1)  # its own slot, 0.1 s after its last


def test_senders_claim_rows_in_file_order_never_the_same_one_and_take_over_an_expired_claim(settings):
    settings.TASKS = DATABASE_TASKS
    batch = services.do_start_batch(draft("FriendlyName\nA\nB\nC\n"), acting_user=UserFactory())
    one = services._claim(batch, batch.generation, "one")
    two = services._claim(batch, batch.generation, "two")
    assert (one.number, two.number) == (2, 3)
    BatchRow.objects.filter(pk=one.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    three = services._claim(batch, batch.generation, "three")
    assert three.number == 2  # the first sender's claim ran out (its worker was killed): taken again
    assert services._claim(batch, batch.generation, "four").number == 4
    assert services._claim(batch, batch.generation, "five") is services._NOTHING
    assert services.in_flight(batch) == 3
    assert services._claim(batch, batch.generation - 1, "old run") is None  # an earlier run stops


def test_the_concurrency_holds_for_the_credential_across_its_batches(settings):
    settings.TASKS = DATABASE_TASKS
    settings.BULK_LIMITS = {"one at a time": (5, 1, 1)}
    credential = twilio_credential(label="one at a time")
    first = services.do_start_batch(draft("FriendlyName\nA\nB\n", credential), acting_user=UserFactory())
    second = services.do_start_batch(draft("FriendlyName\nC\n", credential), acting_user=UserFactory())
    held = services._claim(first, first.generation, "first")
    assert held.number == 2
    # The credential has its one row in flight: neither batch may claim another, whichever sender asks.
    assert services._claim(second, second.generation, "second") is services._NOTHING
    assert services._claim(first, first.generation, "first, again") is services._NOTHING
    other = draft("FriendlyName\nD\n", label="another credential")
    other = services.do_start_batch(other, acting_user=UserFactory())
    assert services._claim(other, other.generation, "other").number == 2  # another credential: its own count
    BatchRow.objects.filter(pk=held.pk).update(status=RowStatus.CREATED)  # settled
    assert services._claim(second, second.generation, "second").number == 2


def test_a_429_holds_the_credential_for_retry_after_and_sends_the_row_again(respx_mock, slept):
    batch = draft("FriendlyName\nA\n")
    too_many = twilio_error(20429, "Too many concurrent requests", 429)
    too_many.headers["Retry-After"] = "3"
    route = respx_mock.post(URL).mock(side_effect=[too_many, httpx.Response(201, json=twilio_conversation())])
    services.do_start_batch(batch, acting_user=batch.created_by, wait=True)
    row = BatchRow.objects.get()
    assert route.call_count == 2 and slept == [3.0]
    assert row.status == RowStatus.CREATED and row.conversation.retry_of is not None
    assert row.conversation.batch == batch and row.throttled == 1


def test_a_row_throttled_too_often_fails_with_the_providers_message(respx_mock, slept):
    batch = draft("FriendlyName\nA\n")
    respx_mock.post(URL).respond(429, json={"code": 20429, "message": "Too many", "status": 429})
    services.do_start_batch(batch, acting_user=batch.created_by, wait=True)
    row = BatchRow.objects.get()
    assert row.status == RowStatus.FAILED and row.throttled == services.MAX_429_RETRIES
    assert slept == [
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        2.0,
    ]  # doubling back-off without Retry-After (32 s in two pieces)
    assert Conversation.objects.filter(batch=batch).count() == services.MAX_429_RETRIES + 1
    assert Batch.objects.get().status == State.DONE


def test_a_killed_worker_resumes_without_creating_anything_twice(respx_mock, settings, lookup_finds_it):
    settings.TASKS = DATABASE_TASKS
    batch = draft("FriendlyName,UniqueName\nA,a-1\nB,b-1\n")
    services.do_start_batch(batch, acting_user=batch.created_by)
    first = BatchRow.objects.get(number=2)
    # The killed sender had claimed row 2 (its claim has run out since), saved its record and sent it.
    record = sent_before_the_kill(batch, first)
    BatchRow.objects.filter(pk=first.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1), claimed_by="job killed"
    )
    post = respx_mock.post(URL).respond(201, json=twilio_conversation(sid="CH" + "1" * 32))
    services.run_batch(batch.pk)
    assert post.call_count == 1  # only row 3 was sent
    assert Conversation.objects.count() == 2
    record.refresh_from_db()
    assert record.status == Status.CREATED and record.external_id == CH
    assert set(BatchRow.objects.values_list("status", flat=True)) == {RowStatus.CREATED}
    assert Batch.objects.get().status == State.DONE


def test_a_row_whose_record_another_job_still_holds_is_settled_before_the_batch_is_done(
    respx_mock, settings, monkeypatch, slept, lookup_finds_it
):
    """The worker was killed mid-call moments ago: its record's lease still runs. The batch must not end with
    the row pending (it did, before the senders): the row waits for the lease, then is settled by look-up."""
    settings.TASKS = DATABASE_TASKS
    batch = services.do_start_batch(draft("FriendlyName,UniqueName\nA,a-1\n"), acting_user=UserFactory())
    row = BatchRow.objects.get()
    record = sent_before_the_kill(batch, row, lease_until=timezone.now() + timedelta(minutes=2))
    post = respx_mock.post(URL).respond(201, json=twilio_conversation())

    def the_lease_runs_out(seconds: float) -> None:
        slept.append(seconds)
        assert BatchRow.objects.get().status == RowStatus.PENDING
        assert Batch.objects.get().status == State.RUNNING  # not done while its row is unsettled
        past = timezone.now() - timedelta(seconds=1)
        Conversation.objects.update(lease_until=past)
        BatchRow.objects.update(claimed_until=past)

    monkeypatch.setattr(limits, "sleep", the_lease_runs_out)
    assert services.run_batch(batch.pk).status == State.DONE
    row.refresh_from_db()
    assert row.status == RowStatus.CREATED and row.conversation_id == record.pk
    assert not post.called and Conversation.objects.get().lookup["result"] == "found"


def test_a_sender_killed_between_429s_continues_the_rows_retries(respx_mock, settings):
    settings.TASKS = DATABASE_TASKS
    batch = services.do_start_batch(draft("FriendlyName\nA\n"), acting_user=UserFactory())
    row = BatchRow.objects.get()
    too_many = twilio_error(20429, "Too many", 429)
    respx_mock.post(URL).mock(
        side_effect=[too_many, too_many, httpx.Response(201, json=twilio_conversation())]
    )
    first = conversation_services.do_create_conversation(
        row.body,
        credential=batch.credential,
        acting_user=batch.created_by,
        idempotency_key=row.key,
        wait=True,
    )
    second = conversation_services.do_retry_conversation(first, acting_user=batch.created_by)
    assert second.status == Status.FAILED and second.retry_of == first
    # The sender was killed before it noted either attempt on the row: the next one follows the chain.
    services.run_batch(batch.pk)
    row.refresh_from_db()
    assert row.status == RowStatus.CREATED and row.conversation.retry_of == second
    assert Conversation.objects.count() == 3


def test_a_paused_batch_sends_nothing_more_and_a_resume_stops_the_earlier_senders(respx_mock, settings):
    settings.TASKS = DATABASE_TASKS
    batch = draft("FriendlyName\nA\nB\n")
    services.do_start_batch(batch, acting_user=batch.created_by)
    services.do_pause_batch(batch, acting_user=batch.created_by)
    route = respx_mock.post(URL).respond(201, json=twilio_conversation())
    services.run_batch(batch.pk, 1)
    assert not route.called and Batch.objects.get().status == State.PAUSED
    batch = services.do_resume_batch(batch, acting_user=batch.created_by)
    assert batch.generation == 2 and senders()[-1] == [batch.pk, 2]
    services.run_batch(batch.pk, 1)  # a sender of the first run, still queued: it stops at once
    assert not route.called
    services.run_batch(batch.pk, 2)
    assert route.call_count == 2 and Batch.objects.get().status == State.DONE


def test_a_pause_during_a_long_wait_releases_the_claimed_row(respx_mock, monkeypatch, slept):
    batch = draft("FriendlyName\nA\n")
    limits.hold(batch.credential, 100)  # a 429 of another batch: the credential waits 100 s
    route = respx_mock.post(URL).respond(201, json=twilio_conversation())

    def pause_after_first_piece(seconds: float) -> None:
        slept.append(seconds)
        Batch.objects.filter(pk=batch.pk).update(status=State.PAUSED)

    monkeypatch.setattr(limits, "sleep", pause_after_first_piece)
    services.do_start_batch(batch, acting_user=batch.created_by, wait=True)
    row = BatchRow.objects.get()
    assert slept == [services.BEAT_SECONDS] and not route.called
    assert row.status == RowStatus.READY and row.claimed_until is None


def test_a_sender_waits_for_another_senders_row_then_finishes_the_batch(respx_mock, monkeypatch, slept):
    batch = draft("FriendlyName\nA\nB\n")
    respx_mock.post(URL).respond(201, json=twilio_conversation())
    services.do_start_batch(batch, acting_user=batch.created_by)  # the in-process backend sends both rows
    Batch.objects.filter(pk=batch.pk).update(status=State.RUNNING, finished_at=None)
    other = BatchRow.objects.get(number=3)
    BatchRow.objects.filter(pk=other.pk).update(
        status=RowStatus.READY, claimed_until=timezone.now() + timedelta(minutes=1), claimed_by="job other"
    )

    def other_sender_finishes(seconds: float) -> None:
        slept.append(seconds)
        BatchRow.objects.filter(pk=other.pk).update(status=RowStatus.CREATED, claimed_until=None)

    monkeypatch.setattr(limits, "sleep", other_sender_finishes)
    slept.clear()
    assert services.run_batch(batch.pk).status == State.DONE
    assert slept == [services.POLL_SECONDS]


def test_retry_failed_rows_sends_them_again_as_retries(respx_mock):
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
    settings.TASKS = DATABASE_TASKS
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


def test_stalled_batches_are_resumed_automatically_and_audited_as_the_systems(settings):
    settings.TASKS = DATABASE_TASKS
    assert "convadmin.bulk.tasks.resume_stalled_batches" in load_schedule()
    stalled = services.do_start_batch(draft("FriendlyName\nA\n"), acting_user=UserFactory())
    lively = services.do_start_batch(draft("FriendlyName\nB\n"), acting_user=UserFactory())
    paused = services.do_start_batch(draft("FriendlyName\nC\n"), acting_user=UserFactory())
    services.do_pause_batch(paused, acting_user=paused.created_by)
    long_ago = timezone.now() - services.STALE_AFTER - timedelta(seconds=1)
    Batch.objects.filter(pk__in=[stalled.pk, paused.pk]).update(heartbeat=long_ago)
    DBTaskResult.objects.all().delete()

    assert services.resume_stalled_batches() == [stalled.pk]
    stalled.refresh_from_db()
    assert stalled.generation == 2 and stalled.heartbeat > long_ago
    assert senders() == [[stalled.pk, 2]] * stalled.concurrency
    event = AuditEvent.objects.filter(event_type=EventType.BATCH_RESUMED).get()
    assert event.extra["automatic"] is True and event.actor == system_user()
    assert services.resume_stalled_batches() == []  # resumed once, not again every minute
    assert Batch.objects.get(pk=lively.pk).generation == 1
    assert Batch.objects.get(pk=paused.pk).status == State.PAUSED


def test_the_progress_shows_concurrency_rows_in_flight_and_the_rate(settings, support_client):
    settings.TASKS = DATABASE_TASKS
    batch = services.do_start_batch(draft("FriendlyName\nA\nB\nC\n"), acting_user=UserFactory())
    services._claim(batch, batch.generation, "one")
    BatchRow.objects.filter(number=4).update(status=RowStatus.CREATED, settled_at=timezone.now())
    page = support_client.get(f"/bulk/{batch.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "Created: <strong>1</strong>" in page and "Pending: <strong>2</strong>" in page
    assert f"In flight: 1 of {batch.concurrency}" in page and "rows a minute (last minute)" in page
