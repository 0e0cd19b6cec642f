"""Saved templates: save from the new-conversation page, start from one, list, rename, delete (audited)."""

from __future__ import annotations

import re
import uuid

import pytest

from convadmin.audit.models import AuditEvent, EventType
from convadmin.drafts.models import ConversationTemplate
from convadmin.drafts.services import without_secrets
from tests.create_support import graph_credential, twilio_credential
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
NEW = "/conversations/new/"
LIST = "/conversations/templates/"


@pytest.fixture
def twilio_cred():
    return twilio_credential(label="Twilio main")


def form(credential, fields=None, rows=(), **extra) -> dict[str, str]:
    data = {
        "provider": credential.provider,
        "credential": str(credential.pk),
        "idempotency_key": str(uuid.uuid4()),
        "participants-TOTAL_FORMS": str(len(rows)),
        "participants-INITIAL_FORMS": "0",
        **(fields or {}),
    }
    for index, row in enumerate(rows):
        data |= {f"participants-{index}-{name}": value for name, value in row.items()}
    return data | extra


def template(owner, credential, name="Orders", shared=False, body=None) -> ConversationTemplate:
    return ConversationTemplate.objects.create(
        name=name,
        provider=credential.provider,
        credential=credential,
        owner=owner,
        shared=shared,
        body=body if body is not None else {"FriendlyName": "Order", "Participant": [{"identity": "alice"}]},
    )


# --- saving from the new-conversation page -------------------------------------------------------


def test_save_as_template_keeps_the_body_the_form_would_send(support_client, support, twilio_cred):
    data = form(
        twilio_cred,
        {"FriendlyName": "Order 7", "UniqueName": "order-7", "Attributes": '{"tier": "gold"}'},
        [{"identity": "alice"}, {"identity": ""}],
        _save_template="1",
        template_name="  Gold   orders ",
        template_shared="1",
    )
    response = support_client.post(NEW, data)
    assert response.status_code == 200
    assert "Saved as template “Gold orders” (visible to everyone who creates conversations)." in (
        response.content.decode()
    )
    saved = ConversationTemplate.objects.get()
    assert (saved.name, saved.provider, saved.credential, saved.owner, saved.shared) == (
        "Gold orders",
        "twilio",
        twilio_cred,
        support,
        True,
    )
    assert saved.body == {
        "FriendlyName": "Order 7",
        "UniqueName": "order-7",
        "Attributes": '{"tier": "gold"}',
        "Participant": [{"identity": "alice"}],
    }
    event = AuditEvent.objects.get(event_type=EventType.TEMPLATE_SAVED)
    assert event.actor == support and event.target_id == str(saved.pk)
    assert event.extra == {
        "name": "Gold orders",
        "provider": "twilio",
        "credential": "Twilio main",
        "shared": True,
    }


def test_an_invalid_form_can_still_be_saved_and_nothing_is_sent(support_client, twilio_cred):
    data = form(twilio_cred, {"State": "closed"}, _save_template="1", template_name="Draft")
    assert "Saved as template “Draft”" in support_client.post(NEW, data).content.decode()
    assert ConversationTemplate.objects.get().body == {"State": "closed"}


def test_a_name_the_user_already_has_is_refused_with_a_message(support_client, support, twilio_cred):
    template(support, twilio_cred, name="Orders")
    data = form(twilio_cred, {"FriendlyName": "x"}, _save_template="1", template_name="Orders")
    page = support_client.post(NEW, data).content.decode()
    assert "You already have a template named “Orders”: choose another name." in page
    assert ConversationTemplate.objects.count() == 1
    assert not AuditEvent.objects.filter(event_type=EventType.TEMPLATE_SAVED).exists()


def test_another_user_may_use_the_same_name(support_client, admin, twilio_cred):
    template(admin, twilio_cred, name="Orders", shared=True)
    data = form(twilio_cred, {"FriendlyName": "x"}, _save_template="1", template_name="Orders")
    assert (
        "Saved as template “Orders” (visible to you only)." in support_client.post(NEW, data).content.decode()
    )


def test_a_template_needs_a_name(support_client, twilio_cred):
    data = form(twilio_cred, {"FriendlyName": "x"}, _save_template="1", template_name="  ")
    assert "Give the template a name." in support_client.post(NEW, data).content.decode()
    assert not ConversationTemplate.objects.exists()


def test_a_template_never_holds_a_secret():
    body = {
        "topic": "t",
        "threads": [{"posts": [{"client_secret": "s3cret", "Token": "x", "body": {"content": "hi"}}]}],
    }
    assert without_secrets(body) == {"topic": "t", "threads": [{"posts": [{"body": {"content": "hi"}}]}]}


def test_an_auditor_cannot_save_a_template(auditor_client, twilio_cred):
    data = form(twilio_cred, {"FriendlyName": "x"}, _save_template="1", template_name="Nope")
    assert auditor_client.post(NEW, data).status_code == 403
    assert not ConversationTemplate.objects.exists()


# --- starting from a template --------------------------------------------------------------------


def test_start_from_template_fills_the_form_but_not_the_unique_name(support_client, support, twilio_cred):
    saved = template(
        support,
        twilio_cred,
        body={
            "FriendlyName": "Order",
            "UniqueName": "order-1",
            "Participant": [{"identity": "alice"}, {"messaging_binding": {"address": "+15558675310"}}],
        },
    )
    page = support_client.get(NEW, {"template": saved.pk}).content.decode()
    assert (
        "From template “Orders”." in page
        and "Cleared, as each conversation needs its own: Unique name." in page
    )
    assert re.search(r'name="FriendlyName"[^>]*value="Order"', page)
    assert re.search(r'name="participants-0-identity"[^>]*value="alice"', page)
    assert re.search(r'name="participants-1-messaging_binding.address"[^>]*value="\+15558675310"', page)
    assert re.search(rf'<option value="{twilio_cred.pk}" selected>', page)
    assert "order-1" not in page


def test_a_template_with_fields_the_form_cannot_show_opens_as_json(support_client, support, twilio_cred):
    saved = template(
        support, twilio_cred, body={"FriendlyName": "Order", "DateCreated": "2026-01-02T03:04:05Z"}
    )
    page = support_client.get(NEW, {"template": saved.pk}).content.decode()
    assert "It has fields the form cannot show (DateCreated), so it opens as JSON." in page
    assert 'name="body_json"' in page and "2026-01-02T03:04:05Z" in page


def test_a_template_whose_credential_is_disabled_asks_for_another(support_client, support, twilio_cred):
    saved = template(support, twilio_cred)
    twilio_credential(label="Twilio other")
    twilio_credential(label="Twilio third")
    twilio_cred.disabled = True
    twilio_cred.save()
    page = support_client.get(NEW, {"template": saved.pk}).content.decode()
    assert "Its credential is disabled or gone: choose one." in page
    assert 'name="FriendlyName"' not in page


def test_a_template_whose_credential_is_gone_uses_the_only_other_one(support_client, support, twilio_cred):
    saved = template(support, twilio_cred)
    twilio_credential(label="Twilio other")
    twilio_cred.disabled = True
    twilio_cred.save()
    page = support_client.get(NEW, {"template": saved.pk}).content.decode()
    assert "Its credential is disabled or gone: “Twilio other” is used instead." in page
    assert re.search(r'name="FriendlyName"[^>]*value="Order"', page)


def test_someone_elses_private_template_cannot_be_used(support_client, admin, twilio_cred):
    private = template(admin, twilio_cred, shared=False)
    shared = template(admin, twilio_cred, name="Shared", shared=True)
    assert support_client.get(NEW, {"template": private.pk}).status_code == 404
    assert support_client.get(NEW, {"template": shared.pk}).status_code == 200
    assert support_client.get(NEW, {"template": "x"}).status_code == 404


# --- the list, rename and delete -----------------------------------------------------------------


def test_the_list_shows_shared_and_own_templates_only(support_client, support, admin, twilio_cred):
    template(support, twilio_cred, name="Mine")
    template(admin, twilio_cred, name="Team", shared=True)
    template(admin, twilio_cred, name="Admin private")
    page = support_client.get(LIST).content.decode()
    assert "Mine" in page and "Team" in page and "Admin private" not in page
    assert f"{NEW}?template=" in page


def test_an_auditor_reads_the_list_without_actions(auditor_client, admin, twilio_cred):
    saved = template(admin, twilio_cred, name="Team", shared=True)
    page = auditor_client.get(LIST).content.decode()
    assert "Team" in page and "Twilio main" in page
    assert f"/conversations/templates/{saved.pk}/delete/" not in page and "?template=" not in page
    assert auditor_client.post(f"{LIST}{saved.pk}/delete/").status_code == 403


def test_the_owner_renames_a_template_and_it_is_audited(support_client, support, twilio_cred):
    saved = template(support, twilio_cred, name="Old")
    response = support_client.post(f"{LIST}{saved.pk}/rename/", {"name": "New"}, follow=True)
    assert "Template “Old” renamed to “New”." in response.content.decode()
    saved.refresh_from_db()
    assert saved.name == "New"
    event = AuditEvent.objects.get(event_type=EventType.TEMPLATE_RENAMED)
    assert event.extra == {"old": "Old", "new": "New"} and event.actor == support


def test_a_rename_to_a_taken_name_is_refused(support_client, support, twilio_cred):
    template(support, twilio_cred, name="A")
    b = template(support, twilio_cred, name="B")
    response = support_client.post(f"{LIST}{b.pk}/rename/", {"name": "A"}, follow=True)
    assert "“B” was not renamed: You already have a template named “A”" in response.content.decode()
    b.refresh_from_db()
    assert b.name == "B"


def test_only_the_owner_or_an_administrator_changes_a_shared_template(
    support_client, admin_client, admin, support, twilio_cred
):
    other = UserFactory(username="sue-support", role="Support")
    shared = template(other, twilio_cred, name="Team", shared=True)
    assert support_client.post(f"{LIST}{shared.pk}/rename/", {"name": "Mine"}).status_code == 403
    assert support_client.post(f"{LIST}{shared.pk}/delete/").status_code == 403
    response = admin_client.post(f"{LIST}{shared.pk}/delete/", follow=True)
    assert "Template “Team” deleted." in response.content.decode()
    assert not ConversationTemplate.objects.exists()
    event = AuditEvent.objects.get(event_type=EventType.TEMPLATE_DELETED)
    assert event.actor == admin
    assert event.extra == {"name": "Team", "provider": "twilio", "owner": "sue-support"}


def test_delete_needs_a_post(support_client, support, twilio_cred):
    saved = template(support, twilio_cred)
    assert support_client.get(f"{LIST}{saved.pk}/delete/").status_code == 405
    assert ConversationTemplate.objects.filter(pk=saved.pk).exists()


def test_a_graph_template_round_trips_through_the_form(support_client, support):
    credential = graph_credential()
    data = form(
        credential,
        {
            "topic": "Launch",
            "threads.0.posts.0.body.contentType": "text",
            "threads.0.posts.0.body.content": "Hi",
        },
        [{"emailAddress.address": "adele@contoso.com"}],
        _save_template="1",
        template_name="Launch",
    )
    support_client.post(NEW, data)
    saved = ConversationTemplate.objects.get()
    page = support_client.get(NEW, {"template": saved.pk}).content.decode()
    assert re.search(r'name="topic"[^>]*value="Launch"', page)
    assert re.search(r'name="participants-0-emailAddress.address"[^>]*value="adele@contoso.com"', page)
