from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import ManagementUtility, call_command
from django.http import StreamingHttpResponse
from django.urls import reverse

from convadmin.audit.models import AuditEvent, EventType
from convadmin.conversations.export import CONVERSATION_FIELDS, conversation_rows
from convadmin.conversations.models import Conversation, Status
from tests.factories import TWILIO_TOKEN, ConversationFactory, CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = reverse("conversation_export")
REQUIRED = [
    "id",
    "provider",
    "credential",
    "status",
    "external_id",
    "name",
    "participants",
    "created_by",
    "created_at",
    "completed_at",
    "error_code",
    "error_message",
]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def records():
    twilio = CredentialFactory(label="tw")
    hl = CredentialFactory(
        label="hl",
        provider="highlevel",
        settings={"location_id": "L" * 20},
        secrets={"token": "pit-secret-token-value"},
    )
    sam = UserFactory(username="sam")
    rows = [
        ConversationFactory(
            credential=twilio, created_by=sam, name="Alpha", participants=["alice", "+15558675310"]
        ),
        ConversationFactory(
            credential=twilio,
            created_by=sam,
            name='=HYPERLINK("x")',
            status=Status.FAILED,
            error_code="50407",
            error_message="Invalid address",
            external_id="",
        ),
        ConversationFactory(credential=hl, created_by=sam, name="Gamma", participants=["contact9"]),
    ]
    for i, row in enumerate(rows):
        Conversation.objects.filter(pk=row.pk).update(created_at=T0 + timedelta(days=i))
    return rows


def body_of(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


# --- web export ------------------------------------------------------------------------------------


def test_anonymous_and_outsider_cannot_export(client, outsider_client):
    assert client.get(URL).status_code == 302
    assert outsider_client.get(URL).status_code == 403


def test_csv_export_streams_one_row_per_record_with_a_header(auditor_client, records):
    response = auditor_client.get(URL, {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert set(REQUIRED) <= set(rows[0]) and len(rows) == 3
    assert [r["name"] for r in rows] == ["Gamma", '\'=HYPERLINK("x")', "Alpha"]  # newest first; no formula
    assert rows[2]["participants"] == "alice; +15558675310" and rows[2]["credential"] == "tw"
    assert rows[1]["error_code"] == "50407" and rows[1]["created_by"] == "sam"


def test_jsonl_export_is_one_object_a_line(support_client, records):
    response = support_client.get(URL, {"format": "jsonl"})
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body_of(response).splitlines()]
    assert len(lines) == 3 and list(lines[0]) == list(CONVERSATION_FIELDS)
    alpha = lines[2]
    assert alpha["participants"] == ["alice", "+15558675310"] and alpha["provider"] == "twilio"
    assert alpha["created_at"] == T0.isoformat()


def test_export_uses_the_list_filters(support_client, records):
    body = body_of(support_client.get(URL, {"format": "jsonl", "provider": "twilio", "status": "failed"}))
    assert [json.loads(line)["error_message"] for line in body.splitlines()] == ["Invalid address"]
    body = body_of(support_client.get(URL, {"format": "jsonl", "q": "CONTACT9"}))
    assert [json.loads(line)["name"] for line in body.splitlines()] == ["Gamma"]


def test_export_holds_no_secret(support_client, records):
    for fmt in ("csv", "jsonl"):
        body = body_of(support_client.get(URL, {"format": fmt}))
        assert TWILIO_TOKEN not in body and "pit-secret-token-value" not in body and "gAAAA" not in body


def test_export_is_audited_with_its_filters(auditor, auditor_client, records):
    body_of(auditor_client.get(URL, {"format": "csv", "provider": "twilio", "creator": "sam", "q": "al"}))
    event = AuditEvent.objects.get(event_type=EventType.CONVERSATIONS_EXPORTED)
    assert event.actor == auditor and event.ip == "127.0.0.1"
    assert event.extra == {
        "format": "csv",
        "filters": {"provider": "twilio", "creator": "sam", "q": "al"},
        "via": "web",
    }


def test_bad_format_or_filters_are_refused(support_client):
    assert support_client.get(URL, {"format": "xlsx"}).status_code == 400
    response = support_client.get(URL, {"format": "csv", "since": "yesterday"})
    assert response.status_code == 400 and "since" in response.content.decode()
    assert not AuditEvent.objects.filter(event_type=EventType.CONVERSATIONS_EXPORTED).exists()


def test_list_exports_with_its_filters(support_client, records):
    body = support_client.get(reverse("conversations"), {"provider": "twilio", "size": 25}).content.decode()
    start = reverse("export_start", args=["conversations"])
    assert f'action="{start}?provider=twilio"' in body
    assert 'name="format" value="csv"' in body and 'name="format" value="jsonl"' in body


def test_rows_come_in_keyset_batches_without_skipping_ties():
    credential, user = CredentialFactory(), UserFactory()
    rows = ConversationFactory.create_batch(9, credential=credential, created_by=user)
    Conversation.objects.filter(pk__in=[r.pk for r in rows[2:7]]).update(created_at=T0)  # a run of ties
    exported = [row["id"] for row in conversation_rows(Conversation.objects.all(), batch=2)]
    expected = list(Conversation.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert exported == expected


# --- command line ----------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("export_conversations", *args, stdout=out)
    return out.getvalue()


def test_cli_writes_jsonl_by_default(records):
    lines = [json.loads(line) for line in run().splitlines()]
    assert len(lines) == 3 and set(REQUIRED) <= set(lines[0]) and lines[0]["name"] == "Gamma"


def test_cli_writes_csv_with_a_header(records):
    rows = list(csv.reader(io.StringIO(run("--format", "csv"))))
    assert rows[0] == list(CONVERSATION_FIELDS) and len(rows) == 4


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--provider", "highlevel"), ["Gamma"]),
        (("--status", "failed"), ['=HYPERLINK("x")']),
        (("--since", "2026-03-02"), ["Gamma", '=HYPERLINK("x")']),
        (("--provider", "twilio", "--status", "created"), ["Alpha"]),
    ],
)
def test_cli_filters(records, args, names):
    assert [json.loads(line)["name"] for line in run(*args).splitlines()] == names


def test_cli_export_has_no_secret_and_is_audited_as_the_system_user(records):
    out = run("--format", "csv") + run()
    assert TWILIO_TOKEN not in out and "pit-secret-token-value" not in out
    events = AuditEvent.objects.filter(event_type=EventType.CONVERSATIONS_EXPORTED)
    assert events.count() == 2 and {e.actor_name for e in events} == {"system"}
    assert events.first().extra["via"] == "command line"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--provider", "myspace"], "invalid choice: 'myspace'"),
        (["--status", "done"], "invalid choice: 'done'"),
        (["--since", "01/02/2026"], "expected a date as YYYY-MM-DD"),
        (["--since", "2026-02-30"], "expected a date as YYYY-MM-DD"),
        (["--colour"], "unrecognized arguments"),
    ],
)
def test_cli_bad_arguments_exit_2_with_a_message(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "export_conversations", *args]).execute()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
    assert not AuditEvent.objects.exists()
