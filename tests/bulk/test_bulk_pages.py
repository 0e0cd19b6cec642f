"""The Bulk create pages: templates, upload → per-row report → send → progress → results and exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook, load_workbook

from convadmin.audit.models import AuditEvent, EventType
from convadmin.bulk.models import Batch, RowStatus, State
from convadmin.conversations.models import Conversation
from tests.create_support import TWILIO, twilio_conversation, twilio_credential

pytestmark = pytest.mark.django_db
URL = f"{TWILIO}/v1/ConversationWithParticipants"


def upload(client, credential, text: str | bytes, name: str = "rows.csv"):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/bulk/", {"credential": credential.pk, "file": SimpleUploadedFile(name, data)}, follow=True
    )


def report_lines(client, batch) -> list[dict]:
    response = client.get(f"/bulk/{batch.pk}/report.csv")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_support_and_administrators_see_bulk_create_others_do_not(
    support_client, admin_client, auditor_client, client
):
    assert "Bulk create" in support_client.get("/conversations/").content.decode()
    assert admin_client.get("/bulk/").status_code == 200
    assert auditor_client.get("/bulk/").status_code == 403
    assert "Bulk create" not in auditor_client.get("/conversations/").content.decode()
    assert client.get("/bulk/").status_code == 302


def test_templates_have_the_providers_columns(support_client):
    response = support_client.get("/bulk/template/twilio.csv")
    header = next(csv.reader(io.StringIO(response.content.decode())))
    assert header[:2] == ["FriendlyName", "UniqueName"] and "participant1.identity" in header
    book = load_workbook(io.BytesIO(support_client.get("/bulk/template/msgraph.xlsx").content))
    first = [cell.value for cell in next(book.active.iter_rows())]
    assert first[:2] == ["groupId", "topic"] and "participant1.emailAddress.address" in first
    assert support_client.get("/bulk/template/nope.csv").status_code == 404


def test_the_report_names_row_field_message_and_value_before_anything_is_sent(support_client, respx_mock):
    credential = twilio_credential()
    route = respx_mock.post(URL)
    text = "FriendlyName,UniqueName,State\nOrder 1,o-1,\nOrder 2,o-2,closed\nOrder 3,o-1,\n"
    page = upload(support_client, credential, text).content.decode()
    assert "1 ready, 2 with errors" in page
    assert "closed" in page and "State" in page
    assert "Row 2 creates the same conversation" in page
    assert "Send the 1 valid row" in page
    assert not route.called and not Conversation.objects.exists()
    batch = Batch.objects.get()
    assert batch.status == State.DRAFT
    lines = report_lines(support_client, batch)
    bad = next(line for line in lines if line["row"] == "3")
    assert bad["field"] == "State" and bad["value"] == "closed" and bad["status"] == "invalid"
    uploaded = AuditEvent.objects.get(event_type=EventType.BATCH_UPLOADED)
    assert uploaded.extra["file_name"] == "rows.csv" and uploaded.extra["rows"] == 3


def test_a_formula_cell_is_refused_and_never_exported_as_a_formula(support_client):
    credential = twilio_credential()
    upload(support_client, credential, 'FriendlyName\n"=HYPERLINK(""http://x"")"\n')
    batch = Batch.objects.get()
    (line,) = report_lines(support_client, batch)
    assert "formula" in line["message"]
    assert line["value"].startswith("'=")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "The file is empty"),
        ("FriendlyName\n\n\n", "no rows to create"),
        ("FriendlyName,Colour\nA,red\n", "Unknown columns for Twilio Conversations: Colour"),
        ("category,name\nGROUP,A\n", "This is a Mixin Messenger file, but you chose Twilio Conversations"),
        ("FriendlyName\nCaf\xe9\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_a_bad_file_is_refused_with_a_clear_message_and_nothing_saved(support_client, text, message):
    credential = twilio_credential()
    page = upload(support_client, credential, text).content.decode()
    assert message in page.replace("&#x27;", "'")
    assert not Batch.objects.exists()


def test_row_limit(support_client, monkeypatch):
    monkeypatch.setattr("convadmin.bulk.rows.MAX_ROWS", 2)
    page = upload(support_client, twilio_credential(), "FriendlyName\nA\nB\nC\n").content.decode()
    assert "more than 2 rows" in page


def test_send_the_valid_rows_then_results_filter_and_list_by_batch(support_client, respx_mock):
    credential = twilio_credential()
    respx_mock.post(URL).respond(201, json=twilio_conversation())
    upload(support_client, credential, "FriendlyName,State\nOrder 1,\nOrder 2,closed\nOrder 3,\n")
    batch = Batch.objects.get()
    page = support_client.post(f"/bulk/{batch.pk}/start/", follow=True).content.decode()
    batch.refresh_from_db()
    assert batch.status == State.DONE
    assert 'value="2"' in page and "Created: <strong>2</strong>" in page
    records = Conversation.objects.filter(batch=batch)
    assert records.count() == 2
    created = support_client.get(f"/bulk/{batch.pk}/?status=created").content.decode()
    assert f"/conversations/{records[0].pk}/" in created and "closed" not in created
    listed = support_client.get(f"/conversations/?batch={batch.pk}").content.decode()
    assert all(f"/conversations/{r.pk}/" in listed for r in records)
    other = Conversation.objects.create(
        provider="twilio", credential=credential, created_by=batch.created_by, name="Alone"
    )
    assert f"/conversations/{other.pk}/" not in listed
    lines = report_lines(support_client, batch)
    assert [line["status"] for line in lines] == ["created", "invalid", "created"]
    assert lines[0]["record"] == str(lines[0]["record"]) and lines[0]["external_id"]
    assert AuditEvent.objects.filter(event_type=EventType.BATCH_FINISHED).exists()


def test_an_xlsx_file_is_read_and_its_formulas_are_not_run(support_client):
    book = Workbook()
    book.active.append(["FriendlyName", "UniqueName"])
    book.active.append(["Order 1", "o-1"])
    book.active.append(["=1+1", "o-2"])
    data = io.BytesIO()
    book.save(data)
    page = upload(support_client, twilio_credential(), data.getvalue(), "rows.xlsx").content.decode()
    assert "1 ready, 1 with errors" in page and "formula" in page


def test_pause_resume_and_cancel(support_client, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    upload(support_client, twilio_credential(), "FriendlyName\nA\nB\n")
    batch = Batch.objects.get()
    support_client.post(f"/bulk/{batch.pk}/start/")
    batch.refresh_from_db()
    assert batch.status == State.RUNNING
    page = support_client.get(f"/bulk/{batch.pk}/").content.decode()
    assert "<progress" in page and 'hx-trigger="every 1s"' in page
    support_client.post(f"/bulk/{batch.pk}/pause/")
    batch.refresh_from_db()
    assert batch.status == State.PAUSED
    support_client.post(f"/bulk/{batch.pk}/resume/")
    batch.refresh_from_db()
    assert batch.status == State.RUNNING
    support_client.post(f"/bulk/{batch.pk}/cancel/")
    batch.refresh_from_db()
    assert batch.status == State.CANCELLED
    page = support_client.post(f"/bulk/{batch.pk}/resume/", follow=True).content.decode()
    assert "Only a paused batch" in page
    types = list(AuditEvent.objects.values_list("event_type", flat=True))
    assert {EventType.BATCH_PAUSED, EventType.BATCH_RESUMED, EventType.BATCH_CANCELLED} <= set(types)
    assert batch.rows.filter(status=RowStatus.READY).count() == 2
