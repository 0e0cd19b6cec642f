"""The new-conversation page: steps, participant rows, inline validation, preview and submit."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from convadmin.audit.models import AuditEvent, EventType
from convadmin.conversations.models import Conversation, Status
from tests.create_support import (
    CH,
    GRAPH_GROUP,
    HL_LOCATION,
    MIXIN,
    MIXIN_OTHER,
    MIXIN_USER,
    TWILIO,
    assert_no_secret,
    graph_credential,
    highlevel_credential,
    mixin_conversation,
    mixin_credential,
    twilio_conversation,
    twilio_credential,
    twilio_error,
    twilio_members,
)
from tests.factories import ConversationFactory, CredentialFactory

pytestmark = pytest.mark.django_db
URL = "/conversations/new/"
VALIDATE_URL = "/conversations/new/validate/"
ADD_URL = "/conversations/new/rows/add/"
REMOVE_URL = "/conversations/new/rows/remove/"


@pytest.fixture
def twilio_cred():
    return twilio_credential(label="Twilio main")


def form_data(credential, fields=None, rows=(), **extra) -> dict[str, str]:
    data = {
        "provider": credential.provider,
        "credential": str(credential.pk),
        "idempotency_key": extra.pop("key", str(uuid.uuid4())),
        "participants-TOTAL_FORMS": str(extra.pop("total", len(rows))),
        "participants-INITIAL_FORMS": "0",
    }
    data.update(fields or {})
    for index, row in rows:
        data.update({f"participants-{index}-{name}": value for name, value in row.items()})
    data.update(extra)
    return data


def text(response) -> str:
    return response.content.decode()


# --- access -------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/conversations/new/")


def test_htmx_anonymous_gets_a_client_redirect(client, htmx_headers):
    response = client.post(URL, {"_validate_field": "FriendlyName"}, headers=htmx_headers)
    assert response["HX-Redirect"].startswith("/accounts/login/")


@pytest.mark.parametrize("who", ["auditor_client", "outsider_client"])
def test_only_support_and_administrators_may_create(request, who, twilio_cred):
    client = request.getfixturevalue(who)
    assert client.get(URL).status_code == 403
    assert client.post(URL, form_data(twilio_cred, {"FriendlyName": "x"})).status_code == 403
    assert Conversation.objects.count() == 0


@pytest.mark.parametrize("who", ["support_client", "admin_client"])
def test_support_and_administrators_see_the_page(request, who):
    response = request.getfixturevalue(who).get(URL)
    assert response.status_code == 200
    assert '<label for="id_provider">Provider</label>' in text(response)


# --- step 1: provider and credential ------------------------------------------------------------


def test_choosing_a_provider_with_one_credential_selects_it_and_shows_its_fields(support_client, twilio_cred):
    response = support_client.get(URL, {"provider": "twilio"})
    page = text(response)
    assert f'<option value="{twilio_cred.pk}" selected>Twilio main</option>' in page
    assert 'id="conversation-form"' in page
    assert '<label for="id_FriendlyName">Friendly name</label>' in page
    assert 'id="participant-0"' in page
    assert ">Add participant</button>" in page
    assert ">Preview request</button>" in page
    assert ">Create conversation</button>" in page


def test_the_htmx_step_is_a_fragment_and_pushes_a_reloadable_url(support_client, htmx_headers, twilio_cred):
    response = support_client.get(URL, {"provider": "twilio"}, headers=htmx_headers)
    assert "<html" not in text(response)
    assert 'id="conversation-form"' in text(response)
    assert response["HX-Push-Url"] == f"{URL}?provider=twilio&credential={twilio_cred.pk}"
    assert "HX-Request" in response["Vary"]
    reloaded = support_client.get(response["HX-Push-Url"])
    assert "<html" in text(reloaded) and 'id="conversation-form"' in text(reloaded)


def test_switching_provider_selects_the_only_credential_of_the_new_one(
    support_client, htmx_headers, twilio_cred
):
    credential = mixin_credential()
    page = text(
        support_client.get(URL, {"provider": "mixin", "credential": twilio_cred.pk}, headers=htmx_headers)
    )
    assert f'<input type="hidden" name="credential" value="{credential.pk}">' in page
    assert '<label for="id_category">Category' in page


def test_only_enabled_credentials_of_the_provider_are_offered(support_client, twilio_cred):
    twilio_credential(label="Old Twilio", disabled=True)
    mixin_credential()
    twilio_credential(label="Twilio second")
    page = text(support_client.get(URL, {"provider": "twilio"}))
    assert "Twilio main" in page and "Twilio second" in page
    assert "Old Twilio" not in page and "Mixin bot" not in page
    assert 'id="conversation-form"' not in page  # two to choose from: nothing chosen yet


def test_a_provider_without_credential_says_to_ask_an_administrator(support_client, admin_client):
    support_page = text(support_client.get(URL, {"provider": "mixin"}))
    assert "No credential for Mixin Messenger — ask an administrator" in support_page
    assert 'href="/credentials/"' not in support_page.split('id="no-credential"')[1][:200]
    admin_page = text(admin_client.get(URL, {"provider": "mixin"}))
    assert "Add a credential</a>" in admin_page


def test_highlevel_has_no_participant_rows_and_shows_the_credentials_location(support_client):
    credential = highlevel_credential()
    page = text(support_client.get(URL, {"provider": "highlevel", "credential": credential.pk}))
    assert 'id="participant-rows"' not in page
    assert (
        '<label for="id_contactId">Contact ID<span class="req" aria-hidden="true"> *</span></label>' in page
    )
    assert f'placeholder="{HL_LOCATION} (the credential&#x27;s)"' in page


# --- participant rows ---------------------------------------------------------------------------


def test_add_row_returns_one_focused_row_and_the_new_total(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, rows=[(0, {"identity": "alice"})], _add_row="1")
    response = support_client.post(ADD_URL, data, headers=htmx_headers)
    page = text(response)
    assert "<html" not in page
    assert page.count('class="participant-row"') == 1
    assert 'id="participant-1"' in page
    assert re.search(r'<input type="text" name="participants-1-identity"[^>]*data-autofocus', page)
    assert (
        '<input type="hidden" name="participants-TOTAL_FORMS" value="2" id="id_participants-TOTAL_FORMS" '
        'hx-swap-oob="true">'
    ) in page
    assert "Participant 2" in page


def test_add_row_after_a_removal_uses_a_fresh_index(support_client, htmx_headers, twilio_cred):
    data = form_data(
        twilio_cred, rows=[(0, {"identity": "a"}), (2, {"identity": "c"})], total=3, _add_row="1"
    )
    page = text(support_client.post(ADD_URL, data, headers=htmx_headers))
    assert 'id="participant-3"' in page
    assert "Participant 3" in page  # the third row on screen


def test_add_row_stops_at_the_providers_limit(support_client, htmx_headers, twilio_cred):
    rows = [(i, {"identity": f"user{i}"}) for i in range(10)]
    page = text(
        support_client.post(ADD_URL, form_data(twilio_cred, rows=rows, _add_row="1"), headers=htmx_headers)
    )
    assert 'class="participant-row"' not in page
    assert "Twilio Conversations takes at most 10 participants per request." in page
    assert re.search(r'id="add-participant"[^>]*disabled', page, re.S)


def test_remove_row_gives_focus_back_to_the_add_button(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, rows=[(0, {"identity": "a"}), (1, {"identity": "b"})], _remove_row="1")
    page = text(support_client.post(REMOVE_URL, data, headers=htmx_headers))
    assert "<html" not in page
    assert 'class="participant-row"' not in page
    assert re.search(r'id="participant-tools"[^>]*hx-swap-oob="true"', page)
    assert re.search(r'id="add-participant"[^>]*data-autofocus', page, re.S)


def test_without_javascript_rows_are_added_and_removed_by_reloading_the_form(support_client, twilio_cred):
    added = text(
        support_client.post(URL, form_data(twilio_cred, rows=[(0, {"identity": "a"})], _add_row="1"))
    )
    assert "<html" in added and 'id="participant-1"' in added and 'value="a"' in added
    data = form_data(twilio_cred, rows=[(0, {"identity": "a"}), (1, {"identity": "b"})], _remove_row="0")
    removed = text(support_client.post(URL, data))
    assert 'id="participant-1"' not in removed
    assert 'name="participants-0-identity" value="b"' in removed.replace("\n", " ") or re.search(
        r'name="participants-0-identity"[^>]*value="b"', removed
    )
    assert Conversation.objects.count() == 0


# --- inline validation --------------------------------------------------------------------------


def test_leaving_a_participant_field_returns_only_its_error_container(
    support_client, htmx_headers, twilio_cred
):
    data = form_data(
        twilio_cred,
        rows=[(0, {"messaging_binding.address": "555-1234"})],
        _validate_field="participants-0-messaging_binding.address",
    )
    page = text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))
    assert page.startswith('<div class="field-errors" id="err-participants-0-messaging_binding-address"')
    assert "is not a phone number in E.164 form" in page
    assert 'role="alert"' in page
    assert "<input" not in page and "<select" not in page and "<textarea" not in page


def test_a_valid_field_clears_its_errors_and_its_neighbours(support_client, htmx_headers, twilio_cred):
    data = form_data(
        twilio_cred, rows=[(0, {"identity": "alice"})], _validate_field="participants-0-identity"
    )
    page = text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))
    assert page.startswith(
        '<div class="field-errors" id="err-participants-0-identity" data-error-for="id_participants-0-identity"></div>'
    )
    assert (
        'id="err-participants-0-attributes" data-error-for="id_participants-0-attributes" hx-swap-oob="true"></div>'
        in page
    )
    assert "<input" not in page


def test_a_blank_row_is_not_an_error(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, rows=[(0, {"identity": ""})], _validate_field="participants-0-identity")
    page = text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))
    assert "errorlist" not in page


def test_leaving_a_body_field_checks_the_providers_rule_for_it(support_client, htmx_headers, twilio_cred):
    data = form_data(
        twilio_cred, {"Attributes": "{not json", "Timers.Inactive": "PT1H"}, _validate_field="Attributes"
    )
    page = text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))
    assert page.startswith('<div class="field-errors" id="err-Attributes"')
    assert "Attributes must be valid JSON" in page
    assert "Set State" not in page  # a rule of another field waits until that field or the submit
    assert "<textarea" not in page


def test_mixin_row_is_checked_by_the_same_rule_as_the_cli(support_client, htmx_headers):
    credential = mixin_credential()
    data = form_data(
        credential,
        {"category": "GROUP"},
        rows=[(3, {"user_id": "bob"})],
        _validate_field="participants-3-user_id",
    )
    page = text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))
    assert "User id must be a UUID" in page


def test_inputs_and_row_buttons_post_to_their_own_small_views(support_client, twilio_cred):
    page = text(support_client.get(f"{URL}?provider=twilio&credential={twilio_cred.pk}"))
    assert re.search(r'name="FriendlyName"[^>]*hx-post="/conversations/new/validate/"', page)
    assert re.search(r'name="participants-0-identity"[^>]*hx-post="/conversations/new/validate/"', page)
    assert re.search(r'id="add-participant"\s+hx-post="/conversations/new/rows/add/"', page)
    assert re.search(r'name="_remove_row" value="0"[^>]*\s+hx-post="/conversations/new/rows/remove/"', page)


def test_leaving_a_field_of_a_page_from_before_creates_nothing(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, {"FriendlyName": "ok"}, _validate_field="FriendlyName")
    assert support_client.post(URL, data, headers=htmx_headers).status_code == 400
    assert Conversation.objects.count() == 0


def test_unknown_field_or_missing_credential_is_a_bad_request(support_client, htmx_headers, twilio_cred):
    assert (
        support_client.post(
            VALIDATE_URL, form_data(twilio_cred, _validate_field="nope"), headers=htmx_headers
        ).status_code
        == 400
    )
    assert (
        support_client.post(
            VALIDATE_URL, {"_validate_field": "FriendlyName"}, headers=htmx_headers
        ).status_code
        == 400
    )


# --- submit: errors at the field ----------------------------------------------------------------


def test_whole_form_errors_land_on_the_participant_row_that_caused_them(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    rows = [(0, {"identity": "alice"}), (2, {"identity": "alice"})]  # row 1 was removed
    data = form_data(twilio_cred, {"Timers.Inactive": "PT1H"}, rows=rows, total=3)
    response = support_client.post(URL, data, headers=htmx_headers)
    page = text(response)
    assert "<html" not in page
    assert re.search(r'name="participants-1-identity"[^>]*aria-invalid="true"', page)  # renumbered: no gap
    assert "already given for another participant" in page
    assert re.search(r'name="State"[^>]*aria-invalid="true"', page)
    assert "Choose a State when a timer is set" in page
    assert 'id="error-summary"' in page and 'href="#id_participants-1-identity"' in page
    assert Conversation.objects.count() == 0
    assert not respx_mock.calls


def test_count_rules_are_shown_above_the_participants(support_client, htmx_headers, respx_mock):
    credential = mixin_credential()
    rows = [(0, {"user_id": MIXIN_USER}), (1, {"user_id": MIXIN_OTHER})]
    page = text(
        support_client.post(
            URL, form_data(credential, {"category": "CONTACT"}, rows=rows), headers=htmx_headers
        )
    )
    box = page.split('id="participants-errors"')[1].split("</div>")[0]
    assert "A CONTACT conversation has exactly 1 participant" in box


def test_blank_rows_are_skipped(support_client, htmx_headers, twilio_cred, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(201, json=twilio_conversation())
    data = form_data(twilio_cred, {"FriendlyName": "Order 123"}, rows=[(0, {"identity": ""})])
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Conversation created" in page
    record = Conversation.objects.get()
    assert record.request_body == {
        "FriendlyName": "Order 123",
        "UniqueName": f"convadmin-{record.idempotency_key}",
    }


def test_graph_fields_and_rows_map_their_nested_paths(support_client, htmx_headers, respx_mock):
    credential = graph_credential()
    page = text(support_client.get(URL, {"provider": "msgraph"}))
    assert '<label for="id_threads.0.posts.0.body.content">First message' in page
    assert 'hx-target="#err-threads-0-posts-0-body-content"' in page
    assert f'placeholder="{GRAPH_GROUP} (the credential&#x27;s)"' in page
    rows = [
        (0, {"emailAddress.address": "adele@contoso.com"}),
        (1, {"emailAddress.name": "Bob", "emailAddress.address": "bob"}),
    ]
    data = form_data(credential, {"threads.0.posts.0.body.contentType": "text"}, rows=rows)
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert re.search(r'name="topic"[^>]*aria-invalid="true"', page)
    assert re.search(r'name="threads.0.posts.0.body.content"[^>]*aria-invalid="true"', page)
    assert re.search(r'name="participants-1-emailAddress.address"[^>]*aria-invalid="true"', page)
    assert not re.search(r'name="participants-0-emailAddress.address"[^>]*aria-invalid', page)
    assert not respx_mock.calls


# --- preview ------------------------------------------------------------------------------------


def test_preview_shows_the_redacted_request_and_a_curl_with_placeholders(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    data = form_data(
        twilio_cred, {"FriendlyName": "Order 123"}, rows=[(0, {"identity": "alice"})], _preview="1"
    )
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "<html" not in page
    assert "POST https://conversations.twilio.com/v1/ConversationWithParticipants" in page
    assert "Authorization: Basic [redacted]" in page
    assert "-u &quot;$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN&quot;" in page
    assert 'data-copy-target="curl-command"' in page
    assert_no_secret(page)
    assert not respx_mock.calls
    assert Conversation.objects.count() == 0


def test_preview_of_an_invalid_form_shows_the_errors_at_the_fields(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, {"State": "closed"}, _preview="1")
    response = support_client.post(URL, data, headers=htmx_headers)
    assert response["HX-Retarget"] == "#step2"
    assert re.search(
        r'name="State"[^>]*aria-invalid="true"', text(response)
    ) or "cannot be created closed" in text(response)


def test_preview_without_javascript_renders_the_page(support_client, twilio_cred):
    data = form_data(twilio_cred, {"FriendlyName": "x"}, _preview="1")
    page = text(support_client.post(URL, data))
    assert "<html" in page and "Request preview" in page


# --- submit: the outcome ------------------------------------------------------------------------


def test_a_created_conversation_appears_in_place_with_a_link(
    support_client, htmx_headers, twilio_cred, respx_mock, support
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(202, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    data = form_data(twilio_cred, {"FriendlyName": "Order 123"}, rows=[(0, {"identity": "alice"})])
    response = support_client.post(URL, data, headers={**htmx_headers, "REMOTE_ADDR": "10.1.2.3"})
    page = text(response)
    conversation = Conversation.objects.get()
    assert "<html" not in page
    assert "Conversation created" in page and CH in page
    assert f'href="/conversations/{conversation.pk}/"' in page
    assert conversation.created_by == support
    assert AuditEvent.objects.get(event_type=EventType.CONVERSATION_REQUESTED).actor == support
    assert_no_secret(page)


def test_without_javascript_the_submit_redirects_to_the_record(support_client, twilio_cred, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(201, json=twilio_conversation())
    response = support_client.post(URL, form_data(twilio_cred, {"FriendlyName": "Order 123"}))
    conversation = Conversation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/conversations/{conversation.pk}/"


def test_a_double_submit_creates_one_record(support_client, htmx_headers, twilio_cred, respx_mock):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    data = form_data(twilio_cred, {"FriendlyName": "Order 123"})
    first = support_client.post(URL, data, headers=htmx_headers)
    second = support_client.post(URL, data, headers=htmx_headers)
    assert Conversation.objects.count() == 1
    assert route.call_count == 1
    assert "Conversation created" in text(first) and "Conversation created" in text(second)
    again_without_js = support_client.post(URL, data)
    assert again_without_js["Location"] == f"/conversations/{Conversation.objects.get().pk}/"


def test_a_provider_refusal_is_saved_and_shown_verbatim_escaped(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(
        return_value=twilio_error(50353, "Unique name <b>order-123</b> already exists", 409)
    )
    key = str(uuid.uuid4())
    data = form_data(twilio_cred, {"UniqueName": "order-123"}, key=key)
    page = text(support_client.post(URL, data, headers=htmx_headers))
    conversation = Conversation.objects.get()
    assert conversation.status == Status.FAILED
    assert "Unique name &lt;b&gt;order-123&lt;/b&gt; already exists" in page
    assert "<b>order-123</b>" not in page
    assert "Code 50353 · HTTP 409" in page
    assert f'href="/conversations/{conversation.pk}/"' in page
    new_key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    assert new_key != key  # a corrected form can be sent again


def test_a_timeout_says_what_the_lookup_found(support_client, htmx_headers, twilio_cred, respx_mock):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-123").respond(
        404, json={"code": 20404, "message": "Not found", "status": 404}
    )
    page = text(
        support_client.post(URL, form_data(twilio_cred, {"UniqueName": "order-123"}), headers=htmx_headers)
    )
    assert "No clear answer from Twilio Conversations" in page
    assert "did not answer in time" in page
    assert "We looked it up at Twilio Conversations by its UniqueName and did not find it" in page


def test_a_timeout_without_a_unique_name_is_looked_up_by_the_one_we_generated(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(side_effect=httpx.ReadTimeout("slow"))
    key = str(uuid.uuid4())
    lookup = respx_mock.get(f"{TWILIO}/v1/Conversations/convadmin-{key}").respond(
        404, json={"code": 20404, "message": "not found", "status": 404}
    )
    data = form_data(twilio_cred, {"FriendlyName": "No key"}, key=key)
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert lookup.call_count == 1
    assert "did not find it" in page and "Check with provider" in page
    assert "checked in the Twilio Conversations console" not in page


def test_a_timeout_on_a_record_without_a_natural_key_sends_the_user_to_the_provider_console(support_client):
    failed = ConversationFactory(
        status=Status.FAILED,
        outcome_unknown=True,
        error_code="timeout",
        request_body={"FriendlyName": "From before keys were generated"},
    )
    page = text(support_client.get(f"/conversations/{failed.pk}/"))
    assert "It cannot be looked up" in page and "check at the provider directly" in page


def test_mixin_end_to_end_through_the_form(support_client, htmx_headers, respx_mock):
    credential = mixin_credential()
    route = respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    data = form_data(credential, {"category": "CONTACT"}, rows=[(0, {"user_id": MIXIN_USER, "role": ""})])
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Conversation created" in page
    assert route.call_count == 1
    assert_no_secret(page)


def test_a_disabled_credential_is_refused_at_submit(support_client, htmx_headers, respx_mock):
    credential = twilio_credential(disabled=True)
    page = text(support_client.post(URL, form_data(credential, {"FriendlyName": "x"}), headers=htmx_headers))
    assert "is disabled" in page
    assert Conversation.objects.count() == 0


# --- duplicate as new ---------------------------------------------------------------------------


def test_duplicate_as_new_prefills_fields_and_rows_but_not_unique_ids(support_client, twilio_cred):
    original = ConversationFactory(
        credential=twilio_cred,
        request_body={
            "FriendlyName": "Order 9",
            "UniqueName": "order-9",
            "Participant": [
                {"identity": "alice"},
                {"messaging_binding": {"address": "+15558675310", "proxy_address": "+15017122661"}},
            ],
        },
    )
    page = text(support_client.get(URL, {"from": original.pk}))
    assert re.search(r'name="FriendlyName"[^>]*value="Order 9"', page)
    assert "order-9" not in page
    assert re.search(r'name="participants-1-messaging_binding.address"[^>]*value="\+15558675310"', page)
    assert f"Copied from conversation {original.pk}." in page and "Unique name" in page


def test_duplicate_as_new_clears_a_mixin_conversation_id(support_client):
    credential = mixin_credential()
    original = ConversationFactory(
        credential=credential,
        request_body={
            "category": "GROUP",
            "conversation_id": "11111111-2222-3333-4444-555555555555",
            "name": "Team",
            "participants": [{"user_id": MIXIN_USER}],
        },
    )
    page = text(support_client.get(URL, {"from": original.pk}))
    assert "11111111-2222-3333-4444-555555555555" not in page
    assert re.search(r'name="name"[^>]*value="Team"', page)


def test_duplicate_of_an_unknown_record_is_not_found(support_client):
    assert support_client.get(URL, {"from": "999"}).status_code == 404


# --- secrets ------------------------------------------------------------------------------------


def test_no_page_or_fragment_ever_contains_a_secret(support_client, htmx_headers, respx_mock):
    twilio = twilio_credential()
    mixin = mixin_credential()
    highlevel = highlevel_credential()
    responses = [
        support_client.get(URL, {"provider": "twilio"}),
        support_client.get(URL, {"provider": "mixin"}, headers=htmx_headers),
        support_client.get(URL, {"provider": "highlevel"}),
        support_client.post(
            URL,
            form_data(mixin, {"category": "CONTACT"}, rows=[(0, {"user_id": MIXIN_USER})], _preview="1"),
            headers=htmx_headers,
        ),
        support_client.post(
            URL,
            form_data(highlevel, {"contactId": "rTDJGD7SjqDamyzrk5UW"}, _preview="1"),
            headers=htmx_headers,
        ),
        support_client.post(URL, form_data(twilio, {}, _preview="1")),
    ]
    for response in responses:
        assert response.status_code == 200
        assert_no_secret(text(response))
    assert CredentialFactory._meta.model.objects.count() == 3


def test_the_dashboard_leads_to_a_new_conversation_and_to_each_record(support_client, auditor_client):
    conversation = ConversationFactory(name="Order 7")
    page = text(support_client.get("/conversations/dashboard/"))
    assert '<a class="button primary" href="/conversations/new/">New conversation</a>' in page
    assert f'<a href="/conversations/{conversation.pk}/">Order 7</a>' in page
    assert 'class="button primary" href="/conversations/new/"' not in text(
        auditor_client.get("/conversations/dashboard/")
    )


# --- after a create: the key is spent (issue #10, item 2) -----------------------------------------


def test_a_changed_form_after_a_success_is_refused_naming_the_record(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    key = str(uuid.uuid4())
    first = text(
        support_client.post(URL, form_data(twilio_cred, {"FriendlyName": "A"}, key=key), headers=htmx_headers)
    )
    created = Conversation.objects.get()
    assert "Conversation created" in first
    assert 'name="idempotency_key"' not in first  # only the outcome comes back: the page keeps its key
    changed = form_data(twilio_cred, {"FriendlyName": "B"}, rows=[(0, {"identity": "bob"})], key=key)
    page = text(support_client.post(URL, changed, headers=htmx_headers))
    assert "Conversation created" not in page
    assert "Not sent: this form already created a conversation" in page
    assert f'href="/conversations/{created.pk}/">record {created.pk}</a>' in page
    assert "Create another like this" in page
    assert route.call_count == 1 and Conversation.objects.count() == 1


def test_the_same_form_again_after_a_success_says_nothing_was_sent_again(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    data = form_data(twilio_cred, {"FriendlyName": "A"})
    support_client.post(URL, data, headers=htmx_headers)
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Conversation created" in page and "nothing was sent again" in page
    assert route.call_count == 1


def test_create_another_like_this_keeps_the_fields_with_a_fresh_key(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    key = str(uuid.uuid4())
    fields = {"FriendlyName": "A", "UniqueName": "order-a"}
    rows = [(0, {"identity": "alice"})]
    support_client.post(URL, form_data(twilio_cred, fields, rows=rows, key=key), headers=htmx_headers)
    page = text(
        support_client.post(
            URL, form_data(twilio_cred, fields, rows=rows, key=key, _another="1"), headers=htmx_headers
        )
    )
    new_key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    assert new_key != key
    assert 'value="A"' in page and 'value="alice"' in page
    assert (
        'value="order-a"' not in page and "Cleared, as each conversation needs its own: Unique name" in page
    )
    assert "Conversation created" not in page
    data = form_data(twilio_cred, {"FriendlyName": "B"}, rows=rows, key=new_key)
    assert "Conversation created" in text(support_client.post(URL, data, headers=htmx_headers))
    assert route.call_count == 2 and Conversation.objects.count() == 2


def test_the_success_panel_offers_both_ways_to_create_another(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(201, json=twilio_conversation())
    page = text(support_client.post(URL, form_data(twilio_cred, {"FriendlyName": "A"}), headers=htmx_headers))
    assert ">Create another</a>" in page
    assert 'name="_another"' in page and "Create another like this" in page


def test_a_mixin_group_double_submit_without_an_id_still_creates_one(
    support_client, htmx_headers, respx_mock
):
    credential = mixin_credential()
    route = respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    data = form_data(
        credential, {"category": "GROUP", "name": "Team"}, rows=[(0, {"user_id": MIXIN_USER, "role": ""})]
    )
    support_client.post(URL, data, headers=htmx_headers)
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Conversation created" in page and "Not sent" not in page
    assert route.call_count == 1


# --- empty Twilio create, Enter (item 8) --------------------------------------------------------


def test_an_empty_twilio_form_asks_before_sending(support_client, htmx_headers, twilio_cred, respx_mock):
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    data = form_data(twilio_cred, rows=[(0, {"identity": ""})])
    page = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Create a conversation with no name and no participants?" in page
    assert not route.called and Conversation.objects.count() == 0
    page = text(support_client.post(URL, {**data, "_confirm_empty": "1"}, headers=htmx_headers))
    assert "Conversation created" in page
    assert route.call_count == 1


def test_enter_in_a_field_previews_rather_than_creates(support_client, twilio_cred):
    page = text(support_client.get(f"{URL}?provider=twilio&credential={twilio_cred.pk}"))
    form = page[page.index('<form id="conversation-form"') :]
    first_button = re.search(r"<button[^>]*>", form).group(0)  # the one Enter presses
    assert 'name="_preview"' in first_button and 'hx-target="#preview"' in first_button


# --- the summary follows the fields (item 7), legends renumber (item 10) --------------------------


def test_the_error_summary_follows_the_fields_as_they_are_fixed(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    bad = {"Timers.Inactive": "PT5S", "MessagingServiceSid": "nope"}
    page = text(support_client.post(URL, form_data(twilio_cred, bad), headers=htmx_headers))
    assert "Fix these 3 problems" in page and 'name="_summary"' in page
    # The user fixes the timer; the box (sent back out of band) loses that line.
    fixed_one = {"Timers.Inactive": "PT1H", "MessagingServiceSid": "nope", "State": "active"}
    data = form_data(twilio_cred, fixed_one, _validate_field="Timers.Inactive", _summary="1")
    fragment = text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))
    assert 'id="error-summary-box" hx-swap-oob="true"' in fragment
    assert "Fix this problem before sending" in fragment and "Messaging Service SID" in fragment
    assert "data-autofocus" not in fragment  # never steals focus from the field being typed in
    # Every field fixed: the box empties.
    good = {"FriendlyName": "ok"}
    fragment = text(
        support_client.post(
            VALIDATE_URL,
            form_data(twilio_cred, good, _validate_field="FriendlyName", _summary="1"),
            headers=htmx_headers,
        )
    )
    assert 'id="error-summary-box" hx-swap-oob="true">' in fragment and "Fix " not in fragment


def test_a_successful_preview_clears_the_summary(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, {"FriendlyName": "ok"}, _preview="1")
    fragment = text(support_client.post(URL, data, headers=htmx_headers))
    assert "Request preview" in fragment
    assert 'id="error-summary-box" hx-swap-oob="true"' in fragment and "Fix " not in fragment
    assert 'id="participants-errors" hx-swap-oob="true"' in fragment


def test_without_a_summary_leaving_a_field_sends_only_its_errors(support_client, htmx_headers, twilio_cred):
    data = form_data(twilio_cred, {"FriendlyName": "ok"}, _validate_field="FriendlyName")
    assert "error-summary-box" not in text(support_client.post(VALIDATE_URL, data, headers=htmx_headers))


def test_removing_a_row_renumbers_the_legends_left(support_client, htmx_headers, twilio_cred):
    rows = [(0, {"identity": "a"}), (1, {"identity": "b"}), (2, {"identity": "c"}), (3, {"identity": "d"})]
    data = form_data(twilio_cred, rows=rows, _remove_row="1")
    fragment = text(support_client.post(REMOVE_URL, data, headers=htmx_headers))
    assert '<legend id="legend-0" hx-swap-oob="true">Participant 1</legend>' in fragment
    assert '<legend id="legend-2" hx-swap-oob="true">Participant 2</legend>' in fragment
    assert '<legend id="legend-3" hx-swap-oob="true">Participant 3</legend>' in fragment
    assert 'id="remove-label-3" hx-swap-oob="true"> participant 3<' in fragment
    assert "legend-1" not in fragment


# --- advice by failure kind (item 5) ------------------------------------------------------------


def test_a_rate_limit_says_to_wait_as_long_as_the_provider_asks(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        429, json={"code": 20429, "message": "Too Many Requests", "status": 429}, headers={"Retry-After": "7"}
    )
    page = text(support_client.post(URL, form_data(twilio_cred, {"FriendlyName": "x"}), headers=htmx_headers))
    assert "Wait 7 seconds, then create again" in page
    assert "Fix what the message says" not in page


def test_a_server_error_says_to_check_with_the_provider_not_to_fix_fields(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        500, json={"code": 20500, "message": "Internal Server Error", "status": 500}
    )
    respx_mock.get(f"{TWILIO}/v1/Conversations/order-9").respond(
        404, json={"code": 20404, "message": "Not found", "status": 404}
    )
    page = text(
        support_client.post(URL, form_data(twilio_cred, {"UniqueName": "order-9"}), headers=htmx_headers)
    )
    assert "answered with a server error (HTTP 500)" in page
    assert "“Check with provider” first" in page
    assert "Fix what the message says" not in page and "did not answer in time" not in page


def test_a_refusal_of_the_fields_still_says_to_fix_them(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(
        return_value=twilio_error(50353, "Conversation with provided unique name already exists", 409)
    )
    page = text(
        support_client.post(URL, form_data(twilio_cred, {"UniqueName": "order-1"}), headers=htmx_headers)
    )
    assert "Fix what the message says in the fields above" in page


def test_an_htmx_create_answers_with_the_outcome_only_and_clears_the_error_boxes(
    support_client, htmx_headers, twilio_cred, respx_mock
):
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(201, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}").respond(200, json=twilio_conversation())
    respx_mock.get(f"{TWILIO}/v1/Conversations/{CH}/Participants").respond(200, json=twilio_members("alice"))
    response = support_client.post(
        URL,
        form_data(twilio_cred, {"FriendlyName": "A"}, rows=[(0, {"identity": "alice"})]),
        headers=htmx_headers,
    )
    page = text(response)
    assert response["HX-Retarget"] == "#create-result"
    assert "Conversation created" in page
    assert 'name="FriendlyName"' not in page  # the fields the user typed stay as they are on the page
    # Error boxes left from an earlier attempt (and a stale preview) are emptied out of band.
    assert (
        '<div class="field-errors" id="err-FriendlyName" data-error-for="id_FriendlyName" hx-swap-oob="true"></div>'
        in page
    )
    assert 'id="err-participants-0-identity"' in page
    assert '<div id="error-summary-box" hx-swap-oob="true">' in page
    assert '<div id="preview" hx-swap-oob="true"></div>' in page
