"""Issue 6: an auditor filters the list, opens a record, expands an exchange, exports, and changes nothing."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot


def test_auditor_filters_opens_a_record_reads_an_exchange_and_exports(page, demo):
    token = demo.credentials()["twilio"]["auth_token"]
    log_in(page, "demo-auditor", DEMO_PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Audit log")).to_be_visible()
    for hidden in ("New conversation", "Credentials", "Users"):
        expect(page.get_by_role("link", name=hidden)).to_have_count(0)

    nav.get_by_role("link", name="Conversations").click()
    rows = page.locator("table.conversations tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.get_by_role("link", name="New conversation")).to_have_count(0)

    # Each filter updates the table in place and the address bar, so the view can be shared.
    page.get_by_label("Provider").select_option("twilio")
    expect(page).to_have_url(re.compile(r"provider=twilio"))
    expect(rows).to_have_count(9)
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(rows).to_have_count(2)
    for row in rows.all():
        expect(row).to_contain_text("Twilio Conversations")
        expect(row).to_contain_text("Failed")
    screenshot(page, "auditor-list")

    # A failed record: the provider's error verbatim and its exchanges, collapsed until asked for.
    page.get_by_role("link", name="Returns").click()
    expect(page.get_by_role("heading", name="Returns")).to_be_visible()
    expect(page.locator("pre.verbatim")).to_contain_text(
        "Conversation with provided unique name already exists"
    )
    exchange = page.locator(".exchange").first
    body = exchange.locator("details.body-side", has_text="Response")
    expect(body.locator("pre").last).to_be_hidden()
    body.locator("summary").click()
    expect(body.locator("pre").last).to_contain_text('"code": 50353')
    for action in ("Refresh from provider", "Retry", "Check with provider", "Duplicate as new"):
        expect(page.get_by_role("button", name=action)).to_have_count(0)
        expect(page.get_by_role("link", name=action)).to_have_count(0)
    screenshot(page, "auditor-detail")
    assert token not in page.content()

    # Back to the filtered list, and export exactly what it shows.
    page.go_back()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(rows).to_have_count(2)
    with page.expect_download() as download:
        page.locator(".export-links").get_by_role("button", name="CSV").click()
    text = Path(download.value.path()).read_text()
    assert download.value.suggested_filename.endswith(".csv")
    records = list(csv.DictReader(text.splitlines()))
    assert sorted(r["name"] for r in records) == ["Escalation", "Returns"]
    assert {(r["provider"], r["status"]) for r in records} == {("twilio", "failed")}
    assert token not in text

    # The export itself is in the audit log.
    nav.get_by_role("link", name="Audit log").click()
    page.get_by_role("combobox", name="Event").select_option("conversations_exported")
    events = page.locator("table.events tbody tr")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("demo-auditor")
    assert page.console_errors == []
