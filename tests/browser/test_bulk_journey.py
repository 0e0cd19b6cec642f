"""Issue 13, Bulk create: template download → upload with errors → report → fix → send → progress → results export;
a saved template filling a file's blank cells, and participants as one JSON column."""

from __future__ import annotations

import csv
import io

from playwright.sync_api import expect

from convadmin.bulk import services
from convadmin.bulk.models import Batch
from convadmin.credentials.services import parse
from convadmin.drafts.models import ConversationTemplate
from tests.browser.conftest import log_in, screenshot, upload
from tests.factories import CredentialFactory, UserFactory

PASSWORD = "correct horse battery"  # UserFactory's


def test_support_uploads_fixes_sends_and_exports_a_bulk_file(page, sandbox, tmp_path, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}  # the job runs when we say
    UserFactory(username="sam-support", role="Support")
    parsed = parse("twilio", sandbox.credentials()["twilio"])
    CredentialFactory(provider="twilio", label="Twilio QA", settings=parsed.settings, secrets=parsed.secrets)

    log_in(page, "sam-support", PASSWORD)
    page.get_by_role("link", name="Bulk create").first.click()
    expect(page.get_by_role("heading", name="Bulk create")).to_be_visible()

    # The Twilio template: its columns are the provider's fields.
    with page.expect_download() as download:
        page.get_by_role("row", name="Twilio Conversations").get_by_role(
            "link", name="CSV", exact=True
        ).click()
    header = next(csv.reader(io.StringIO(download.value.path().read_text())))
    assert header[:2] == ["FriendlyName", "UniqueName"]

    rows = [
        {"FriendlyName": "Order 1", "UniqueName": "bulk-order-1", "participant1.identity": "agent-1"},
        {"FriendlyName": "Order 2", "UniqueName": "bulk-order-2", "State": "closed"},
        {"FriendlyName": "Order 3", "UniqueName": "bulk-order-1"},
    ]
    upload(page, tmp_path / "orders.csv", header, rows)
    expect(page.locator("#summary")).to_have_text("1 ready, 2 with errors")
    table = page.locator("#rows")
    expect(table.get_by_role("row").filter(has_text="closed")).to_contain_text("State")
    expect(table).to_contain_text("Row 2 creates the same conversation")
    screenshot(page, "bulk-report")

    # Fix the file and upload it again: every row is ready.
    page.get_by_role("link", name="Fix the file and upload again").click()
    rows[1]["State"] = ""
    rows[2]["UniqueName"] = "bulk-order-3"
    upload(page, tmp_path / "orders-fixed.csv", header, rows)
    expect(page.locator("#summary")).to_have_text("3 ready, 0 with errors")
    page.get_by_role("button", name="Send the 3 valid rows").click()
    expect(page.locator("#batch-status")).to_have_text("Running")
    expect(page.locator("#batch-progress")).to_have_attribute("value", "0")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()

    # The worker runs the job; the page follows it by itself (htmx polling).
    services.run_batch(Batch.objects.get(file_name="orders-fixed.csv").pk)
    expect(page.locator("#batch-status")).to_have_text("Done")
    expect(page.locator("#batch-progress")).to_have_attribute("value", "3")
    expect(page.locator("#counts")).to_contain_text("Created: 3")
    expect(page.locator("#rows").get_by_text("Created")).to_have_count(3)  # the rows follow too
    screenshot(page, "bulk-results")

    # Results: each row links its record; the report downloads as CSV.
    page.get_by_label("Status").select_option("created")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#rows").get_by_role("link")).to_have_count(3)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the report (CSV)").click()
    lines = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [line["status"] for line in lines] == ["created"] * 3
    assert all(line["external_id"].startswith("CH") for line in lines)

    page.get_by_role("link", name="Its conversations").click()
    expect(page.locator("main")).to_contain_text("Order 3")
    assert page.console_errors == []


def test_a_saved_template_fills_blank_cells_and_participants_come_as_json(page, sandbox, tmp_path):
    support = UserFactory(username="sam-support", role="Support")
    parsed = parse("twilio", sandbox.credentials()["twilio"])
    CredentialFactory(provider="twilio", label="Twilio QA", settings=parsed.settings, secrets=parsed.secrets)
    ConversationTemplate.objects.create(
        name="QA orders",
        provider="twilio",
        owner=support,
        body={"FriendlyName": "QA order", "State": "closed", "Participant": [{"identity": "qa-agent"}]},
    )
    log_in(page, "sam-support", PASSWORD)
    page.goto("/bulk/")

    # Blank cells take the template's values; a value in the file wins.
    header = ["FriendlyName", "UniqueName", "State", "participant1.identity"]
    rows = [{"UniqueName": "tpl-1", "State": "active"}, {"UniqueName": "tpl-2"}]
    upload(page, tmp_path / "blanks.csv", header, rows, "QA orders")
    expect(page.locator("#summary")).to_have_text("1 ready, 1 with errors")
    expect(page.locator("#batch-template")).to_contain_text("QA orders")
    expect(
        page.locator("#rows").get_by_role("row").filter(has_text="State (from the template)")
    ).to_contain_text("closed")

    # The template file with participants as one JSON column.
    page.get_by_role("link", name="Fix the file and upload again").click()
    with page.expect_download() as download:
        row = page.get_by_role("row", name="Twilio Conversations")
        row.get_by_role("link", name="CSV, participants as one JSON column").click()
    header = next(csv.reader(io.StringIO(download.value.path().read_text())))
    assert header[-1] == "participants"
    rows = [
        {"UniqueName": "tpl-3", "State": "active", "participants": '[{"identity": "agent-9"}]'},
        {
            "UniqueName": "tpl-4",
            "State": "active",
            "participants": '[{"messaging_binding": {"address": "nope"}}]',
        },
        {"UniqueName": "tpl-5", "State": "active"},  # no participant: the template's
    ]
    upload(page, tmp_path / "json.csv", header, rows, "QA orders")
    expect(page.locator("#summary")).to_have_text("2 ready, 1 with errors")
    bad = (
        page.locator("#rows")
        .get_by_role("row")
        .filter(has_text="Participants (JSON): Participant 1, Address")
    )
    expect(bad).to_contain_text("nope")
    screenshot(page, "bulk-template-json")

    batch = Batch.objects.get(file_name="json.csv")
    assert [row.body.get("Participant") for row in batch.rows.filter(status="ready")] == [
        [{"identity": "agent-9"}],
        [{"identity": "qa-agent"}],
    ]
    assert {row.body["FriendlyName"] for row in batch.rows.filter(status="ready")} == {"QA order"}
    assert page.console_errors == []
