"""Bulk create: a saved template as the defaults of a file's blank cells, and participants as one JSON column."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook, load_workbook

from convadmin.audit.models import AuditEvent, EventType
from convadmin.bulk import rows
from convadmin.bulk.models import Batch
from convadmin.drafts.models import ConversationTemplate
from tests.create_support import MIXIN_OTHER, MIXIN_USER, mixin_credential, twilio_credential
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
ORDERS = {
    "FriendlyName": "Order",
    "UniqueName": "order-template",
    "State": "inactive",
    "Participant": [{"identity": "alice"}, {"identity": "bob"}],
}


def saved(owner, provider="twilio", name="Orders", body=None, shared=False) -> ConversationTemplate:
    return ConversationTemplate.objects.create(
        name=name, provider=provider, owner=owner, shared=shared, body=ORDERS if body is None else body
    )


def judge(text: str, credential, defaults=None, name="rows.csv") -> list[rows.Row]:
    return rows.validate_file(name, text.encode(), credential, defaults).rows


def orders_defaults() -> rows.Defaults:
    return rows.defaults_from("twilio", "Orders", ORDERS)


# --- a template's values fill the blanks -------------------------------------------------------------


def test_a_template_fills_blank_cells_and_a_value_in_the_file_wins():
    text = "FriendlyName,State,participant1.identity\nOwn name,,\n,active,carol\n"
    first, second = judge(text, twilio_credential(), orders_defaults())
    assert first.body == {
        "FriendlyName": "Own name",
        "State": "inactive",
        "Participant": [{"identity": "alice"}, {"identity": "bob"}],
    }
    assert second.body == {"FriendlyName": "Order", "State": "active", "Participant": [{"identity": "carol"}]}
    assert first.status == second.status == "ready"
    assert first.values == {"FriendlyName": "Own name", "State": "", "participant1.identity": ""}  # as read


def test_a_missing_column_is_filled_too_and_the_unique_name_never_is():
    (row,) = judge("Attributes\n{}\n", twilio_credential(), orders_defaults())
    assert row.body["FriendlyName"] == "Order" and "UniqueName" not in row.body
    assert orders_defaults().fields == {"FriendlyName": "Order", "State": "inactive"}


def test_the_report_shows_the_templates_value_and_says_where_it_came_from():
    defaults = rows.defaults_from("twilio", "Bad", {"State": "closed", "Participant": [{"identity": " "}]})
    defaults.participants = [{"identity": "", "messaging_binding.address": "nope"}]
    (row,) = judge("FriendlyName\nOrder 1\n", twilio_credential(), defaults)
    errors = {error["column"]: error for error in row.errors}
    assert errors["State"]["label"] == "State (from the template)"
    assert errors["State"]["value"] == "closed"
    address = errors["participant1.messaging_binding.address"]
    assert address["label"] == "Participant 1, Address (from the template)" and address["value"] == "nope"


def test_another_providers_template_is_refused():
    template = saved(UserFactory(), provider="mixin", body={"category": "GROUP"})
    with pytest.raises(
        rows.FileRefused, match="“Orders” is a Mixin Messenger template, but the credential is "
    ):
        rows.template_defaults(template, "twilio")


# --- participants as one JSON column -----------------------------------------------------------------


def json_cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return '"' + text.replace('"', '""') + '"'


def test_a_json_column_gives_the_participants_by_field_name_or_in_the_bodys_shape():
    people = [
        {"identity": "alice", "attributes": {"tier": "gold"}},
        {"messaging_binding": {"address": "+15551234567", "proxy_address": "+15557654321"}},
    ]
    (row,) = judge(f"FriendlyName,participants\nOrder 1,{json_cell(people)}\n", twilio_credential())
    assert row.status == "ready"
    assert row.body["Participant"] == [
        {"identity": "alice", "attributes": '{"tier": "gold"}'},
        {"messaging_binding": {"address": "+15551234567", "proxy_address": "+15557654321"}},
    ]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ('[{"user_id": ', "Not valid JSON (Expecting value at character 14)"),
        ({"user_id": MIXIN_USER}, "Not a JSON array"),
        (["abc"], "Participant 1 is not a JSON object"),
        (
            [{"user_id": MIXIN_USER, "colour": "red"}],
            "Participant 1 has unknown keys: colour. The keys are user_id, role.",
        ),
        ([{"user_id": MIXIN_USER}] * 257, "257 participants: Mixin Messenger takes at most 256."),
    ],
)
def test_each_json_column_problem_is_an_error_at_that_column_with_the_value(cell, message):
    text = cell if isinstance(cell, str) else json.dumps(cell)
    (row,) = judge(f"category,participants\nGROUP,{json_cell(text)}\n", mixin_credential())
    assert row.status == "invalid"
    (error,) = row.errors
    assert error["column"] == "participants" and error["label"] == "Participants (JSON)"
    assert message in error["message"] and error["value"] == text


def test_the_providers_rules_judge_each_json_participant_at_the_json_column():
    people = [{"user_id": MIXIN_USER}, {"user_id": "not-a-uuid", "role": "ADMIN"}]
    (row,) = judge(f"category,name,participants\nGROUP,Team,{json_cell(people)}\n", mixin_credential())
    (error,) = row.errors
    assert error["column"] == "participants"
    assert error["label"] == "Participants (JSON): Participant 2, User id"
    assert error["value"] == "not-a-uuid" and "UUID" in error["message"]


def test_a_blank_json_cell_takes_the_templates_participants_and_an_empty_array_means_none():
    defaults = rows.defaults_from(
        "mixin", "Team", {"category": "GROUP", "participants": [{"user_id": MIXIN_OTHER}]}
    )
    blank, empty = judge(f"name,participants\nA,\nB,{json_cell([])}\n", mixin_credential(), defaults)
    assert blank.status == "ready" and blank.body["participants"] == [{"user_id": MIXIN_OTHER}]
    (error,) = empty.errors
    assert error["column"] == "participants" and error["value"] == "[]"
    assert empty.body["category"] == "GROUP" and empty.body["participants"] == []


def test_a_json_cell_starting_with_a_formula_is_refused():
    (row,) = judge('category,participants\nGROUP,"=HYPERLINK(""x"")"\n', mixin_credential())
    assert row.errors[0]["message"] == rows.FORMULA


def test_a_file_with_both_kinds_of_participant_columns_is_refused():
    text = f"category,participant1.user_id,participants\nGROUP,{MIXIN_USER},[]\n"
    with pytest.raises(rows.FileRefused, match="participants twice: a “participants” JSON column and "):
        judge(text, mixin_credential())


def test_an_xlsx_json_column_is_read_too():
    book = Workbook()
    book.active.append(["category", "name", "participants"])
    book.active.append(["GROUP", "Team", json.dumps([{"user_id": MIXIN_USER}])])
    data = io.BytesIO()
    book.save(data)
    (row,) = rows.validate_file("rows.xlsx", data.getvalue(), mixin_credential()).rows
    assert row.status == "ready" and row.body["participants"] == [{"user_id": MIXIN_USER}]


# --- template files ----------------------------------------------------------------------------------


def test_a_template_file_may_have_the_json_column_and_a_prefilled_first_row():
    defaults = rows.defaults_from("twilio", "Orders", {**ORDERS, "Attributes": "=1+1"})
    header, example = rows.template_table("twilio", as_json=True, defaults=defaults)
    assert header[-1] == "participants" and not any(name.startswith("participant1.") for name in header)
    filled = dict(zip(header, example, strict=True))
    assert filled["FriendlyName"] == "Order" and filled["UniqueName"] == ""
    assert filled["Attributes"] == ""  # a spreadsheet would run it
    assert json.loads(filled["participants"]) == [{"identity": "alice"}, {"identity": "bob"}]
    header, example = rows.template_table("twilio", defaults=defaults)
    assert dict(zip(header, example, strict=True))["participant2.identity"] == "bob"


# --- the page --------------------------------------------------------------------------------------------


def upload(client, credential, text: str, template=None):
    data = {"credential": credential.pk, "file": SimpleUploadedFile("rows.csv", text.encode())}
    if template is not None:
        data["template"] = template.pk
    return client.post("/bulk/", data, follow=True)


def test_upload_with_a_template_reports_and_records_it(support_client, support):
    template = saved(support, body={**ORDERS, "State": "closed"})
    page = upload(support_client, twilio_credential(), "FriendlyName\nOrder 1\n", template).content.decode()
    assert "0 ready, 1 with errors" in page
    assert "State (from the template)" in page and "<code>closed</code>" in page
    assert "blank cells from template “Orders”" in page
    batch = Batch.objects.get()
    assert batch.template == template and batch.template_name == "Orders"
    assert AuditEvent.objects.get(event_type=EventType.BATCH_UPLOADED).extra["template"] == "Orders"
    template.delete()
    batch.refresh_from_db()
    assert batch.template is None and batch.template_name == "Orders"


def test_a_shared_template_of_another_user_may_be_used(support_client, admin):
    template = saved(admin, shared=True)
    upload(support_client, twilio_credential(), "FriendlyName\nOrder 1\n", template)
    row = Batch.objects.get().rows.get()
    assert row.body["State"] == "inactive" and row.status == "ready"


def test_another_providers_template_is_refused_at_the_field(support_client, support):
    template = saved(support, provider="mixin", body={"category": "GROUP"})
    page = upload(support_client, twilio_credential(), "FriendlyName\nA\n", template).content.decode()
    assert "“Orders” is a Mixin Messenger template, but the credential is Twilio Conversations" in page
    assert not Batch.objects.exists()


def test_another_users_private_template_is_refused_at_the_field(support_client, admin):
    template = saved(admin)
    page = upload(support_client, twilio_credential(), "FriendlyName\nA\n", template).content.decode()
    assert "this one does not exist or is another user&#x27;s private template" in page
    assert not Batch.objects.exists()


def test_the_page_refuses_a_file_with_both_kinds_of_participant_columns(support_client):
    text = "FriendlyName,participant1.identity,participants\nA,alice,\n"
    page = upload(support_client, twilio_credential(), text).content.decode()
    assert "The file gives participants twice" in page and "Nothing was sent." in page
    assert not Batch.objects.exists()


def test_template_downloads_with_the_json_column_or_prefilled(support_client, support, admin):
    response = support_client.get("/bulk/template/twilio.csv?participants=json")
    assert next(csv.reader(io.StringIO(response.content.decode())))[-1] == "participants"
    template = saved(support)
    response = support_client.get(f"/bulk/template/twilio.xlsx?template={template.pk}")
    header, example = load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True)
    assert dict(zip(header, example, strict=True))["participant1.identity"] == "alice"
    assert "participants as JSON" in support_client.get("/bulk/").content.decode()
    private = saved(admin, name="Admin's")
    assert support_client.get(f"/bulk/template/twilio.csv?template={private.pk}").status_code == 404
    assert support_client.get(f"/bulk/template/mixin.csv?template={template.pk}").status_code == 404
    for bad in ("abc", "²", "9" * 30):
        assert support_client.get(f"/bulk/template/twilio.csv?template={bad}").status_code == 404
