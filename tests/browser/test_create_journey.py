"""Issue 5: an administrator adds a Twilio credential, a Support user builds, previews and creates a conversation."""

from __future__ import annotations

import base64
import re

from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot
from tests.factories import UserFactory

PASSWORD = "correct horse battery"  # UserFactory's


def test_admin_adds_a_credential_and_support_creates_a_three_participant_conversation(page, sandbox):
    UserFactory(username="ann-admin", role="Administrator")
    UserFactory(username="sam-support", role="Support")
    twilio = sandbox.credentials()["twilio"]
    token = twilio["auth_token"]

    # The administrator adds the credential; the provider's fields arrive by htmx when it is chosen.
    log_in(page, "ann-admin", PASSWORD)
    page.get_by_role("link", name="Credentials").click()
    page.get_by_role("link", name="Add a credential").click()
    page.get_by_label("Provider").select_option("Twilio Conversations")
    expect(page.get_by_role("group", name="Twilio Conversations")).to_be_visible()
    page.get_by_label("Label").fill("Twilio QA")
    page.get_by_label("Account SID").fill(twilio["account_sid"])
    page.get_by_label("Auth Token").fill(token)
    page.get_by_label("Base URL").fill(twilio["base_url"])
    page.get_by_role("button", name="Add credential").click()
    expect(page.get_by_role("heading", name="Twilio QA")).to_be_visible()
    expect(page.get_by_text("Credential “Twilio QA” added")).to_be_visible()
    expect(page.get_by_text("Not checked yet.")).to_be_visible()

    # Check: hold the request in the browser so the spinner can be seen, then let it through.
    held = []
    page.route("**/credentials/*/check/", lambda route: held.append(route))
    check = page.get_by_role("button", name="Check with Twilio Conversations")
    check.click()
    spinner = page.locator("#check-spinner")  # an .htmx-indicator: shown by opacity, so assert the opacity
    expect(spinner).to_have_css("opacity", "1")
    expect(check).to_be_disabled()
    held[0].continue_()
    page.unroute_all()
    expect(page.locator("#check-result")).to_contain_text("Accepted")
    expect(spinner).to_have_css("opacity", "0")
    expect(check).to_be_enabled()
    expect(page.locator("#recent-exchanges")).to_contain_text("check")
    assert token not in page.content()
    page.get_by_role("button", name="Log out").click()

    # Support builds a three-participant conversation.
    log_in(page, "sam-support", PASSWORD)
    page.get_by_role("link", name="New conversation").first.click()
    page.get_by_label("Provider").select_option("twilio")
    expect(page.get_by_role("heading", name="2. Twilio Conversations: the conversation")).to_be_visible()
    expect(page.get_by_label("Credential")).to_have_value(re.compile(r"\d+"))
    page.get_by_label("Friendly name").fill("Order 4242")
    page.get_by_label("Unique name").fill("order-4242")

    rows = page.locator(".participant-row")
    first = page.locator("#participant-0")
    first.get_by_label("Chat identity").fill("agent-ann")
    page.get_by_role("button", name="Add participant").click()
    expect(rows).to_have_count(2)
    second = page.locator("#participant-1")
    expect(second.get_by_label("Chat identity")).to_be_focused()

    # An address without "+" is refused as the user leaves the field, before anything is sent.
    address = second.get_by_label("Address", exact=True)
    address.fill("15558675310")
    second.get_by_label("Proxy address").click()
    address_error = page.locator("#err-participants-1-messaging_binding-address")
    expect(address_error).to_contain_text("is not a phone number in E.164 form")
    expect(address).to_have_attribute("aria-invalid", "true")
    second.get_by_label("Proxy address").fill("+15017122661")
    second.get_by_label("Proxy address").press("Tab")
    expect(page.locator("#err-participants-1-messaging_binding-proxy_address")).to_be_empty()
    address.fill("+15558675310")
    address.press("Tab")
    expect(address_error).to_be_empty()
    expect(address).not_to_have_attribute("aria-invalid", "true")

    page.get_by_role("button", name="Add participant").click()
    expect(rows).to_have_count(3)
    third = page.locator("#participant-2").get_by_label("Chat identity")
    expect(third).to_be_focused()
    third.fill("customer-42")
    third.press("Tab")
    expect(page.get_by_role("button", name="Remove participant 3")).to_be_visible()

    # The preview is the exact request, with the secret masked and curl reading it from the environment.
    page.get_by_role("button", name="Preview request").click()
    preview = page.locator("#preview-request")
    expect(preview).to_contain_text("POST " + twilio["base_url"] + "/v1/ConversationWithParticipants")
    expect(preview).to_contain_text("Authorization: Basic [redacted]")
    expect(preview).to_contain_text("FriendlyName=Order%204242&UniqueName=order-4242&Participant=")
    curl = page.locator("#curl-command")
    expect(curl).to_contain_text('-u "$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN"')
    basic = base64.b64encode(f"{twilio['account_sid']}:{token}".encode()).decode()
    html = page.content()
    assert token not in html
    assert basic not in html

    page.get_by_role("button", name="Create conversation").click()
    result = page.locator("#result-panel")
    expect(result).to_contain_text("Conversation created")
    expect(result).to_contain_text(re.compile(r"id CH[0-9a-f]{32}"))
    expect(page.locator("#create-status")).to_have_css("opacity", "0")  # the spinner has faded out
    screenshot(page, "new-conversation")
    assert token not in page.content()

    result.get_by_role("link", name="Open the record").click()
    expect(page.get_by_role("heading", name="Order 4242")).to_be_visible()
    expect(page.locator(".page-head .status")).to_have_text("Created")
    for identity in ("agent-ann", "+15558675310", "customer-42"):
        expect(page.get_by_text(identity).first).to_be_visible()
    assert token not in page.content()
    assert page.console_errors == []
