"""Issue 10 (items 9, 15): rows that can be told apart, links where a user expects them, and bodies that a
keyboard can scroll."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse

from convadmin.audit.models import AuditEvent, EventType
from convadmin.audit.services import record
from convadmin.conversations.models import Status
from convadmin.exchanges.models import Exchange
from tests.factories import ConversationFactory, CredentialFactory

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("dashboard")
CONTACT = "rTDJGD7SjqDamyzrk5UW"
MEMBERS = [f"1d2e3f40-0000-4000-8000-0000000000{n:02x}" for n in (0x1E, 0x1F, 0x20)]


def highlevel_record(**kwargs):
    credential = CredentialFactory(provider="highlevel", label="HL", settings={"location_id": "loc"})
    return ConversationFactory(
        credential=credential,
        name="",
        participants=[CONTACT],
        request_body={"contactId": CONTACT, "locationId": "loc"},
        **kwargs,
    )


def chips(html: str) -> list[tuple[str, str]]:
    return [
        (unescape(title), unescape(text))
        for title, text in re.findall(r'<span class="chip" title="([^"]*)">([^<]*)</span>', html)
    ]


def test_participant_chips_show_the_end_that_tells_ids_apart_and_the_whole_id_on_hover(support_client):
    ConversationFactory(name="Squad", provider="mixin", participants=MEMBERS)
    shown = chips(support_client.get(reverse("conversations")).content.decode())
    assert [title for title, _ in shown] == MEMBERS
    texts = [text for _, text in shown]
    assert len(set(texts)) == 3, texts
    assert texts[0] == "1d2e3f40…0000001e"


def test_short_participants_are_shown_whole(support_client):
    ConversationFactory(participants=["agent-ann", "+15558675310"])
    shown = chips(support_client.get(reverse("conversations")).content.decode())
    assert shown == [("agent-ann", "agent-ann"), ("+15558675310", "+15558675310")]


def test_a_highlevel_record_is_named_by_its_contact_everywhere(support_client, auditor_client):
    conversation = highlevel_record(external_id="")
    label = f"Contact {CONTACT}"
    link = f'<a href="/conversations/{conversation.pk}/">{label}</a>'
    assert link in support_client.get(reverse("conversations")).content.decode()
    assert link in support_client.get(DASHBOARD).content.decode()
    detail = support_client.get(reverse("conversation_detail", args=[conversation.pk])).content.decode()
    assert re.search(rf"<h1>{label} <span", detail)
    assert "(no name)" not in detail

    # The audit event is written while the record is pending (no external id yet): it names the contact.
    record(EventType.CONVERSATION_REQUESTED, target=conversation)
    assert AuditEvent.objects.get(target_id=str(conversation.pk)).target_label == label
    log = auditor_client.get(reverse("audit"), {"target_type": "conversation"}).content.decode()
    assert link in log and f"Conversation {conversation.pk}" not in log


def test_recent_failures_link_the_name_not_the_time(support_client):
    failed = ConversationFactory(name="Returns", status=Status.FAILED, error_message="Unique name taken")
    page = support_client.get(DASHBOARD).content.decode()
    failures = page.split('id="failures"', 1)[1]
    assert f'<a href="/conversations/{failed.pk}/">Returns</a>' in failures
    assert not re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d</a>", failures)


def test_an_empty_dashboard_links_an_administrator_to_adding_a_credential(admin_client, support_client):
    link = f'<a href="{reverse("credential_new")}">Add a credential</a>'
    assert link in admin_client.get(DASHBOARD).content.decode()
    assert link not in support_client.get(DASHBOARD).content.decode()


def test_every_scrolling_body_on_the_detail_page_can_be_focused(support_client):
    conversation = ConversationFactory(
        response_body={"sid": "CH1"}, provider_participants=[{"identity": "a"}]
    )
    Exchange.objects.create(
        conversation=conversation,
        method="POST",
        url="https://conversations.twilio.com/v1/Conversations",
        request_headers={"Content-Type": "application/json"},
        request_body='{"FriendlyName": "x"}',
        status=201,
        response_headers={"Content-Type": "application/json"},
        response_body='{"sid": "CH1"}',
        started_at=conversation.created_at,
    )
    html = support_client.get(reverse("conversation_detail", args=[conversation.pk])).content.decode()
    pres = re.findall(r"<pre(?![^>]*verbatim)([^>]*)>", html)
    assert len(pres) >= 6, pres  # request as sent, provider participants and response, 2 headers, 2 bodies
    labels = []
    for attrs in pres:
        assert 'tabindex="0"' in attrs and 'role="region"' in attrs, attrs
        labels.append(re.search(r'aria-label="([^"]+)"', attrs).group(1))
    assert len(set(labels)) == len(labels), labels  # each region has its own name


def test_htmx_never_copies_a_style_attribute(support_client):
    """Copying style="" (set by extensions, say) onto swapped-in content breaks the CSP's no-inline-style."""
    html = support_client.get(DASHBOARD).content.decode()
    config = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'', html).group(1)
    assert '"attributesToSettle": ["class", "width", "height"]' in config
