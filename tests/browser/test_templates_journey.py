"""Issue 13: save a template, start from it, edit the body as JSON with a field the form cannot show, see the
error at its JSON path, fix it, preview and create."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from convadmin.conversations.models import Conversation
from convadmin.drafts.models import ConversationTemplate
from tests.browser.conftest import DEMO_PASSWORD, htmx_settled, log_in, screenshot, start_conversation


def test_save_a_template_start_from_it_and_create_from_json(page, demo):
    log_in(page, "demo-support", DEMO_PASSWORD)
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Journey order")
    page.locator("#participant-0").get_by_label("Chat identity").fill("agent-journey")

    # Save the form as a shared template.
    page.get_by_text("Save as template", exact=True).first.click()
    page.get_by_label("Template name").fill("Journey")
    page.get_by_label("Share with everyone who creates conversations").check()
    page.get_by_role("button", name="Save as template").click()
    expect(page.locator("#form-notice")).to_contain_text(
        "Saved as template “Journey” (visible to everyone who creates conversations)."
    )
    saved = ConversationTemplate.objects.get()
    assert saved.body == {"FriendlyName": "Journey order", "Participant": [{"identity": "agent-journey"}]}

    # The templates page lists it; start a conversation from it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Templates").click()
    row = page.locator(f"#template-{saved.pk}")
    expect(row).to_contain_text("Journey")
    expect(row).to_contain_text("Everyone")
    row.get_by_role("link", name="Start a conversation").click()
    expect(page.locator("#form-notice")).to_contain_text("From template “Journey”.")
    expect(page.get_by_label("Friendly name")).to_have_value("Journey order")
    expect(page.locator("#participant-0").get_by_label("Chat identity")).to_have_value("agent-journey")

    # Edit as JSON: the body the form would send; add a field the form cannot show, wrongly.
    page.get_by_role("button", name="Edit as JSON").click()
    editor = page.get_by_label("Request body (JSON)")
    expect(editor).to_be_visible()
    htmx_settled(page)  # the editor's own hx-trigger is wired when htmx settles
    body = json.loads(editor.input_value())
    assert body == {"FriendlyName": "Journey order", "Participant": [{"identity": "agent-journey"}]}
    editor.fill(json.dumps({**body, "DateCreated": "yesterday"}, indent=2))
    errors = page.locator("#json-errors")
    expect(errors).to_contain_text("DateCreated")
    expect(errors.locator("code")).to_have_text("DateCreated")
    screenshot(page, "templates-json-error")

    # Fix it: the same rules say it is valid now.
    editor.fill(json.dumps({**body, "DateCreated": "2026-01-02T03:04:05Z"}, indent=2))
    expect(errors).to_contain_text("Valid for Twilio Conversations.")

    # Preview shows the field on the wire, with copy-as-curl.
    page.get_by_role("button", name="Preview request").click()
    expect(page.locator("#preview-request")).to_contain_text("DateCreated=2026-01-02T03%3A04%3A05Z")
    expect(page.locator("#curl-command")).to_contain_text("curl -sS -X POST")

    # Create.
    page.get_by_role("button", name="Create conversation").click()
    expect(page.locator("#result-panel")).to_contain_text("Conversation created", timeout=20_000)
    conversation = Conversation.objects.order_by("-pk").first()
    assert conversation.request_body["DateCreated"] == "2026-01-02T03:04:05Z"
    assert conversation.request_body["FriendlyName"] == "Journey order"
    assert re.fullmatch(r"CH[0-9a-f]{32}", conversation.external_id)
    screenshot(page, "templates-json-created")
    assert page.console_errors == []
