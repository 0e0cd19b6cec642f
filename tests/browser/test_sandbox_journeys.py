"""Issue 7: against the sandbox, through the UI: every provider creates, errors and timeouts read clearly."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from convadmin.conversations.models import Conversation
from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot, start_conversation


@pytest.fixture
def support_page(page, demo):
    log_in(page, "demo-support", DEMO_PASSWORD)
    page.demo_credentials = demo.credentials()
    return page


def create(page) -> object:
    page.get_by_role("button", name="Create conversation").click()
    result = page.locator("#result-panel")
    expect(result).to_be_visible()
    expect(page.locator("#create-status")).to_have_css("opacity", "0")
    return result


def test_support_creates_a_conversation_on_each_provider(support_page):
    page = support_page

    start_conversation(page, "mixin")
    page.get_by_label("Category").select_option("GROUP")
    page.get_by_label("Group name").fill("QA group")
    page.locator("#participant-0").get_by_label("User id").fill("3f1c2a55-7b43-4c8e-9a61-2d0b5e8f9c10")
    page.locator("#participant-0").get_by_label("Role").select_option("ADMIN")
    result = create(page)
    expect(result).to_contain_text("Conversation created")
    expect(result).to_contain_text("Mixin Messenger id")

    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("QA chat")
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-agent")
    expect(create(page)).to_contain_text("Conversation created")

    start_conversation(page, "highlevel")
    page.get_by_label("Contact ID").fill("qaContact0001AAAAAAA")
    location = support_page.demo_credentials["highlevel"]["location_id"]
    expect(page.get_by_label("Location ID")).to_have_attribute(
        "placeholder", f"{location} (the credential's)"
    )
    expect(create(page)).to_contain_text("Conversation created")

    start_conversation(page, "msgraph")
    page.get_by_label("Topic").fill("QA review")
    page.get_by_label("First message").fill("Hello from QA.")
    page.locator("#participant-0").get_by_label("Name").fill("Adele Vance")
    page.locator("#participant-0").get_by_label("E-mail address").fill("adele@contoso.test")
    result = create(page)
    expect(result).to_contain_text("Conversation created")
    screenshot(page, "created-msgraph")

    made = Conversation.objects.filter(created_by__username="demo-support", status="created")
    assert {"QA group", "QA chat", "QA review"} <= set(made.values_list("name", flat=True))
    assert made.filter(provider="highlevel", request_body__contactId="qaContact0001AAAAAAA").exists()
    assert page.console_errors == []


def test_the_providers_own_error_is_shown_at_the_form_and_can_be_fixed(support_page):
    page = support_page
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Order 1001 again")
    page.get_by_label("Unique name").fill("order-1001")  # the demo data holds it already
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-agent")
    result = create(page)
    expect(result).to_contain_text("Twilio Conversations did not create the conversation")
    expect(result.locator(".provider-message")).to_contain_text(
        "Conversation with provided unique name already exists"
    )
    expect(result).to_contain_text("Code 50353 · HTTP 409")
    expect(result).to_contain_text("Fix what the message says in the fields above")
    screenshot(page, "provider-error")

    # What the user typed stays; a new unique name goes through with a fresh one-time token.
    expect(page.get_by_label("Friendly name")).to_have_value("Order 1001 again")
    page.get_by_label("Unique name").fill("order-1001-b")
    expect(create(page)).to_contain_text("Conversation created")

    # A 500: the outcome is unknown; the unique name we generated (none was typed) is looked up at once.
    start_conversation(page, "twilio")
    page.locator("#participant-0").get_by_label("Chat identity").fill("fail-500")
    result = create(page)
    expect(result).to_contain_text("No clear answer from Twilio Conversations")
    expect(result.locator(".provider-message")).to_contain_text("Internal Server Error")
    expect(result).to_contain_text(
        "We looked it up at Twilio Conversations by its UniqueName and did not find it"
    )
    expect(result).to_contain_text("open the record and use “Check with provider” first")
    assert page.console_errors == []


def test_a_timeout_is_said_plainly_and_the_record_stays_consistent(support_page, settings):
    settings.PROVIDER_TIMEOUT = 1.0  # the sandbox holds `slow` creates 2.5 s
    page = support_page

    # With a unique name, the create that timed out is looked up and found: the record is created.
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Slow but sure")
    page.get_by_label("Unique name").fill("slow-order-77")
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-agent")
    result = create(page)
    expect(result).to_contain_text("Conversation created")
    expect(result).to_contain_text("We looked it up at Twilio Conversations: it was created.")
    found = Conversation.objects.get(name="Slow but sure")
    assert (found.status, found.outcome_unknown) == ("created", False)
    assert found.external_id.startswith("CH")
    purposes = list(found.exchanges.order_by("started_at", "id").values_list("purpose", flat=True))
    assert purposes[0] == "create" and set(purposes[1:]) == {"lookup"}

    # Without one, the create still has a key the provider can be asked about: the one we generated from the
    # form's create key (the preview shows it). The look-up finds it the same way.
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("slow escalation")
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-agent")
    result = create(page)
    expect(result).to_contain_text("Conversation created")
    expect(result).to_contain_text("We looked it up at Twilio Conversations: it was created.")
    screenshot(page, "timeout")
    found = Conversation.objects.get(name="slow escalation")
    assert found.request_body["UniqueName"] == f"convadmin-{found.idempotency_key}"
    assert (found.status, found.outcome_unknown) == ("created", False)
    assert Conversation.objects.filter(name="slow escalation").count() == 1
    assert page.console_errors == []


def test_list_to_detail_to_refresh_from_provider(support_page):
    page = support_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    page.get_by_role("searchbox", name="Search").fill("customer-102")  # a participant of "Order 1002"
    rows = page.locator("table.conversations tbody tr")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=customer-102"))
    rows.get_by_role("link", name="Order 1002").click()

    expect(page.get_by_role("heading", name="Order 1002")).to_be_visible()
    refreshed = page.locator("dt:text-is('Refreshed at') + dd")
    expect(refreshed).to_have_text("never")
    exchanges = page.locator(".exchange")
    before = exchanges.count()
    page.get_by_role("button", name="Refresh from provider").click()
    expect(page.locator("#record [role=status]").first).to_contain_text(
        "Refreshed from the provider: 2 participants"
    )
    expect(refreshed).not_to_have_text("never")
    expect(exchanges).to_have_count(before + 2)  # the conversation and its participants, read again
    expect(exchanges.filter(has_text="refresh").first).to_be_visible()
    screenshot(page, "refreshed")

    # The record whose process died mid-call: "Check with provider" finds it by its unique name.
    page.get_by_role("link", name="Conversations").first.click()
    page.get_by_label("Status").select_option("pending")
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name="Order 1000").click()
    expect(page.get_by_text("Still pending.")).to_be_visible()
    pending = Conversation.objects.get(status="pending")
    page.get_by_role("button", name="Check with provider").click()  # seeded an hour old: not in flight
    expect(page.locator(".page-head .status").first).to_have_text("Created")
    expect(page.get_by_text("Still pending.")).to_have_count(0)
    pending.refresh_from_db()
    assert (pending.status, pending.external_id[:2]) == ("created", "CH")
    assert page.console_errors == []


def test_the_advice_follows_the_kind_of_failure(support_page):
    page = support_page

    # 429: wait as long as the provider says (the sandbox sends Retry-After: 2); nothing to fix.
    start_conversation(page, "msgraph")
    page.get_by_label("Topic").fill("rate-limit check")
    page.get_by_label("First message").fill("Hello.")
    page.locator("#participant-0").get_by_label("E-mail address").fill("adele@contoso.test")
    result = create(page)
    expect(result).to_contain_text("Microsoft Graph asks you to wait")
    expect(result.locator(".advice")).to_contain_text("Wait 2 seconds, then create again.")
    expect(result).not_to_contain_text("Fix what the message says")

    # 500: it may exist, so check with the provider first; and it is not called a timeout.
    start_conversation(page, "msgraph")
    page.get_by_label("Topic").fill("fail-500 review")
    page.get_by_label("First message").fill("Hello.")
    page.locator("#participant-0").get_by_label("E-mail address").fill("adele@contoso.test")
    result = create(page)
    expect(result).to_contain_text("No clear answer from Microsoft Graph")
    expect(result.locator(".advice")).to_contain_text("answered with a server error (HTTP 500)")
    expect(result).not_to_contain_text("Fix what the message says")
    screenshot(page, "graph-500-advice")
    failed = Conversation.objects.get(name="fail-500 review")
    result.get_by_role("link", name=f"record {failed.pk}").click()
    expect(page.get_by_role("heading", name="fail-500 review")).to_be_visible()
    expect(page.locator("#record")).to_contain_text("answered with a server error (HTTP 500)")
    expect(page.locator("#record")).not_to_contain_text("did not answer in time")
    assert page.console_errors == []


def test_a_failed_retry_is_shown_as_a_failure(support_page):
    page = support_page
    start_conversation(page, "twilio")
    page.get_by_label("Unique name").fill("order-1001")  # the demo data holds it already: 409
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-agent")
    result = create(page)
    expect(result).to_contain_text("Fix what the message says")
    first = Conversation.objects.get(request_body__UniqueName="order-1001", status="failed")
    result.get_by_role("link", name=f"record {first.pk}").click()
    page.get_by_role("button", name="Retry").click()
    banner = page.locator(".messages li")
    expect(banner).to_contain_text("The retry failed too")
    expect(banner).to_have_class("msg-error")
    expect(page.locator(".messages .msg-success")).to_have_count(0)
    assert page.console_errors == []


def test_the_page_answers_at_once_and_follows_the_job_until_its_outcome(support_page, settings):
    """With a real queue the create waits for a worker: the panel says so, polls, and turns into the outcome."""
    from django_tasks_db.models import DBTaskResult

    from convadmin.conversations import services

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    page = support_page
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Queued order")
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-agent")
    result = create(page)
    expect(result).to_contain_text("Creating at Twilio Conversations")
    record = Conversation.objects.get(name="Queued order")
    assert record.status == "pending"
    job = DBTaskResult.objects.get(task_path="convadmin.conversations.tasks.create_conversation")
    pk, ip = job.args_kwargs["args"]
    services.run_create(pk, ip=ip)  # what the worker does
    expect(page.locator("#result-panel")).to_contain_text("Conversation created", timeout=10_000)
    expect(page.locator("#result-panel")).to_contain_text(Conversation.objects.get(pk=record.pk).external_id)
    screenshot(page, "create-followed")
    assert page.console_errors == []
