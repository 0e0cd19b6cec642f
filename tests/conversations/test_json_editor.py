"""'Edit as JSON' on the new-conversation page: the body as text, checked by the provider's rules by JSON
path, previewed, created, saved as a template, and back to the form."""

from __future__ import annotations

import html
import json
import uuid
from urllib.parse import parse_qs

import pytest

from convadmin.conversations.models import Conversation
from convadmin.drafts.models import ConversationTemplate
from tests.create_support import (
    CH,
    TWILIO,
    assert_no_secret,
    twilio_conversation,
    twilio_credential,
    twilio_members,
)

pytestmark = pytest.mark.django_db
URL = "/conversations/new/"
VALIDATE = "/conversations/new/validate-json/"


@pytest.fixture
def cred():
    return twilio_credential(label="Twilio main")


def base(credential, **extra) -> dict[str, str]:
    return {
        "provider": credential.provider,
        "credential": str(credential.pk),
        "idempotency_key": str(uuid.uuid4()),
        **extra,
    }


def as_json(credential, body, **extra) -> dict[str, str]:
    return base(credential, mode="json", body_json=json.dumps(body), **extra)


def text(response) -> str:
    return html.unescape(response.content.decode())


def test_edit_as_json_shows_the_body_the_form_would_send(support_client, htmx_headers, cred):
    data = base(
        cred,
        FriendlyName="Order 5",
        **{"participants-TOTAL_FORMS": "1", "participants-0-identity": "alice"},
        _json_mode="1",
    )
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert 'name="body_json"' in page and 'name="mode" value="json"' in page
    body = json.loads(page.split('name="body_json"')[1].split(">", 1)[1].split("</textarea>")[0])
    assert body == {"FriendlyName": "Order 5", "Participant": [{"identity": "alice"}]}
    assert "Back to the form" in page and 'name="FriendlyName"' not in page


def test_errors_are_listed_at_their_json_path_with_the_form_label(support_client, htmx_headers, cred):
    body = {"FriendlyName": "x" * 300, "Participant": [{"identity": "a", "role_sid": "XX1"}], "Colour": "red"}
    page = text(support_client.post(VALIDATE, as_json(cred, body), headers=htmx_headers))
    assert "<html" not in page and 'id="json-errors"' in page
    assert "<code>FriendlyName</code> (Friendly name): The friendly name is 300 characters" in page
    assert "<code>Participant.0.role_sid</code> (Participant 1):" in page
    assert "<code>Colour</code>: Twilio has no parameter 'Colour'" in page


def test_text_that_is_not_json_is_named_with_its_place(support_client, htmx_headers, cred):
    data = base(cred, mode="json", body_json='{"FriendlyName": }')
    page = text(support_client.post(VALIDATE, data, headers=htmx_headers))
    assert "Not valid JSON: Expecting value (line 1, column 18)." in page
    data["body_json"] = "[1, 2]"
    assert "The body must be a JSON object" in text(support_client.post(VALIDATE, data, headers=htmx_headers))


def test_a_valid_body_says_so(support_client, htmx_headers, cred):
    body = {"FriendlyName": "Order", "DateCreated": "2026-01-02T03:04:05Z"}
    page = text(support_client.post(VALIDATE, as_json(cred, body), headers=htmx_headers))
    assert "Valid for Twilio Conversations." in page


def test_preview_in_json_mode_sends_fields_the_form_does_not_show(support_client, htmx_headers, cred):
    body = {"FriendlyName": "Order", "DateCreated": "2026-01-02T03:04:05Z", "Bindings.Email.Name": "Shop"}
    page = text(support_client.post(URL, as_json(cred, body, _preview="1"), headers=htmx_headers))
    assert "Request preview" in page and "curl -sS -X POST" in page
    assert "DateCreated=2026-01-02T03%3A04%3A05Z" in page and "Bindings.Email.Name=Shop" in page
    assert_no_secret(page)


def test_preview_of_an_invalid_body_shows_the_errors_and_keeps_the_text(support_client, htmx_headers, cred):
    body = {"FriendlyName": "Order", "DateCreated": "yesterday"}
    response = support_client.post(URL, as_json(cred, body, _preview="1"), headers=htmx_headers)
    page = text(response)
    assert response["HX-Retarget"] == "#step2"
    assert "<code>DateCreated</code>" in page and '"DateCreated": "yesterday"' in page
    assert "Request preview" not in page


def test_create_in_json_mode_sends_the_json_body(support_client, htmx_headers, cred, respx_mock):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        202, json=twilio_conversation()
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("a"))
    body = {
        "FriendlyName": "Order",
        "DateCreated": "2026-01-02T03:04:05Z",
        "Participant": [{"identity": "a"}],
    }
    page = text(support_client.post(URL, as_json(cred, body), headers=htmx_headers))
    assert "Conversation created" in page and CH in page
    sent = parse_qs(route.calls.last.request.content.decode())
    assert sent["DateCreated"] == ["2026-01-02T03:04:05Z"] and sent["Participant"] == ['{"identity":"a"}']
    assert Conversation.objects.get().request_body["DateCreated"] == "2026-01-02T03:04:05Z"


def test_an_invalid_body_creates_nothing(support_client, htmx_headers, cred, respx_mock):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants")
    page = text(support_client.post(URL, as_json(cred, {"State": "closed"}), headers=htmx_headers))
    assert "<code>State</code> (State): A conversation cannot be created closed" in page
    assert not route.called and not Conversation.objects.exists()


def test_back_to_the_form_fills_it_and_names_what_it_cannot_show(support_client, htmx_headers, cred):
    body = {
        "FriendlyName": "Order",
        "DateCreated": "2026-01-02T03:04:05Z",
        "Participant": [{"identity": "a"}],
    }
    page = text(support_client.post(URL, as_json(cred, body, _form_mode="1"), headers=htmx_headers))
    assert 'name="FriendlyName"' in page and 'value="Order"' in page
    assert 'name="participants-0-identity"' in page and 'value="a"' in page
    assert "The form cannot show DateCreated, so they were left out: the form will not send them." in page
    assert 'name="body_json"' not in page


def test_back_to_the_form_refuses_text_that_is_not_json(support_client, htmx_headers, cred):
    data = base(cred, mode="json", body_json="{oops", _form_mode="1")
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Not valid JSON" in page and 'name="body_json"' in page and "{oops" in page


def test_save_as_template_in_json_mode_keeps_fields_the_form_cannot_show(support_client, htmx_headers, cred):
    body = {"FriendlyName": "Order", "DateCreated": "2026-01-02T03:04:05Z"}
    data = as_json(cred, body, _save_template="1", template_name="Dated")
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Saved as template “Dated”" in page
    assert ConversationTemplate.objects.get().body == body


def test_create_another_like_this_in_json_mode_clears_the_unique_name(support_client, htmx_headers, cred):
    body = {"FriendlyName": "Order", "UniqueName": "order-1"}
    page = text(support_client.post(URL, as_json(cred, body, _another="1"), headers=htmx_headers))
    assert "Cleared, as each conversation needs its own: UniqueName." in page
    assert "order-1" not in page and '"FriendlyName": "Order"' in page


def test_an_auditor_cannot_validate_json(auditor_client, htmx_headers, cred):
    assert auditor_client.post(VALIDATE, as_json(cred, {}), headers=htmx_headers).status_code == 403
