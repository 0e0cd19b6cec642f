"""Issue 5: an administrator adds a Twilio credential, a Support user builds, previews and creates a conversation."""

from __future__ import annotations

import base64
import re

from playwright.sync_api import expect

from convadmin.conversations.models import Conversation
from tests.browser.conftest import DEMO_PASSWORD, htmx_settled, log_in, screenshot, start_conversation
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


# --- issue #10: after a create, the summary, Enter, an empty create, row numbers -------------------


def _create(page):
    page.get_by_role("button", name="Create conversation").click()
    result = page.locator("#result-panel")
    expect(result).to_be_visible()
    expect(page.locator("#create-status")).to_have_css("opacity", "0")
    return result


def test_a_changed_form_after_a_create_is_refused_until_create_another(page, demo):
    log_in(page, "demo-support", DEMO_PASSWORD)
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Journey A")
    page.locator("#participant-0").get_by_label("Chat identity").fill("ann")
    result = _create(page)
    expect(result).to_contain_text("Conversation created")
    a = Conversation.objects.get(name="Journey A")

    # Edit name and participant, press Create again: refused, naming A's record; B is not sent.
    page.get_by_label("Friendly name").fill("Journey B")
    page.locator("#participant-0").get_by_label("Chat identity").fill("bob")
    result = _create(page)
    expect(result).to_contain_text("Not sent: this form already created a conversation")
    expect(result.get_by_role("link", name=f"record {a.pk}")).to_be_visible()
    expect(result).not_to_contain_text("Conversation created")
    assert not Conversation.objects.filter(name="Journey B").exists()
    screenshot(page, "create-key-refused")

    # "Create another like this" keeps the edited fields under a new key; Create then sends B.
    result.get_by_role("button", name="Create another like this").click()
    expect(page.locator("#form-notice")).to_contain_text("A new conversation with the same fields")
    expect(page.get_by_label("Friendly name")).to_have_value("Journey B")
    expect(page.locator("#participant-0").get_by_label("Chat identity")).to_have_value("bob")
    result = _create(page)
    expect(result).to_contain_text("Conversation created")
    b = Conversation.objects.get(name="Journey B")
    assert b.pk != a.pk and b.participants == ["bob"]
    assert Conversation.objects.filter(name="Journey A").count() == 1

    # "Create another" starts from empty fields.
    result.get_by_role("link", name="Create another").click()
    expect(page.get_by_label("Friendly name")).to_have_value("")
    assert page.console_errors == []


def test_the_error_summary_follows_the_fields_and_goes_after_a_good_preview(page, demo):
    log_in(page, "demo-support", DEMO_PASSWORD)
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Timers")
    page.get_by_label("Inactive after").fill("PT5S")
    page.get_by_label("Messaging Service SID").fill("nope")
    page.locator("#participant-0").get_by_label("Chat identity").fill("ann")
    page.get_by_role("button", name="Create conversation").click()
    summary = page.locator("#error-summary")
    expect(summary).to_contain_text("Fix these 3 problems before sending")

    page.get_by_label("Inactive after").fill("PT1H")
    page.get_by_label("Inactive after").press("Tab")
    expect(summary).to_contain_text("Fix these 2 problems before sending")
    expect(summary).not_to_contain_text("Inactive after")
    page.get_by_label("State").select_option("active")
    expect(summary).to_contain_text("Fix this problem before sending")
    page.get_by_label("Messaging Service SID").fill("")
    page.get_by_label("Messaging Service SID").press("Tab")
    expect(summary).to_have_count(0)

    page.get_by_role("button", name="Preview request").click()
    expect(page.locator("#preview-request")).to_be_visible()
    expect(page.locator("#error-summary")).to_have_count(0)
    assert not Conversation.objects.filter(name="Timers").exists()
    assert page.console_errors == []


def test_enter_previews_and_an_empty_twilio_create_asks_first(page, demo):
    log_in(page, "demo-support", DEMO_PASSWORD)
    before = Conversation.objects.count()
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Enter pressed")
    page.get_by_label("Friendly name").press("Enter")
    expect(page.locator("#preview-request")).to_contain_text("FriendlyName=Enter%20pressed")
    expect(page.locator("#result-panel")).to_have_count(0)
    page.locator("#participant-0").get_by_label("Chat identity").fill("ann")
    page.locator("#participant-0").get_by_label("Chat identity").press("Enter")
    expect(page.locator("#preview-request")).to_contain_text("ann")
    assert Conversation.objects.count() == before

    # Rows renumber after a removal: 1, 2, 3 — not 1, 3, 4.
    for count in (2, 3, 4):
        page.get_by_role("button", name="Add participant").click()
        expect(page.locator(".participant-row")).to_have_count(count)
    page.get_by_role("button", name="Remove participant 2").click()
    expect(page.locator(".participant-row")).to_have_count(3)
    expect(page.locator(".participant-row legend")).to_have_text(
        ["Participant 1", "Participant 2", "Participant 3"]
    )
    expect(page.get_by_role("button", name="Remove participant 3")).to_be_visible()

    # An empty conversation (no name, no participant) is allowed by Twilio, but asked for first.
    for count, remove in enumerate(("Remove participant 3", "Remove participant 2", "Remove participant 1")):
        page.get_by_role("button", name=remove).click()
        expect(page.locator(".participant-row")).to_have_count(2 - count)
    # After a removal focus moves to "Add participant" once htmx settles; wait for it before typing elsewhere.
    expect(page.get_by_role("button", name="Add participant")).to_be_focused()
    htmx_settled(page)
    page.get_by_label("Friendly name").fill("")
    expect(page.get_by_label("Friendly name")).to_have_value("")
    result = _create(page)
    expect(result).to_contain_text("Create a conversation with no name and no participants?")
    assert Conversation.objects.count() == before
    screenshot(page, "empty-create-confirm")
    result.get_by_role("button", name="Create the empty conversation").click()
    expect(page.locator("#result-panel")).to_contain_text("Conversation created")
    assert Conversation.objects.count() == before + 1
    assert page.console_errors == []
