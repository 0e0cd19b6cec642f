"""The README's screenshots, over `make demo`'s data: `make screenshots` writes docs/screenshots/*.png.

Not part of `make browser` (pytest collects this file only when it is named on the command line).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from django.utils import timezone
from playwright.sync_api import expect

from convadmin.dashboard import rollup
from tests.browser.conftest import DEMO_PASSWORD, htmx_settled, log_in, start_conversation, upload

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MAX_BYTES = 300_000


def shoot(page, name: str, *, full_page: bool = False) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    path = DOCS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, caret="initial")  # see conftest.screenshot
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes: crop it"


def test_readme_screenshots(page, demo, tmp_path):
    rollup.roll_up_latency(now=timezone.now() + timedelta(minutes=10))  # the job waits for calls to settle
    log_in(page, "demo", DEMO_PASSWORD)
    expect(page.get_by_role("heading", name="Creates per day")).to_be_visible()
    shoot(page, "dashboard")
    page.locator("#h-rates").scroll_into_view_if_needed()
    shoot(page, "dashboard-failures")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    expect(page.locator("table.conversations tbody tr").first).to_be_visible()
    shoot(page, "conversations")

    page.get_by_role("link", name="Order 1001", exact=True).click()
    expect(page.get_by_role("heading", name="Order 1001")).to_be_visible()
    create = page.locator(".exchange").filter(has_text="create").first
    create.locator("summary", has_text="Response").click()
    expect(create.locator("details.body-side").nth(1).locator("pre").last).to_be_visible()
    create.scroll_into_view_if_needed()
    shoot(page, "conversation-detail", full_page=True)

    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Order 4242")
    page.get_by_label("Unique name").fill("order-4242")
    page.locator("#participant-0").get_by_label("Chat identity").fill("agent-ann")
    page.get_by_role("button", name="Add participant").click()
    row = page.locator("#participant-1")
    expect(
        row.get_by_label("Chat identity")
    ).to_be_focused()  # htmx moved focus there; typing races it otherwise
    row.get_by_label("Address", exact=True).fill("15558675310")
    row.get_by_label("Proxy address").fill("+15017122661")
    expect(page.locator("#err-participants-1-messaging_binding-address")).to_contain_text("E.164")
    row.get_by_label("Proxy address").press("Tab")
    expect(page.locator("#err-participants-1-messaging_binding-proxy_address")).to_be_empty()
    shoot(page, "new-conversation", full_page=True)

    # Save the form as a template, then edit the body as JSON with a field the form does not show, wrongly.
    page.get_by_text("Save as template", exact=True).first.click()
    page.get_by_label("Template name").fill("Order follow-up")
    page.get_by_label("Share with everyone who creates conversations").check()
    page.get_by_role("button", name="Save as template").click()
    expect(page.locator("#form-notice")).to_contain_text("Saved as template")
    page.get_by_role("button", name="Edit as JSON").click()
    editor = page.get_by_label("Request body (JSON)")
    expect(editor).to_be_visible()
    htmx_settled(page)
    body = json.loads(editor.input_value())
    editor.fill(json.dumps({**body, "X-Twilio-Webhook-Enabled": "sometimes"}, indent=2))
    expect(page.locator("#json-errors")).to_contain_text("X-Twilio-Webhook-Enabled")
    shoot(page, "json-editor", full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Templates").click()
    expect(page.get_by_role("button", name="Delete Order follow-up")).to_be_visible()
    shoot(page, "templates")

    # Bulk create: a file with two mistakes, its report; fixed, sent, the batch's results.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Bulk create").click()
    header = ["FriendlyName", "UniqueName", "State", "participant1.identity"]
    rows = [
        {
            "FriendlyName": f"Onboarding {n}",
            "UniqueName": f"onboard-{n}",
            "participant1.identity": f"cust-{n}",
        }
        for n in range(1, 7)
    ]
    rows[2]["State"] = "closed"
    rows[4]["UniqueName"] = "onboard-1"
    upload(page, tmp_path / "onboarding.csv", header, rows, credential="Sandbox Twilio")
    expect(page.locator("#summary")).to_have_text("4 ready, 2 with errors")
    shoot(page, "bulk-report", full_page=True)
    page.get_by_role("link", name="Fix the file and upload again").click()
    rows[2]["State"] = ""
    rows[4]["UniqueName"] = "onboard-5"
    upload(page, tmp_path / "onboarding-fixed.csv", header, rows, credential="Sandbox Twilio")
    page.get_by_role("button", name="Send the 6 valid rows").click()
    expect(page.locator("#batch-status")).to_have_text("Done")
    expect(page.locator("#counts")).to_contain_text("Created: 6")
    shoot(page, "bulk-batch", full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Credentials").click()
    expect(page.get_by_role("link", name="Sandbox Twilio", exact=True)).to_be_visible()
    for label in ("Sandbox HighLevel", "Sandbox Microsoft Graph", "Sandbox Mixin", "Sandbox Twilio"):
        page.get_by_role("button", name=f"Check {label}").click()
    expect(page.locator("table.credentials .status-ok", has_text="Accepted")).to_have_count(4)
    expect(page.locator("table.credentials .htmx-request")).to_have_count(0)
    shoot(page, "credentials", full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    expect(page.locator("table.events tbody tr").first).to_be_visible()
    shoot(page, "audit-log")
    assert page.console_errors == []
