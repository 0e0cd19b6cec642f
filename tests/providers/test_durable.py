"""What every provider does so a job that is killed and re-run never creates a conversation twice.

Unknown outcomes on a create (issue #12 item 1), inputs that must be refused before anything is saved or
sent (items 6 and 9), and the hooks a job asks (``KEY_IS_UNIQUE``, ``prepare(key=…)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import providers
from providers import highlevel, msgraph, twilio
from providers.base import HOOK_DEFAULTS, ProviderError, storable, value_errors
from providers.http import Http

NAMES = ["mixin", "twilio", "highlevel", "msgraph"]
GROUP = "29981b6a-0e57-42dc-94c9-cd24f5306196"
USER = "d1e9ec7e-199d-4578-91a0-a69d9a7ba048"
CREDENTIALS: dict[str, dict[str, str]] = {
    "mixin": {
        "app_id": "13c79909-fd32-401b-bfe5-ecf53816ddbf",
        "session_id": "26f481d3-9fd5-47ae-acf3-dff8c94f9e87",
        "session_private_key": "8608c3972c7b61a0e9edb1c8bc051bd5d2c62818c9e338bceb7413306611c722",
    },
    "twilio": {"account_sid": "AC" + "a" * 32, "auth_token": "b" * 32},
    "highlevel": {"token": "pit-0000-secret", "location_id": "tDtDnQdgm2LXpyiqYvZ6"},
    "msgraph": {
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "535fb089-9ff3-47b6-9bfb-4f1264799865",
        "client_secret": "Xy8Q~abcDEF123ghiJKL456mnoPQR789stu.WX0y",
        "group_id": GROUP,
        "refresh_token": "0.refresh",
    },
}


def body_of(name: str) -> dict[str, Any]:
    return {
        "mixin": {"category": "GROUP", "name": "Order 123", "participants": [{"user_id": USER}]},
        "twilio": {"FriendlyName": "Order 123", "UniqueName": "order-123"},
        "highlevel": {"contactId": "rTDJGD7SjqDamyzrk5UW"},
        "msgraph": {
            "topic": "Order 123",
            "threads": [{"posts": [{"body": {"contentType": "text", "content": "Kick-off"}}]}],
        },
    }[name]


def create_with(name: str, reply: Callable[[httpx.Request], httpx.Response]) -> ProviderError:
    """Create a valid body while the create endpoint answers ``reply``; the error it raises."""
    module = providers.get(name)
    credential = module.parse_credential(CREDENTIALS[name])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return httpx.Response(200, json={"access_token": "access", "refresh_token": "0.refresh-2"})
        assert request.method == "POST"
        return reply(request)

    body = module.prepare(body_of(name), credential)
    transport = httpx.MockTransport(handler)
    with (
        Http(credential.secret_values(), transport=transport) as http,
        pytest.raises(ProviderError) as caught,
    ):
        module.create(body, credential, http)
    return caught.value


MALFORMED = {
    "200 invalid JSON": lambda r: httpx.Response(200, text='{"data": {"conversation_id": "ab'),
    "201 empty body": lambda r: httpx.Response(201),
    "200 JSON list": lambda r: httpx.Response(200, json=[]),
    "302 redirect": lambda r: httpx.Response(302, headers={"Location": "https://elsewhere.example/"}),
    "500 HTML": lambda r: httpx.Response(500, text="<html>oops</html>"),
    "502 JSON": lambda r: httpx.Response(502, json={"error": {"code": "x", "message": "bad gateway"}}),
    "503 busy": lambda r: httpx.Response(
        503, json={"error": {"code": "serviceNotAvailable", "message": "Busy"}}
    ),
    "504 gateway timeout": lambda r: httpx.Response(504, text="Gateway Timeout"),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_reply_or_a_5xx_on_a_create_leaves_the_outcome_unknown(name: str, reply: Any):
    error = create_with(name, reply)
    assert error.outcome_unknown is True, error.message


REFUSED = {
    "400 HTML": lambda r: httpx.Response(400, text="<html>Bad request</html>"),
    "404 JSON": lambda r: httpx.Response(404, json={"error": {"code": "NotFound", "message": "no"}}),
    "429 Retry-After": lambda r: httpx.Response(429, headers={"Retry-After": "2"}, text="slow down"),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reply", REFUSED.values(), ids=REFUSED.keys())
def test_a_4xx_on_a_create_is_a_known_failure(name: str, reply: Any):
    assert create_with(name, reply).outcome_unknown is False


def test_highlevel_an_unsuccessful_2xx_on_a_create_leaves_the_outcome_unknown():
    error = create_with("highlevel", lambda r: httpx.Response(201, json={"success": False, "message": "?"}))
    assert (error.code, error.outcome_unknown) == ("unsuccessful", True)


def test_highlevel_a_token_refresh_timing_out_before_the_create_is_no_unknown_outcome():
    credential = highlevel.parse_credential(
        CREDENTIALS["highlevel"] | {"refresh_token": "r", "client_id": "c", "client_secret": "s"}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(401, json={"statusCode": 401, "message": "Invalid JWT"})

    with Http(transport=httpx.MockTransport(handler)) as http, pytest.raises(ProviderError) as caught:
        highlevel.create(highlevel.prepare(body_of("highlevel"), credential), credential, http)
    assert caught.value.outcome_unknown is False  # the create was refused (401) before the refresh


def test_twilio_a_conversation_closed_after_creation_is_not_retried_automatically():
    credential = twilio.parse_credential(CREDENTIALS["twilio"])
    sid = "CH" + "0" * 32

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"sid": sid, "state": "initializing"})
        if request.url.path.endswith("/Participants"):
            return httpx.Response(200, json={"participants": [], "meta": {"key": "participants"}})
        return httpx.Response(200, json={"sid": sid, "state": "closed"})

    body = twilio.prepare({**body_of("twilio"), "Participant": [{"identity": "agent-7"}]}, credential)
    with Http(transport=httpx.MockTransport(handler)) as http, pytest.raises(ProviderError) as caught:
        twilio.create(body, credential, http)
    assert (caught.value.existing_id, caught.value.permanent, caught.value.outcome_unknown) == (
        sid,
        True,
        False,
    )


# --- hooks --------------------------------------------------------------------------------------


def test_each_provider_says_whether_it_refuses_a_second_create_with_the_same_key():
    assert {name: providers.get(name).KEY_IS_UNIQUE for name in NAMES} == {
        "mixin": True,
        "twilio": True,
        "highlevel": True,
        "msgraph": False,
    }
    assert HOOK_DEFAULTS["KEY_IS_UNIQUE"] is False


def test_twilio_prepare_fills_an_empty_unique_name_from_the_key():
    credential = twilio.parse_credential(CREDENTIALS["twilio"])
    body = {"FriendlyName": "Order 123"}
    assert twilio.prepare(body, credential, key="42")["UniqueName"] == "convadmin-42"
    assert "UniqueName" not in twilio.prepare(body, credential)
    assert twilio.prepare({**body, "UniqueName": "mine"}, credential, key="42")["UniqueName"] == "mine"
    odd = twilio.prepare(body, credential, key="a b/ü" + "x" * 400)["UniqueName"]
    assert odd.startswith("convadmin-a-b--") and len(odd) == twilio.MAX_NAME
    assert twilio.validate(twilio.prepare(body, credential, key="42")) == []
    # The request preview is built from the prepared body, so it shows the name that will be sent.
    preview = twilio.build_request(twilio.prepare(body, credential, key="42"), credential)
    assert b"UniqueName=convadmin-42" in preview.content


@pytest.mark.parametrize("name", ["mixin", "highlevel"])
def test_prepare_takes_a_key_where_the_body_already_has_one(name: str):
    module = providers.get(name)
    credential = module.parse_credential(CREDENTIALS[name])
    prepared = module.prepare(body_of(name), credential, key="42")
    assert module.validate(prepared, credential) == []


# --- inputs every provider refuses --------------------------------------------------------------

#: Where each provider takes free text: (body, the path a bad value goes to).
TEXT_FIELDS = [
    ("mixin", "name"),
    ("mixin", "announcement"),
    ("twilio", "FriendlyName"),
    ("twilio", "UniqueName"),
    ("twilio", "Participant.0.identity"),
    ("highlevel", "contactId"),
    ("msgraph", "topic"),
    ("msgraph", "threads.0.posts.0.body.content"),
    ("msgraph", "threads.0.posts.0.newParticipants.0.emailAddress.name"),
]


def with_value(name: str, path: str, value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body_of(name)))
    if name == "twilio" and path.startswith("Participant."):
        body["Participant"] = [{"identity": "agent"}]
    if name == "msgraph" and "newParticipants" in path:
        body["threads"][0]["posts"][0]["newParticipants"] = [{"emailAddress": {"address": "a@contoso.com"}}]
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return body


def errors_at(name: str, body: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for error in providers.get(name).validate(body):
        out.setdefault(error.path, []).append(error.message)
    return out


@pytest.mark.parametrize(("name", "path"), TEXT_FIELDS)
def test_a_nul_character_is_refused_at_its_field(name: str, path: str):
    messages = errors_at(name, with_value(name, path, "Order\x00123"))
    assert any("NUL character" in m for m in messages[path])


@pytest.mark.parametrize(("name", "path"), TEXT_FIELDS)
def test_a_lone_surrogate_is_refused_at_its_field(name: str, path: str):
    messages = errors_at(name, with_value(name, path, "Order \ud800"))
    assert any("lone surrogate (\\ud800)" in m for m in messages[path])


@pytest.mark.parametrize(
    ("name", "index", "row", "path"),
    [
        ("mixin", 2, {"user_id": USER + "\x00"}, "participants.2.user_id"),
        ("twilio", 1, {"identity": "a\ud83d"}, "Participant.1.identity"),
        ("highlevel", 0, {"contactId": "rTDJGD7SjqDamyzrk5U\x00"}, "contactId"),
        (
            "msgraph",
            0,
            {"emailAddress": {"address": "a@b.co", "name": "\x00"}},
            f"{msgraph.PARTICIPANTS_PATH}.0.emailAddress.name",
        ),
    ],
)
def test_inline_participant_validation_refuses_them_too(name: str, index: int, row: dict, path: str):
    errors = providers.get(name).validate_participant(row, index)
    assert path in {e.path for e in errors}


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("name", "path"),
    [("mixin", "name"), ("twilio", "Attributes"), ("highlevel", "contactId"), ("msgraph", "topic")],
)
def test_a_100k_deep_value_is_refused_without_a_recursion_error(name: str, path: str):
    errors = providers.get(name).validate(with_value(name, path, deep(100_000)))
    assert any("Nested more than" in e.message and e.path.startswith(path) for e in errors)


def test_twilio_refuses_attributes_json_that_is_deeper_than_python_can_read():
    errors = errors_at("twilio", {"Attributes": "[" * 100_000 + "]" * 100_000})
    assert errors["Attributes"] == ["Attributes is nested too deeply."]


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e400}', "NaN"])
def test_twilio_attributes_must_be_strict_json(text: str):
    assert "must be valid JSON" in errors_at("twilio", {"Attributes": text})["Attributes"][0]


@pytest.mark.parametrize("number", [math.nan, math.inf])
def test_non_json_numbers_are_refused_anywhere(number: float):
    assert "NaN and Infinity" in errors_at("twilio", {"Attributes": {"order": number}})["Attributes.order"][0]
    assert errors_at("mixin", {**body_of("mixin"), "name": number})["name"]


def test_twilio_still_takes_large_but_finite_numbers():
    assert errors_at("twilio", {"Attributes": '{"a": 1e300, "b": 12345678901234567890}'}) == {}


def test_graph_refuses_a_message_over_its_4_mb_request_limit():
    body = with_value("msgraph", "threads.0.posts.0.body.content", "x" * (10 * 1024 * 1024))
    [message] = errors_at("msgraph", body)["threads.0.posts.0.body.content"]
    assert "at most 4 MB" in message
    near = with_value("msgraph", "threads.0.posts.0.body.content", "x" * (4 * 1024 * 1024 - 1000))
    assert errors_at("msgraph", near) == {}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "garbage",
    [deep(5000), [deep(5000)], {"\x00": 1}, {"participants": [deep(2000)]}, {"Participant": [deep(2000)]}],
)
def test_validate_never_raises(name: str, garbage: Any):
    assert isinstance(providers.get(name).validate(garbage), list)


# --- storable ------------------------------------------------------------------------------------


def test_storable_escapes_what_postgresql_cannot_store_visibly():
    reply = {"name\x00": ["a\x00b", "\ud800", "ok ☕ \U0001f600", 1.5, math.nan, None, True], "n": {"x": [1]}}
    assert storable(reply) == {
        "name\\u0000": ["a\\u0000b", "\\ud800", "ok ☕ \U0001f600", 1.5, "nan", None, True],
        "n": {"x": [1]},
    }
    json.dumps(storable(reply), allow_nan=False).encode()  # valid JSON, valid UTF-8
    assert reply["name\x00"][0] == "a\x00b"  # the original is left alone


def test_storable_handles_any_depth():
    value = deep(100_000)
    stored = storable(value)
    for _ in range(100_000):
        stored = stored["a"]
    assert stored == "leaf"


def test_value_errors_report_dotted_paths():
    errors = value_errors({"a": [1, "x\x00"], "k\x00": 1})
    assert sorted((e.path, e.message.split(",")[0]) for e in errors) == [
        ("a.1", "Contains a NUL character (\\u0000)"),
        ("body", "The field name “k\\u0000”: Contains a NUL character (\\u0000)"),
    ]
