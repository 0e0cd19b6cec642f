"""Twilio Conversations: credential, validation, exact wire format, responses, errors, redaction."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from providers import twilio
from providers.base import Credential, InvalidCredential, ProviderError
from providers.http import Http

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
KEY_SID = "SK" + "fedcba9876543210" * 2
KEY_SECRET = "kS3cr3tValueForTestsOnly0123456Z"
SERVICE = "IS" + "1" * 32
MG = "MG" + "a" * 32
CH = "CH" + "b" * 32
ROLE = "RL" + "c" * 32

AGENT = {"identity": "agent-7"}
SMS = {"messaging_binding": {"address": "+15558675310", "proxy_address": "+15017122661"}}
PARTICIPANT_VECTOR = (
    "Participant=%7B%22identity%22%3A%22agent-7%22%7D&Participant=%7B%22messaging_binding%22%3A%7B%22address"
    "%22%3A%22%2B15558675310%22%2C%22proxy_address%22%3A%22%2B15017122661%22%7D%7D"
)
VECTOR_BODY = {
    "FriendlyName": "Order 123",
    "UniqueName": "order-123",
    "MessagingServiceSid": "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "State": "active",
    "Timers.Inactive": "PT1H",
    "Timers.Closed": "P1D",
    "Participant": [AGENT, SMS],
}


def cred(**extra: str) -> Credential:
    return twilio.parse_credential({"account_sid": ACCOUNT, "auth_token": TOKEN, **extra})


def key_cred(**extra: str) -> Credential:
    return twilio.parse_credential(
        {"account_sid": ACCOUNT, "api_key_sid": KEY_SID, "api_key_secret": KEY_SECRET, **extra}
    )


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def conversation(state: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "sid": CH,
        "account_sid": ACCOUNT,
        "chat_service_sid": SERVICE,
        "messaging_service_sid": MG,
        "friendly_name": "Order 123",
        "unique_name": "order-123",
        "attributes": "{}",
        "state": state,
        "url": f"https://conversations.twilio.com/v1/Conversations/{CH}",
        **extra,
    }


def page(items: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    return {
        "meta": {"key": "participants", "page": 0, "page_size": 50, "next_page_url": next_url},
        "participants": items,
    }


def member(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "sid": f"MB{n:032d}",
        "conversation_sid": CH,
        "identity": None,
        "messaging_binding": None,
        **extra,
    }


def error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class Fake:
    """A MockTransport handler answering by (method, path); a list answers in turn."""

    def __init__(self, routes: dict[tuple[str, str], Any]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes[(request.method, request.url.path)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        status, data = answer
        return httpx.Response(status, json=data)


def http_for(credential: Credential, routes: dict[tuple[str, str], Any]) -> tuple[Http, Fake]:
    fake = Fake(routes)
    return Http(credential.secret_values(), transport=httpx.MockTransport(fake)), fake


def paths(errors: list[Any]) -> dict[str, str]:
    return {e.path: e.message for e in errors}


def errors_of(body: Any, credential: Credential | None = None) -> dict[str, str]:
    return paths(twilio.validate(body, credential))


def with_participants(*rows: Any, **extra: Any) -> dict[str, Any]:
    return {"Participant": list(rows), **extra}


CREATE = ("POST", "/v1/ConversationWithParticipants")
READ = ("GET", f"/v1/Conversations/{CH}")
MEMBERS = ("GET", f"/v1/Conversations/{CH}/Participants")


# --- credential ------------------------------------------------------------------------------------


def test_it_parses_an_auth_token_credential():
    credential = cred()
    assert credential.provider == "twilio"
    assert credential.settings == {"account_sid": ACCOUNT}
    assert credential.secrets == {"auth_token": TOKEN}


def test_it_parses_an_api_key_credential_with_settings():
    credential = key_cred(service_sid=SERVICE, region="IE1", edge="Dublin")
    assert credential.settings == {
        "account_sid": ACCOUNT,
        "api_key_sid": KEY_SID,
        "service_sid": SERVICE,
        "region": "ie1",
        "edge": "dublin",
    }
    assert credential.secrets == {"api_key_secret": KEY_SECRET}


def invalid(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidCredential) as caught:
        twilio.parse_credential(data)
    return paths(caught.value.errors)


def test_it_rejects_a_credential_that_is_not_an_object():
    assert "account_sid" in invalid(["AC"])


def test_it_requires_the_account_sid():
    assert invalid({"auth_token": TOKEN}) == {"account_sid": "Account SID is required."}


def test_it_rejects_a_malformed_account_sid():
    assert "32 hexadecimal" in invalid({"account_sid": "AC123", "auth_token": TOKEN})["account_sid"]


def test_it_explains_an_api_key_sid_given_as_account_sid():
    assert "api_key_sid" in invalid({"account_sid": KEY_SID, "auth_token": TOKEN})["account_sid"]


def test_it_requires_a_secret():
    assert "Auth Token, or an API key" in invalid({"account_sid": ACCOUNT})["auth_token"]


def test_it_rejects_both_an_auth_token_and_an_api_key():
    data = {"account_sid": ACCOUNT, "auth_token": TOKEN, "api_key_sid": KEY_SID, "api_key_secret": KEY_SECRET}
    assert "not both" in invalid(data)["auth_token"]


def test_it_requires_the_api_key_secret_with_the_key_sid():
    assert "api_key_secret" in invalid({"account_sid": ACCOUNT, "api_key_sid": KEY_SID})


def test_it_requires_the_api_key_sid_with_the_secret():
    assert "api_key_sid" in invalid({"account_sid": ACCOUNT, "api_key_secret": KEY_SECRET})


def test_it_rejects_a_malformed_api_key_sid():
    data = {"account_sid": ACCOUNT, "api_key_sid": ACCOUNT, "api_key_secret": KEY_SECRET}
    assert "account_sid" in invalid(data)["api_key_sid"]


def test_it_rejects_a_malformed_service_sid():
    assert (
        "IS followed"
        in invalid({"account_sid": ACCOUNT, "auth_token": TOKEN, "service_sid": MG})["service_sid"]
    )


def test_it_rejects_the_au1_region_which_has_no_conversations():
    assert (
        "AU1"
        in invalid({"account_sid": ACCOUNT, "auth_token": TOKEN, "region": "au1", "edge": "sydney"})["region"]
    )


def test_it_rejects_an_unknown_region():
    assert "region" in invalid(
        {"account_sid": ACCOUNT, "auth_token": TOKEN, "region": "mars1", "edge": "dublin"}
    )


def test_it_requires_an_edge_outside_us1():
    assert "dublin" in invalid({"account_sid": ACCOUNT, "auth_token": TOKEN, "region": "ie1"})["edge"]


def test_it_rejects_an_unknown_edge():
    assert "edge" in invalid({"account_sid": ACCOUNT, "auth_token": TOKEN, "region": "ie1", "edge": "paris"})


def test_it_rejects_base_url_together_with_a_region():
    data = {
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "region": "ie1",
        "edge": "dublin",
        "base_url": "https://x.io",
    }
    assert "base_url" in invalid(data)


def test_it_rejects_a_plain_http_base_url_on_a_public_host():
    assert "base_url" in invalid(
        {"account_sid": ACCOUNT, "auth_token": TOKEN, "base_url": "http://example.com"}
    )


def test_it_accepts_a_loopback_http_base_url():
    assert cred(base_url="http://127.0.0.1:8025/").settings["base_url"] == "http://127.0.0.1:8025"


# --- validation ------------------------------------------------------------------------------------


def test_the_documented_example_body_is_valid():
    assert twilio.validate(VECTOR_BODY, cred()) == []


def test_a_create_without_participants_is_valid():
    assert twilio.validate({}) == []
    assert twilio.validate({"FriendlyName": "Order 123"}) == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {"Participant": [None, 1, [], {"messaging_binding": 5}, {"identity": 5}, {"attributes": object()}]},
        {"FriendlyName": 5, "Attributes": 5, "State": [], "Timers.Inactive": {}, "Participant": "x"},
        {"Participant": [{"messaging_binding": {"address": 5, "proxy_address": None}}]},
        {1: 2},
    ],
)
def test_it_never_raises_on_garbage(body: Any):
    assert twilio.validate(body)  # errors, not an exception


def test_it_rejects_a_body_that_is_not_an_object():
    assert "body" in errors_of(["x"])


def test_it_rejects_unknown_parameters_and_suggests_the_right_name():
    errors = errors_of({"participants": []})
    assert "Did you mean Participant?" in errors["participants"]


def test_it_rejects_non_text_parameters():
    assert errors_of({"FriendlyName": 12})["FriendlyName"] == "FriendlyName must be text."


def test_it_rejects_a_friendly_name_over_256_characters():
    assert "256" in errors_of({"FriendlyName": "x" * 257})["FriendlyName"]
    assert errors_of({"FriendlyName": "x" * 256}) == {}


def test_it_rejects_a_unique_name_that_looks_like_a_conversation_sid():
    assert "50390" in errors_of({"UniqueName": CH})["UniqueName"]


def test_it_rejects_a_unique_name_over_256_characters():
    assert "256" in errors_of({"UniqueName": "u" * 257})["UniqueName"]


def test_it_rejects_a_date_that_is_not_iso_8601():
    assert "ISO 8601" in errors_of({"DateCreated": "16/12/2015"})["DateCreated"]


def test_it_rejects_a_date_without_time_zone():
    assert "DateUpdated" in errors_of({"DateUpdated": "2015-12-16T22:18:37"})
    assert errors_of({"DateCreated": "2015-12-16T22:18:37Z"}) == {}


def test_it_rejects_a_malformed_messaging_service_sid():
    assert "MG followed" in errors_of({"MessagingServiceSid": "MG123"})["MessagingServiceSid"]


def test_it_rejects_attributes_that_are_not_json():
    assert "valid JSON" in errors_of({"Attributes": "{order: 1}"})["Attributes"]


def test_it_rejects_attributes_over_16_kb():
    too_big = json.dumps({"x": "y" * 16384})
    assert "16384 bytes" in errors_of({"Attributes": too_big})["Attributes"]


def test_it_accepts_attributes_as_an_object():
    assert errors_of({"Attributes": {"order": 123}}) == {}


def test_it_rejects_attributes_of_another_type():
    assert "JSON" in errors_of({"Attributes": 12})["Attributes"]


def test_it_refuses_the_closed_state_at_creation():
    assert "50384" in errors_of({"State": "closed"})["State"]


def test_it_rejects_an_unknown_state():
    assert "initializing, inactive or active" in errors_of({"State": "open"})["State"]


def test_it_accepts_a_state_in_any_case_and_prepare_lowercases_it():
    assert errors_of({"State": "Active"}) == {}
    assert twilio.prepare({"State": "Active"}, cred()) == {"State": "active"}


def test_it_rejects_a_timer_that_is_not_an_iso_8601_duration():
    assert (
        "ISO 8601 duration" in errors_of({"State": "active", "Timers.Inactive": "1 hour"})["Timers.Inactive"]
    )
    assert "Timers.Closed" in errors_of({"State": "active", "Timers.Closed": "PT"})


def test_it_rejects_an_inactive_timer_under_one_minute():
    assert "PT1M" in errors_of({"State": "active", "Timers.Inactive": "PT59S"})["Timers.Inactive"]
    assert errors_of({"State": "active", "Timers.Inactive": "PT1M"}) == {}


def test_it_rejects_a_closed_timer_under_ten_minutes():
    assert "PT10M" in errors_of({"State": "active", "Timers.Closed": "PT9M"})["Timers.Closed"]
    assert errors_of({"State": "active", "Timers.Closed": "PT10M"}) == {}


def test_it_requires_state_when_a_timer_is_set():
    assert "50382" in errors_of({"Timers.Closed": "P1D"})["State"]


def test_it_rejects_a_malformed_email_binding():
    assert "e-mail" in errors_of({"Bindings.Email.Address": "nobody"})["Bindings.Email.Address"]


def test_it_rejects_participants_that_are_not_a_list():
    assert "list" in errors_of({"Participant": AGENT})["Participant"]


def test_it_rejects_more_than_ten_participants():
    rows = [{"identity": f"user-{n}"} for n in range(11)]
    assert "at most 10" in errors_of(with_participants(*rows))["Participant"]
    assert errors_of(with_participants(*rows[:10])) == {}


def test_it_rejects_a_participant_given_as_a_json_string():
    assert "not a string" in errors_of(with_participants(json.dumps(AGENT)))["Participant.0"]


def test_it_rejects_a_participant_that_is_not_an_object():
    assert "object" in errors_of(with_participants(7))["Participant.0"]


def test_it_rejects_an_unknown_participant_field():
    assert (
        "Did you mean identity?" in errors_of(with_participants({"Identity": "a"}))["Participant.0.Identity"]
    )


def test_it_explains_that_the_binding_is_a_nested_object():
    errors = errors_of(with_participants({"MessagingBinding.Address": "+15558675310"}))
    assert "nested object" in errors["Participant.0.MessagingBinding.Address"]


def test_it_rejects_an_identity_that_is_not_text():
    assert (
        errors_of(with_participants({"identity": 5}))["Participant.0.identity"]
        == "The identity must be text."
    )


def test_it_rejects_an_identity_over_256_characters():
    assert "256" in errors_of(with_participants({"identity": "a" * 257}))["Participant.0.identity"]


def test_it_rejects_a_binding_that_is_not_an_object():
    errors = errors_of(with_participants({"messaging_binding": "+15558675310"}))
    assert "must be an object" in errors["Participant.0.messaging_binding"]


def test_it_rejects_an_unknown_binding_field():
    errors = errors_of(with_participants({"messaging_binding": {"adress": "+15558675310"}}))
    assert "Unknown messaging_binding field" in errors["Participant.0.messaging_binding.adress"]


def test_it_rejects_a_binding_value_that_is_not_text():
    errors = errors_of(with_participants({"messaging_binding": {"address": 15558675310}}))
    assert errors["Participant.0.messaging_binding.address"] == "address must be text."


def test_it_rejects_an_empty_participant():
    assert "identity" in errors_of(with_participants({}))["Participant.0.identity"]


def test_it_rejects_an_address_that_is_not_e164():
    row = {"messaging_binding": {"address": "555-867-5310", "proxy_address": "+15017122661"}}
    assert "E.164" in errors_of(with_participants(row))["Participant.0.messaging_binding.address"]


def test_it_rejects_a_proxy_address_that_is_not_e164():
    row = {"messaging_binding": {"address": "+15558675310", "proxy_address": "15017122661"}}
    assert "E.164" in errors_of(with_participants(row))["Participant.0.messaging_binding.proxy_address"]


def test_it_rejects_a_projected_address_that_is_not_e164():
    row = {"identity": "agent", "messaging_binding": {"projected_address": "whatsapp:+15017122661"}}
    assert "E.164" in errors_of(with_participants(row))["Participant.0.messaging_binding.projected_address"]


def test_it_rejects_a_proxy_address_without_an_address():
    row = {"messaging_binding": {"proxy_address": "+15017122661"}}
    assert "needs an address" in errors_of(with_participants(row))["Participant.0.messaging_binding.address"]


def test_it_rejects_an_address_with_a_projected_address():
    row = {"messaging_binding": {"address": "+15558675310", "projected_address": "+15017122661"}}
    errors = errors_of(with_participants(row))
    assert "not both" in errors["Participant.0.messaging_binding.projected_address"]


def test_it_rejects_an_identity_with_an_address():
    row = {"identity": "alice", **SMS}
    assert "not both" in errors_of(with_participants(row))["Participant.0.identity"]


def test_it_rejects_an_address_equal_to_its_proxy():
    row = {"messaging_binding": {"address": "+15017122661", "proxy_address": "+15017122661"}}
    assert "50409" in errors_of(with_participants(row))["Participant.0.messaging_binding.proxy_address"]


def test_it_rejects_an_address_and_proxy_on_different_channels():
    row = {"messaging_binding": {"address": "whatsapp:+15558675310", "proxy_address": "+15017122661"}}
    assert "50414" in errors_of(with_participants(row))["Participant.0.messaging_binding.proxy_address"]


def test_it_accepts_a_whatsapp_participant():
    row = {
        "messaging_binding": {"address": "whatsapp:+447700900123", "proxy_address": "whatsapp:+15017122661"}
    }
    assert errors_of(with_participants(row)) == {}


def test_it_rejects_a_whatsapp_address_without_proxy():
    row = {"messaging_binding": {"address": "whatsapp:+15558675310"}}
    errors = errors_of(with_participants(row))
    assert "WhatsApp sender" in errors["Participant.0.messaging_binding.proxy_address"]
    assert "Participant" not in errors  # not mistaken for a Group MMS


def test_it_rejects_participant_attributes_that_are_not_json():
    assert (
        "valid JSON" in errors_of(with_participants({**AGENT, "attributes": "{"}))["Participant.0.attributes"]
    )


def test_it_rejects_participant_attributes_over_4_kb():
    row = {**AGENT, "attributes": {"x": "y" * 4096}}
    assert "4096 bytes" in errors_of(with_participants(row))["Participant.0.attributes"]


def test_it_rejects_a_malformed_role_sid():
    assert (
        "RL followed" in errors_of(with_participants({**AGENT, "role_sid": "RL1"}))["Participant.0.role_sid"]
    )
    assert errors_of(with_participants({**AGENT, "role_sid": ROLE})) == {}


def test_it_rejects_the_same_identity_twice():
    errors = errors_of(with_participants(AGENT, {"identity": "agent-7"}))
    assert "50433" in errors["Participant.1.identity"]
    assert "Participant.0.identity" not in errors


def test_it_rejects_the_same_address_twice():
    other = {"messaging_binding": {"address": "+15558675310", "proxy_address": "+15017122662"}}
    assert (
        "already given" in errors_of(with_participants(SMS, other))["Participant.1.messaging_binding.address"]
    )


GROUP = [
    {"messaging_binding": {"address": "+15558675311"}},
    {"messaging_binding": {"address": "+15558675312"}},
    {"identity": "agent-1", "messaging_binding": {"projected_address": "+15017122661"}},
]


def test_it_accepts_a_group_mms():
    assert errors_of(with_participants(*GROUP)) == {}


def test_it_requires_three_bound_participants_in_a_group_mms():
    errors = errors_of(with_participants(*GROUP[:2]))
    assert "at least 3" in errors["Participant"]
    assert "give each address a proxy address" in errors["Participant"]


def test_it_rejects_a_non_us_number_in_a_group_mms():
    rows = [*GROUP[:2], {"messaging_binding": {"address": "+447700900123"}}]
    assert "+1" in errors_of(with_participants(*rows))["Participant.2.messaging_binding.address"]


def test_it_rejects_a_toll_free_number_in_a_group_mms():
    rows = [*GROUP[:2], {"messaging_binding": {"projected_address": "+18005550100"}}]
    assert (
        "toll-free"
        in errors_of(with_participants(*rows))["Participant.2.messaging_binding.projected_address"]
    )


def test_it_requires_a_projected_address_for_chat_users_in_a_group_mms():
    rows = [*GROUP, {"identity": "agent-2"}]
    assert "50434" in errors_of(with_participants(*rows))["Participant.3.messaging_binding.projected_address"]


def test_it_refuses_sms_participants_and_messaging_services_in_ie1():
    credential = cred(region="ie1", edge="dublin")
    errors = errors_of(with_participants(AGENT, SMS, MessagingServiceSid=MG), credential)
    assert "IE1" in errors["Participant.1.messaging_binding.address"]
    assert "IE1" in errors["MessagingServiceSid"]
    assert errors_of(with_participants(AGENT), credential) == {}


def test_validate_participant_prefixes_the_row_index():
    assert list(paths(twilio.validate_participant({}, 4))) == ["Participant.4.identity"]


def test_every_form_field_is_a_validated_path():
    assert {f.name for f in twilio.BODY_FIELDS} <= set(twilio.SCALAR_KEYS)
    errors = errors_of(
        with_participants(
            {"identity": "a" * 300, "messaging_binding": {"address": "x", "proxy_address": "y"}}
        )
    )
    row_paths = {p.removeprefix("Participant.0.") for p in errors}
    assert row_paths <= {f.name for f in twilio.PARTICIPANT_FIELDS}


# --- body helpers ----------------------------------------------------------------------------------


def test_form_fields_round_trip():
    body = {
        **VECTOR_BODY,
        "Attributes": '{"order":123}',
        "Participant": [
            {**AGENT, "attributes": '{"team":"a"}', "role_sid": ROLE},
            SMS,
            {"identity": "x", "messaging_binding": {"projected_address": "+15017122661"}},
        ],
    }
    fields, rows = twilio.fields_from_body(body)
    assert fields["Timers.Inactive"] == "PT1H"
    assert rows[1] == {
        "messaging_binding.address": "+15558675310",
        "messaging_binding.proxy_address": "+15017122661",
    }
    assert twilio.body_from_fields(fields, rows) == body


def test_body_from_fields_drops_blanks_and_keeps_row_positions():
    fields = {"FriendlyName": " Order 123 ", "UniqueName": "", "State": "  "}
    rows = [{"identity": "", "messaging_binding.address": ""}, {"identity": "bob", "attributes": ""}]
    assert twilio.body_from_fields(fields, rows) == {
        "FriendlyName": "Order 123",
        "Participant": [{}, {"identity": "bob"}],
    }


def test_prepare_serialises_attribute_objects_and_drops_blanks():
    body = {
        "FriendlyName": "",
        "Attributes": {"order": 1},
        "Participant": [{**AGENT, "attributes": {"a": 1}}],
    }
    assert twilio.prepare(body, cred()) == {
        "Attributes": '{"order":1}',
        "Participant": [{"identity": "agent-7", "attributes": '{"a":1}'}],
    }


def test_summarize_names_the_conversation_and_its_participants():
    summary = twilio.summarize(
        {
            **VECTOR_BODY,
            "Participant": [
                AGENT,
                SMS,
                GROUP[2],
                {"messaging_binding": {"projected_address": "+15017122661"}},
            ],
        }
    )
    assert summary.name == "Order 123"
    assert summary.participants == ["agent-7", "+15558675310", "agent-1", "+15017122661"]
    assert twilio.summarize({"UniqueName": "u"}).name == "u"
    assert twilio.summarize("garbage").participants == []


# --- wire format -----------------------------------------------------------------------------------


def test_participants_encode_to_the_documented_vector():
    request = twilio.build_request({"Participant": [AGENT, SMS]}, cred())
    assert request.content.decode() == PARTICIPANT_VECTOR


def test_the_full_body_encodes_to_the_documented_vector():
    request = twilio.build_request(twilio.prepare(VECTOR_BODY, cred()), cred())
    assert request.method == "POST"
    assert str(request.url) == "https://conversations.twilio.com/v1/ConversationWithParticipants"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"] == basic(ACCOUNT, TOKEN)
    assert (
        request.content
        == (
            "FriendlyName=Order%20123&UniqueName=order-123&MessagingServiceSid=MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "&State=active&Timers.Inactive=PT1H&Timers.Closed=P1D&" + PARTICIPANT_VECTOR
        ).encode()
    )


def test_attributes_are_sent_as_json_text():
    body = {"Attributes": {"order": 1}, "Participant": [{**AGENT, "attributes": {"a": 1}}]}
    content = twilio.build_request(body, cred()).content.decode()
    assert content == (
        "Attributes="
        + quote('{"order":1}', safe="")
        + "&Participant="
        + quote('{"identity":"agent-7","attributes":"{\\"a\\":1}"}', safe="")
    )


def test_it_signs_with_the_api_key():
    request = twilio.build_request({}, key_cred())
    assert request.headers["Authorization"] == basic(KEY_SID, KEY_SECRET)


def test_a_region_and_edge_choose_the_host():
    request = twilio.build_request({}, cred(region="ie1", edge="dublin"))
    assert str(request.url) == "https://conversations.dublin.ie1.twilio.com/v1/ConversationWithParticipants"


def test_an_edge_alone_uses_us1():
    assert twilio.build_request({}, cred(edge="ashburn")).url.host == "conversations.ashburn.us1.twilio.com"


def test_a_service_sid_scopes_the_create():
    request = twilio.build_request({}, cred(service_sid=SERVICE))
    assert request.url.path == f"/v1/Services/{SERVICE}/ConversationWithParticipants"


def test_base_url_replaces_the_twilio_host():
    request = twilio.build_request({}, cred(base_url="http://127.0.0.1:8025"))
    assert str(request.url) == "http://127.0.0.1:8025/v1/ConversationWithParticipants"


# --- create ----------------------------------------------------------------------------------------


def test_it_creates_a_conversation_without_participants():
    credential = cred()
    http, fake = http_for(credential, {CREATE: (201, conversation())})
    created = twilio.create({"FriendlyName": "Order 123"}, credential, http)
    assert created.external_id == CH
    assert created.status == 201
    assert created.participants == []
    assert created.url.endswith(CH)
    assert len(fake.requests) == 1
    assert fake.requests[0].content == b"FriendlyName=Order%20123"


def test_it_reads_the_participants_back_after_a_202():
    credential = cred()
    next_url = (
        f"https://elsewhere.example/v1/Conversations/{CH}/Participants?PageSize=50&Page=1&PageToken=PT1"
    )
    http, fake = http_for(
        credential,
        {
            CREATE: (202, conversation()),
            READ: (200, conversation()),
            MEMBERS: [(200, page([member(1, identity="agent-7")], next_url)), (200, page([member(2)]))],
        },
    )
    created = twilio.create(twilio.prepare(VECTOR_BODY, credential), credential, http)
    assert created.status == 202
    assert [p["sid"] for p in created.participants] == [f"MB{1:032d}", f"MB{2:032d}"]
    first, second = fake.requests[2].url, fake.requests[3].url
    assert first.params["PageSize"] == "50"
    # The next page is read from our own base, never from the host the reply names.
    assert second.host == "conversations.twilio.com"
    assert second.params["PageToken"] == "PT1"
    assert all(r.headers["Authorization"] == basic(ACCOUNT, TOKEN) for r in fake.requests)


def test_it_reports_participants_that_failed_asynchronously():
    credential = cred()
    http, _ = http_for(
        credential,
        {CREATE: (202, conversation()), READ: (200, conversation("closed")), MEMBERS: (200, page([]))},
    )
    with pytest.raises(ProviderError) as caught:
        twilio.create(VECTOR_BODY, credential, http)
    assert caught.value.code == "50427"
    assert CH in caught.value.message
    assert "order-123" in caught.value.message
    assert caught.value.existing_id == CH
    assert not caught.value.outcome_unknown


def test_a_failed_read_back_keeps_the_conversation_created():
    credential = cred()
    http, _ = http_for(credential, {CREATE: (202, conversation()), READ: httpx.ConnectError("refused")})
    created = twilio.create(VECTOR_BODY, credential, http)
    assert created.external_id == CH
    assert created.participants == []


def test_a_2xx_without_a_sid_leaves_the_outcome_unknown():
    credential = cred()
    http, _ = http_for(credential, {CREATE: (200, {"state": "active"})})
    with pytest.raises(ProviderError) as caught:
        twilio.create({}, credential, http)
    assert caught.value.outcome_unknown


def test_a_read_timeout_on_create_leaves_the_outcome_unknown():
    credential = cred()
    http, _ = http_for(credential, {CREATE: httpx.ReadTimeout("timed out")})
    with pytest.raises(ProviderError) as caught:
        twilio.create(VECTOR_BODY, credential, http)
    assert caught.value.outcome_unknown
    assert not caught.value.permanent


def test_a_refused_connection_is_retryable_and_not_unknown():
    credential = cred()
    http, _ = http_for(credential, {CREATE: httpx.ConnectError("Connection refused")})
    with pytest.raises(ProviderError) as caught:
        twilio.create({}, credential, http)
    assert not caught.value.permanent
    assert not caught.value.outcome_unknown


def create_error(response: httpx.Response | tuple[int, Any]) -> ProviderError:
    credential = cred()
    http, _ = http_for(credential, {CREATE: response})
    with pytest.raises(ProviderError) as caught:
        twilio.create(VECTOR_BODY, credential, http)
    return caught.value


def test_it_explains_an_authentication_failure():
    exc = create_error((401, {**error(20003, "Authenticate", 401), "detail": ""}))
    assert exc.message.startswith("Authenticate — ")
    assert "region" in exc.message
    assert "https://www.twilio.com/docs/errors/20003" in exc.message
    assert (exc.code, exc.status, exc.permanent) == ("20003", 401, True)


def test_too_many_requests_is_retryable_after_the_given_time():
    response = httpx.Response(429, json=error(20429, "Too Many Requests", 429), headers={"Retry-After": "2"})
    exc = create_error(response)
    assert (exc.code, exc.permanent, exc.retry_after) == ("20429", False, 2.0)
    assert not exc.outcome_unknown


def test_a_duplicate_unique_name_is_permanent():
    exc = create_error((409, error(50353, "Conversation with provided unique name already exists", 409)))
    assert exc.message.startswith("Conversation with provided unique name already exists")
    assert "choose another" in exc.message
    assert (exc.code, exc.permanent) == ("50353", True)


def test_an_address_already_in_an_open_conversation_names_it():
    message = f"A binding for this participant and proxy address already exists in Conversation {CH}"
    exc = create_error((409, error(50416, message, 409)))
    assert exc.code == "50416"
    assert exc.existing_id == CH
    assert "close that one" in exc.message


def test_the_multi_participant_binding_conflict_is_mapped():
    exc = create_error((409, error(50425, "Participants binding conflict", 409)))
    assert (exc.code, exc.permanent) == ("50425", True)
    assert "proxy address" in exc.message


def test_a_bad_participant_item_is_permanent():
    exc = create_error((400, error(50424, "Invalid participant JSON", 400)))
    assert exc.message.startswith("Invalid participant JSON")
    assert (exc.code, exc.permanent) == ("50424", True)


def test_an_identity_already_present_is_permanent():
    exc = create_error((409, error(50433, "Participant already exists", 409)))
    assert (exc.code, exc.permanent) == ("50433", True)


def test_an_async_participant_failure_code_is_retryable():
    exc = create_error((400, error(50427, "Participant creation failed", 400)))
    assert (exc.code, exc.permanent) == ("50427", False)


def test_it_parses_an_rfc_9457_problem():
    problem = {
        "type": "https://www.twilio.com/docs/errors/50409",
        "title": "Invalid participant",
        "status": 400,
        "code": 50409,
        "detail": "Address and proxy address are the same.",
        "errors": [{"detail": "must differ from address", "pointer": "#/Participant/1/messaging_binding"}],
    }
    exc = create_error(
        httpx.Response(400, json=problem, headers={"Content-Type": "application/problem+json"})
    )
    assert exc.code == "50409"
    assert exc.message.startswith(
        "Invalid participant; Address and proxy address are the same.; "
        "#/Participant/1/messaging_binding: must differ from address"
    )
    assert "https://www.twilio.com/docs/errors/50409" in exc.message


def test_it_takes_the_code_of_an_rfc_9457_problem_from_its_type():
    exc = create_error(
        (429, {"type": "https://www.twilio.com/docs/errors/20429", "title": "Too many", "status": 429})
    )
    assert (exc.code, exc.permanent) == ("20429", False)


def test_a_server_error_on_create_is_retryable_but_unknown():
    exc = create_error((503, error(20500, "Service unavailable", 503)))
    assert exc.message.startswith("Service unavailable")
    assert not exc.permanent
    assert exc.outcome_unknown
    assert "check before trying again" in exc.message


def test_a_body_that_is_not_json_gets_a_clear_message():
    exc = create_error(
        httpx.Response(502, text="<html>Bad gateway</html>", headers={"Content-Type": "text/html"})
    )
    assert exc.message.startswith("Twilio answered HTTP 502 with a body that is not JSON (text/html)")
    assert (exc.code, exc.status, exc.permanent) == ("http_502", 502, False)


def test_an_empty_error_body_gets_a_clear_message():
    exc = create_error(httpx.Response(400, content=b""))
    assert "HTTP 400" in exc.message
    assert exc.permanent


# --- lookup, fetch, check --------------------------------------------------------------------------


def test_lookup_needs_a_unique_name():
    credential = cred()
    http, fake = http_for(credential, {})
    assert twilio.lookup({"FriendlyName": "x"}, credential, http) is None
    assert fake.requests == []


def test_lookup_finds_the_conversation_by_unique_name():
    credential = cred()
    name = "order 1/2"
    encoded = f"/v1/Conversations/{quote(name, safe='')}"
    http, fake = http_for(
        credential,
        {("GET", "/v1/Conversations/order 1/2"): (200, conversation()), MEMBERS: (200, page([member(1)]))},
    )
    found = twilio.lookup({"UniqueName": name}, credential, http)
    assert found is not None
    assert (found.external_id, found.existed, len(found.participants)) == (CH, True, 1)
    assert fake.requests[0].url.raw_path.decode() == encoded


def test_lookup_answers_none_when_absent():
    credential = cred()
    http, _ = http_for(
        credential, {("GET", "/v1/Conversations/order-123"): (404, error(20404, "Not found", 404))}
    )
    assert twilio.lookup(VECTOR_BODY, credential, http) is None


def test_lookup_is_service_scoped():
    credential = cred(service_sid=SERVICE)
    http, fake = http_for(credential, {("GET", f"/v1/Services/{SERVICE}/Conversations/order-123"): (404, {})})
    assert twilio.lookup(VECTOR_BODY, credential, http) is None
    assert len(fake.requests) == 1


def test_fetch_reads_the_conversation_and_every_participant_page():
    credential = cred(service_sid=SERVICE)
    scoped = f"/v1/Services/{SERVICE}/Conversations/{CH}"
    next_url = f"https://conversations.twilio.com{scoped}/Participants?PageSize=50&Page=1&PageToken=PT1"
    http, fake = http_for(
        credential,
        {
            ("GET", scoped): (200, conversation()),
            ("GET", f"{scoped}/Participants"): [(200, page([member(1)], next_url)), (200, page([member(2)]))],
        },
    )
    fetched = twilio.fetch(CH, credential, http)
    assert fetched.external_id == CH
    assert fetched.conversation["state"] == "active"
    assert len(fetched.participants) == 2
    assert len(fake.requests) == 3


def test_fetch_reports_a_missing_conversation():
    credential = cred()
    http, _ = http_for(credential, {READ: (404, error(20404, "The requested resource was not found", 404))})
    with pytest.raises(ProviderError) as caught:
        twilio.fetch(CH, credential, http)
    assert (caught.value.code, caught.value.status) == ("20404", 404)


CONFIGURATION = {
    "account_sid": ACCOUNT,
    "default_chat_service_sid": SERVICE,
    "default_messaging_service_sid": MG,
    "default_inactive_timer": None,
    "default_closed_timer": None,
}


def test_check_reads_the_account_configuration():
    credential = cred()
    http, fake = http_for(credential, {("GET", "/v1/Configuration"): (200, CONFIGURATION)})
    assert twilio.check(credential, http) == f"Account {ACCOUNT} reachable; default service {SERVICE}."
    assert fake.requests[0].headers["Authorization"] == basic(ACCOUNT, TOKEN)


def test_check_names_the_api_key():
    credential = key_cred()
    http, fake = http_for(credential, {("GET", "/v1/Configuration"): (200, CONFIGURATION)})
    assert f"with API key {KEY_SID}" in twilio.check(credential, http)
    assert fake.requests[0].headers["Authorization"] == basic(KEY_SID, KEY_SECRET)


def test_check_reads_the_service_configuration_for_a_service_credential():
    credential = cred(service_sid=SERVICE)
    path = f"/v1/Services/{SERVICE}/Configuration"
    http, _ = http_for(credential, {("GET", path): (200, {"chat_service_sid": SERVICE})})
    assert twilio.check(credential, http) == f"Account {ACCOUNT} reachable; service {SERVICE}."


def test_check_goes_to_the_base_url():
    credential = cred(base_url="http://127.0.0.1:8025")
    http, fake = http_for(credential, {("GET", "/v1/Configuration"): (200, CONFIGURATION)})
    twilio.check(credential, http)
    assert str(fake.requests[0].url) == "http://127.0.0.1:8025/v1/Configuration"


def test_check_goes_to_the_regional_host():
    credential = key_cred(region="ie1", edge="dublin")
    http, fake = http_for(credential, {("GET", "/v1/Configuration"): (200, CONFIGURATION)})
    twilio.check(credential, http)
    assert fake.requests[0].url.host == "conversations.dublin.ie1.twilio.com"


def test_check_reports_a_key_of_another_account():
    credential = key_cred()
    other = "AC" + "9" * 32
    http, _ = http_for(
        credential, {("GET", "/v1/Configuration"): (200, {**CONFIGURATION, "account_sid": other})}
    )
    with pytest.raises(ProviderError) as caught:
        twilio.check(credential, http)
    assert other in caught.value.message


def test_check_reports_a_refused_credential():
    credential = cred()
    http, _ = http_for(credential, {("GET", "/v1/Configuration"): (401, error(20003, "Authenticate", 401))})
    with pytest.raises(ProviderError) as caught:
        twilio.check(credential, http)
    assert caught.value.code == "20003"


# --- redaction -------------------------------------------------------------------------------------


def secret_forms(user: str, secret: str) -> list[str]:
    pair = f"{user}:{secret}".encode()
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode().rstrip("="),
        base64.b64encode(pair).decode().rstrip("="),
        base64.urlsafe_b64encode(pair).decode().rstrip("="),
    ]


@pytest.mark.parametrize(
    ("make", "user", "secret"), [(cred, ACCOUNT, TOKEN), (key_cred, KEY_SID, KEY_SECRET)]
)
def test_no_secret_reaches_an_exchange_or_the_log(
    make: Callable[[], Credential], user: str, secret: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="providers.http")
    credential = make()
    # A reply that echoes the secret (as an Account fetch would) must be masked too.
    echo = {**conversation(), "auth_token": secret, "note": f"{user}:{secret}"}
    http, _ = http_for(
        credential,
        {
            CREATE: (202, echo),
            READ: (200, conversation()),
            MEMBERS: (200, page([member(1)])),
            ("GET", "/v1/Configuration"): (401, {**error(20003, "Authenticate", 401), "detail": secret}),
        },
    )
    twilio.create(VECTOR_BODY, credential, http)
    with pytest.raises(ProviderError):
        twilio.check(credential, http)
    recorded = json.dumps([e.as_dict() for e in http.exchanges], default=str) + caplog.text
    assert len(http.exchanges) == 4
    assert all(e.request_headers["authorization"] == "Basic [redacted]" for e in http.exchanges)
    for form in secret_forms(user, secret):
        assert form not in recorded
    assert "Participant" in http.exchanges[0].request_body  # the body itself is still readable


def test_its_messages_use_the_labels_the_form_shows_not_parameter_names():
    errors = errors_of({"State": "active", "Timers.Inactive": "PT5S", "Timers.Closed": "soon"})
    assert errors["Timers.Inactive"] == "Inactive after must be at least 1 minute (PT1M)."
    assert errors["Timers.Closed"].startswith("Closed after must be an ISO 8601 duration")
    group = errors_of(
        with_participants({"identity": "ann"}, {"messaging_binding": {"address": "+15558675310"}})
    )
    text = " ".join(group.values())
    assert "projected address" in text
    assert not any(name in text for name in ("projected_address", "proxy_address", "messaging_binding"))
