"""``bulk_create LABEL --file ROWS.csv [--dry-run] [--no-wait]``: one JSON line per row, a summary, exit 0/1/2."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from django.core.management import call_command

from convadmin.audit.models import AuditEvent, EventType
from convadmin.bulk.models import Batch, State
from convadmin.conversations.models import Conversation, Status
from convadmin.drafts.models import ConversationTemplate
from tests.create_support import TWILIO, twilio_conversation, twilio_credential, twilio_error
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = f"{TWILIO}/v1/ConversationWithParticipants"


def run(*args: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    try:
        call_command("bulk_create", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
def rows_file(tmp_path):
    def write(text: str, name: str = "rows.csv") -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def test_dry_run_judges_every_row_and_sends_nothing(rows_file, respx_mock):
    twilio_credential(label="tw")
    route = respx_mock.post(URL)
    code, lines = run(
        "tw", "--file", rows_file("FriendlyName,UniqueName\nOrder 1,o-1\nOrder 2,o-2\n"), "--dry-run"
    )
    assert code == 0
    assert lines[:2] == [
        {"row": 2, "id": None, "status": "ready", "external_id": None, "errors": {}},
        {"row": 3, "id": None, "status": "ready", "external_id": None, "errors": {}},
    ]
    assert lines[2]["summary"]["ready"] == 2
    assert not route.called
    assert not Conversation.objects.exists() and not Batch.objects.exists()


def test_exit_2_with_every_bad_row_named_and_nothing_sent(rows_file, respx_mock):
    twilio_credential(label="tw")
    route = respx_mock.post(URL)
    text = "FriendlyName,UniqueName,State\nOrder 1,o-1,\nOrder 2,o-1,\nOrder 3,o-3,closed\n"
    code, lines = run("tw", "--file", rows_file(text))
    assert code == 2
    assert lines[0]["status"] == "ready"
    assert lines[1]["status"] == "duplicate"
    assert "Row 2 creates the same conversation" in lines[1]["errors"]["UniqueName"][0]
    assert lines[2]["status"] == "invalid" and "State" in lines[2]["errors"]
    assert lines[3]["summary"] == {"rows": 3, "ready": 1, "invalid": 1, "duplicate": 1, "blank": 0}
    assert not route.called and not Conversation.objects.exists()


def test_exit_0_creates_every_row_linked_to_its_batch(rows_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(URL).respond(201, json=twilio_conversation())
    code, lines = run("tw", "--file", rows_file("FriendlyName\nOrder 1\n\nOrder 2\n"))
    assert code == 0
    records = list(Conversation.objects.order_by("pk"))
    assert [line["row"] for line in lines[:2]] == [2, 4]
    assert [line["id"] for line in lines[:2]] == [r.pk for r in records]
    assert {line["status"] for line in lines[:2]} == {"created"}
    batch = Batch.objects.get()
    assert batch.status == State.DONE and {r.batch_id for r in records} == {batch.pk}
    assert lines[2]["summary"]["created"] == 2 and lines[2]["summary"]["blank"] == 1
    finished = AuditEvent.objects.get(event_type=EventType.BATCH_FINISHED)
    assert finished.extra["file_name"] == "rows.csv" and finished.extra["created"] == 2


def test_exit_1_when_a_row_fails_at_the_provider(rows_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(201, json=twilio_conversation()),
            twilio_error(50353, "Conversation with provided unique name already exists", 409),
        ]
    )
    code, lines = run("tw", "--file", rows_file("FriendlyName,UniqueName\nA,a-1\nB,b-1\n"))
    assert code == 1
    assert lines[0]["status"] == "created"
    assert lines[1]["status"] == "failed" and "already exists" in lines[1]["errors"]["provider"][0]


def test_a_file_level_problem_is_exit_2(rows_file, tmp_path):
    twilio_credential(label="tw")
    code, lines = run("tw", "--file", rows_file("contactId\nabc\n"))
    assert code == 2
    assert "HighLevel file" in lines[0]["errors"]["file"][0]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("FriendlyName\nCaf\xe9\n".encode("latin-1"))
    code, lines = run("tw", "--file", str(latin))
    assert code == 2 and "not UTF-8" in lines[0]["errors"]["file"][0]
    code, lines = run("nope", "--file", str(latin))
    assert code == 2 and "label" in lines[0]["errors"]


def test_no_wait_queues_the_batch(rows_file, respx_mock, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    twilio_credential(label="tw")
    route = respx_mock.post(URL)
    code, lines = run("tw", "--file", rows_file("FriendlyName\nA\n"), "--no-wait")
    assert code == 0
    assert lines[0]["status"] == "queued" and lines[1]["batch"] == Batch.objects.get().pk
    assert Batch.objects.get().status == State.RUNNING
    assert not route.called and not Conversation.objects.filter(status=Status.CREATED).exists()


def test_template_by_name_or_id_fills_the_blank_cells(rows_file, respx_mock):
    twilio_credential(label="tw")
    owner = UserFactory(username="sam")
    template = ConversationTemplate.objects.create(
        name="Orders", provider="twilio", owner=owner, body={"State": "inactive", "FriendlyName": "Order"}
    )
    respx_mock.post(URL).respond(201, json=twilio_conversation())
    path = rows_file("FriendlyName,State\nOwn,\n,active\n")
    code, lines = run("tw", "--file", path, "--dry-run", "--user", "sam", "--template", "Orders")
    assert code == 0 and [line["status"] for line in lines[:2]] == ["ready", "ready"]
    code, lines = run("tw", "--file", path, "--user", "sam", "--template", str(template.pk))
    assert code == 0
    bodies = [r.request_body for r in Conversation.objects.order_by("pk")]
    assert [(b["FriendlyName"], b["State"]) for b in bodies] == [("Own", "inactive"), ("Order", "active")]
    assert Batch.objects.get().template == template
    uploaded = AuditEvent.objects.get(event_type=EventType.BATCH_UPLOADED)
    assert uploaded.extra["template"] == "Orders"


def test_a_template_the_user_may_not_use_or_of_another_provider_is_exit_2(rows_file, respx_mock):
    twilio_credential(label="tw")
    route = respx_mock.post(URL)
    other = UserFactory(username="other")
    ConversationTemplate.objects.create(name="Private", provider="twilio", owner=other, body={})
    ConversationTemplate.objects.create(name="Team", provider="mixin", owner=other, shared=True, body={})
    path = rows_file("FriendlyName\nA\n")
    code, lines = run("tw", "--file", path, "--template", "Private")
    assert code == 2
    assert lines == [
        {
            "summary": {"rows": 0},
            "batch": None,
            "errors": {
                "template": ["No template 'Private' that this user may use (their own or a shared one)."]
            },
        }
    ]
    code, lines = run("tw", "--file", path, "--template", "Team")
    assert code == 2 and "is a Mixin Messenger template" in lines[0]["errors"]["template"][0]
    assert not route.called and not Batch.objects.exists()
