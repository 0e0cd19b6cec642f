from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import httpx
import pytest

from providers import highlevel
from providers.base import Credential, InvalidCredential, ProviderError
from providers.http import Http
from providers.redact import secret_forms

LOC = "tDtDnQdgm2LXpyiqYvZ6"
CONTACT = "rTDJGD7SjqDamyzrk5UW"
CONV = "VXhSATpOGAvRAnd0iu7x"
TOKEN = "pit-3f1c2a9e-8b7d-4c6e-9a1b-2d3e4f5a6b7c"
REFRESH = "rt.old+refresh/token=="
NEW_TOKEN = "eyJhbGciOiJSUzI1NiJ9.new-access.sig"
NEW_REFRESH = "rt.new+refresh/token=="
CLIENT_SECRET = "cs-9f8e7d6c5b4a"
DUPLICATE = f"Conversation with the contact id:{CONTACT} already exists!"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(highlevel, "sleep", waited.append)
    return waited


def credential(**extra: str) -> Credential:
    return highlevel.parse_credential({"token": TOKEN, "location_id": LOC, **extra})


def oauth_credential(changes: list[dict[str, str]] | None = None) -> Credential:
    cred = highlevel.parse_credential(
        {
            "token": "expired-access-token",
            "location_id": LOC,
            "refresh_token": REFRESH,
            "client_id": "6578278e879ad2646715ba9c-abc123",
            "client_secret": CLIENT_SECRET,
        }
    )
    if changes is not None:
        cred.on_change = changes.append
    return cred


def make_http(cred: Credential, handler: Handler) -> tuple[Http, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    return Http(cred.secret_values(), transport=httpx.MockTransport(record)), sent


def created_reply(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        201,
        json={
            "success": True,
            "conversation": {"id": CONV, "contactId": CONTACT, "locationId": LOC, "deleted": False},
            "traceId": "trace-1",
        },
    )


def error_reply(status: int, message: object, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(
        status, json={"statusCode": status, "message": message}, headers=headers
    )


def search_reply(*conversations: dict[str, object]) -> httpx.Response:
    return httpx.Response(
        200, json={"conversations": list(conversations), "total": len(conversations), "traceId": "t"}
    )


def create_error(handler: Handler, cred: Credential | None = None) -> ProviderError:
    cred = cred or credential()
    http, _ = make_http(cred, handler)
    with pytest.raises(ProviderError) as info:
        highlevel.create({"contactId": CONTACT}, cred, http)
    return info.value


def assert_no_secret(http: Http, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    recorded = json.dumps([e.as_dict() for e in http.exchanges], default=str) + caplog.text
    for form in secret_forms(secrets):
        assert form not in recorded


# --- credential ---------------------------------------------------------------------------------


def test_it_parses_a_private_integration_token():
    cred = credential()
    assert cred.provider == "highlevel"
    assert cred.settings == {"location_id": LOC}
    assert cred.secrets == {"token": TOKEN}


def test_it_keeps_oauth_refresh_details_with_client_id_as_a_setting():
    cred = oauth_credential()
    assert cred.settings == {"location_id": LOC, "client_id": "6578278e879ad2646715ba9c-abc123"}
    assert set(cred.secrets) == {"token", "refresh_token", "client_secret"}


def test_it_requires_token_and_location_id():
    with pytest.raises(InvalidCredential) as info:
        highlevel.parse_credential({})
    assert {e.path for e in info.value.errors} == {"token", "location_id"}


def test_it_rejects_a_credential_with_a_malformed_location_id():
    with pytest.raises(InvalidCredential) as info:
        credential(location_id="not-an-id")
    assert [e.path for e in info.value.errors] == ["location_id"]


def test_it_rejects_a_token_pasted_with_its_bearer_prefix():
    with pytest.raises(InvalidCredential) as info:
        highlevel.parse_credential({"token": f"Bearer {TOKEN}", "location_id": LOC})
    assert [e.path for e in info.value.errors] == ["token"]


def test_it_requires_all_three_oauth_fields_together():
    with pytest.raises(InvalidCredential) as info:
        credential(refresh_token=REFRESH)
    assert {e.path for e in info.value.errors} == {"client_id", "client_secret"}


def test_it_rejects_a_plain_http_base_url_on_a_public_host():
    with pytest.raises(InvalidCredential) as info:
        credential(base_url="http://services.leadconnectorhq.com")
    assert [e.path for e in info.value.errors] == ["base_url"]


def test_it_accepts_a_loopback_base_url_without_its_trailing_slash():
    assert credential(base_url="http://127.0.0.1:8025/").settings["base_url"] == "http://127.0.0.1:8025"


def test_it_rejects_a_credential_that_is_not_an_object():
    with pytest.raises(InvalidCredential):
        highlevel.parse_credential(["token"])  # type: ignore[arg-type]


def test_it_hides_the_token_in_the_credential_repr():
    assert TOKEN not in repr(credential())


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "contact",
    [
        "rTDJGD7SjqDamyzrk5UW",
        "DjpolQ8Je7u1t7OauwFL",
        "VXhSATpOGAvRAnd0iu7x",
        "Mp6SVlSkhbup63EKVSvb",
        "tDtDnQdgm2LXpyiqYvZ6",
        "ve9EPM428h8vShlRW1KT",
        "ve9EPM428kjkvShlRW1KT",  # 21 characters (a spec typo): the loose rule still accepts it
    ],
)
def test_it_accepts_the_documented_ids(contact: str):
    assert highlevel.validate({"locationId": contact, "contactId": contact}) == []


def test_it_requires_a_contact_id():
    errors = highlevel.validate({"locationId": LOC})
    assert [(e.path, e.message) for e in errors] == [("contactId", "Contact ID is required.")]


def test_it_rejects_a_contact_id_that_is_not_text():
    assert [e.path for e in highlevel.validate({"contactId": 12345678901234567890})] == ["contactId"]


@pytest.mark.parametrize(
    "contact", ["rTDJGD7SjqDamyz", "a" * 33, "rTDJGD7Sjq-amyzrk5UW", " rTDJGD7SjqDamyzrk5UW", f"{CONTACT}\n"]
)
def test_it_rejects_a_malformed_contact_id(contact: str):
    errors = highlevel.validate({"contactId": contact})
    assert [e.path for e in errors] == ["contactId"]
    assert "16 to 32 letters and digits" in errors[0].message


def test_it_rejects_a_malformed_location_id():
    assert [e.path for e in highlevel.validate({"locationId": "loc_1", "contactId": CONTACT})] == [
        "locationId"
    ]


def test_it_rejects_a_location_id_that_is_not_text():
    assert [e.path for e in highlevel.validate({"locationId": 7, "contactId": CONTACT})] == ["locationId"]


def test_it_rejects_an_empty_location_id():
    assert [e.path for e in highlevel.validate({"locationId": "", "contactId": CONTACT})] == ["locationId"]


def test_it_rejects_another_location_than_the_credentials():
    errors = highlevel.validate({"locationId": "DjpolQ8Je7u1t7OauwFL", "contactId": CONTACT}, credential())
    assert [e.path for e in errors] == ["locationId"]
    assert LOC in errors[0].message
    assert "403" in errors[0].message


def test_it_accepts_the_credentials_own_location():
    assert highlevel.validate({"locationId": LOC, "contactId": CONTACT}, credential()) == []


def test_it_accepts_any_location_without_a_credential():
    assert highlevel.validate({"locationId": "DjpolQ8Je7u1t7OauwFL", "contactId": CONTACT}) == []


def test_it_rejects_unknown_keys():
    errors = highlevel.validate({"contactId": CONTACT, "type": "TYPE_PHONE"})
    assert [e.path for e in errors] == ["type"]
    assert "only locationId and contactId" in errors[0].message


@pytest.mark.parametrize("body", [None, "text", [CONTACT], 42])
def test_it_returns_errors_for_a_body_that_is_not_an_object(body: object):
    assert highlevel.validate(body)  # type: ignore[arg-type]


def test_it_validates_the_contact_as_the_one_participant():
    assert highlevel.validate_participant({"contactId": CONTACT}) == []
    assert [e.path for e in highlevel.validate_participant({"contactId": "x"})] == ["contactId"]
    assert [e.path for e in highlevel.validate_participant("x")] == ["contactId"]  # type: ignore[arg-type]


def test_it_describes_the_form():
    assert [f.name for f in highlevel.BODY_FIELDS] == ["contactId", "locationId"]
    assert highlevel.BODY_FIELDS[1].help == "defaults to the credential's location"
    assert highlevel.PARTICIPANT_FIELDS == []
    assert highlevel.PARTICIPANTS_PATH is None
    assert highlevel.MAX_PARTICIPANTS == 1


# --- prepare, summarize, form round trip ---------------------------------------------------------


def test_it_fills_the_location_from_the_credential():
    assert highlevel.prepare({"contactId": CONTACT}, credential()) == {
        "locationId": LOC,
        "contactId": CONTACT,
    }


def test_it_keeps_a_given_location():
    body = {"contactId": CONTACT, "locationId": LOC}
    assert list(highlevel.prepare(body, credential())) == ["locationId", "contactId"]


def test_it_summarizes_the_contact_as_participant():
    assert highlevel.summarize({"locationId": LOC, "contactId": CONTACT}) == highlevel.Summary("", [CONTACT])


@pytest.mark.parametrize("body", [{"contactId": CONTACT}, {"contactId": CONTACT, "locationId": LOC}])
def test_it_round_trips_the_form(body: dict[str, str]):
    fields, rows = highlevel.fields_from_body(body)
    assert rows == []
    assert highlevel.body_from_fields(fields, rows) == body


def test_it_drops_blank_form_values_and_trims_the_rest():
    body = highlevel.body_from_fields({"contactId": f" {CONTACT} ", "locationId": "  "}, [])
    assert body == {"contactId": CONTACT}


# --- create -------------------------------------------------------------------------------------


def test_it_builds_the_exact_create_request():
    request = highlevel.build_request({"contactId": CONTACT}, credential())
    assert request.method == "POST"
    assert str(request.url) == "https://services.leadconnectorhq.com/conversations/"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Version"] == "2021-04-15"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.content == b'{"locationId":"tDtDnQdgm2LXpyiqYvZ6","contactId":"rTDJGD7SjqDamyzrk5UW"}'


def test_it_sends_to_the_credentials_base_url():
    request = highlevel.build_request({"contactId": CONTACT}, credential(base_url="http://localhost:8025"))
    assert str(request.url) == "http://localhost:8025/conversations/"


def test_it_creates_a_conversation():
    cred = credential()
    http, sent = make_http(cred, created_reply)
    created = highlevel.create(highlevel.prepare({"contactId": CONTACT}, cred), cred, http)
    assert (created.external_id, created.status, created.existed) == (CONV, 201, False)
    assert created.participants == [{"contactId": CONTACT}]
    assert len(sent) == 1
    assert sent[0].headers["User-Agent"].startswith("convadmin/")
    assert http.exchanges[0].status == 201


def test_it_accepts_any_2xx_on_create():
    http, _ = make_http(credential(), lambda r: httpx.Response(200, json={"conversation": {"id": CONV}}))
    assert highlevel.create({"contactId": CONTACT}, credential(), http).external_id == CONV


def test_it_reports_a_2xx_without_an_id_as_an_unknown_outcome():
    error = create_error(lambda r: httpx.Response(201, json={"success": True}))
    assert error.code == "bad_response"
    assert error.outcome_unknown


def test_it_reports_a_2xx_that_says_unsuccessful():
    error = create_error(
        lambda r: httpx.Response(200, json={"success": False, "message": "Contact not found"})
    )
    assert (error.message, error.code) == ("Contact not found", "unsuccessful")


def test_it_reports_a_duplicate_with_the_existing_conversation():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error_reply(400, DUPLICATE)(request)
        return search_reply({"id": CONV, "contactId": CONTACT, "type": "TYPE_PHONE"})

    cred = credential()
    http, sent = make_http(cred, handler)
    with pytest.raises(ProviderError) as info:
        highlevel.create({"contactId": CONTACT}, cred, http)
    error = info.value
    assert error.message == DUPLICATE
    assert (error.code, error.status, error.permanent, error.existing_id) == (
        "duplicate_contact",
        400,
        True,
        CONV,
    )
    search = sent[1]
    assert search.method == "GET"
    assert search.url.path == "/conversations/search"
    assert dict(search.url.params) == {"locationId": LOC, "contactId": CONTACT, "limit": "1"}
    assert search.headers["Version"] == "2021-04-15"


def test_it_searches_again_while_search_lags_behind(sleeps: list[float]):
    replies = iter([search_reply(), search_reply({"id": CONV, "contactId": CONTACT})])

    def handler(request: httpx.Request) -> httpx.Response:
        return error_reply(400, DUPLICATE)(request) if request.method == "POST" else next(replies)

    assert create_error(handler).existing_id == CONV
    assert sleeps == [1.0]


def test_it_reports_a_duplicate_without_id_when_search_never_finds_it(sleeps: list[float]):
    cred = credential()
    http, sent = make_http(
        cred, lambda r: error_reply(400, DUPLICATE)(r) if r.method == "POST" else search_reply()
    )
    with pytest.raises(ProviderError) as info:
        highlevel.create({"contactId": CONTACT}, cred, http)
    assert (info.value.code, info.value.existing_id) == ("duplicate_contact", None)
    assert len(sent) == 4
    assert sleeps == [1.0, 2.0]


def test_it_reports_a_duplicate_even_when_search_is_not_allowed():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error_reply(400, DUPLICATE)(request)
        return error_reply(401, "The token is not authorized for this scope.")(request)

    error = create_error(handler)
    assert (error.message, error.code, error.existing_id) == (DUPLICATE, "duplicate_contact", None)


def test_it_ignores_a_search_result_for_another_contact():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error_reply(400, DUPLICATE)(request)
        return search_reply({"id": CONV, "contactId": "DjpolQ8Je7u1t7OauwFL"})

    assert create_error(handler).existing_id is None


def test_it_maps_a_bad_request():
    error = create_error(error_reply(400, "Bad Request"))
    assert (error.message, error.code, error.status, error.permanent) == (
        "Bad Request",
        "bad_request",
        400,
        True,
    )


def test_it_joins_the_message_array_of_a_422():
    error = create_error(error_reply(422, ["contactId must be a string", "locationId should not be empty"]))
    assert error.message == "contactId must be a string; locationId should not be empty"
    assert (error.code, error.permanent) == ("unprocessable", True)


@pytest.mark.parametrize("message", ["Invalid token: access token is invalid", "Invalid JWT"])
def test_it_maps_an_invalid_private_integration_token_without_refreshing(message: str):
    cred = credential()
    http, sent = make_http(cred, error_reply(401, message))
    with pytest.raises(ProviderError) as info:
        highlevel.create({"contactId": CONTACT}, cred, http)
    assert info.value.message.startswith(message)
    assert (info.value.code, info.value.permanent) == ("invalid_token", True)
    assert len(sent) == 1


def test_it_explains_a_missing_write_scope():
    error = create_error(error_reply(401, "The token is not authorized for this scope."))
    assert error.message.startswith("The token is not authorized for this scope.")
    assert "conversations.write" in error.message
    assert error.code == "missing_scope"


def test_it_explains_a_token_of_the_wrong_type():
    error = create_error(error_reply(401, "This authClass type is not allowed to access this scope."))
    assert error.code == "wrong_token_type"
    assert "sub-account" in error.message


def test_it_explains_a_token_for_another_location():
    error = create_error(error_reply(403, "The token does not have access to this location."))
    assert error.message.startswith("The token does not have access to this location.")
    assert "location" in error.message.split("—")[1]
    assert (error.code, error.permanent) == ("wrong_location", True)


def test_it_hints_at_the_trailing_slash_on_a_404():
    error = create_error(error_reply(404, "Cannot POST /conversations"))
    assert "trailing slash" in error.message
    assert (error.code, error.permanent) == ("not_found", True)


def test_it_maps_a_rate_limit_with_retry_after():
    error = create_error(error_reply(429, "Too Many Requests", {"Retry-After": "7"}))
    assert (error.code, error.permanent, error.retry_after) == ("rate_limited", False, 7.0)


def test_it_waits_for_the_burst_window_without_retry_after():
    headers = {"X-RateLimit-Interval-Milliseconds": "10000", "X-RateLimit-Daily-Remaining": "1500"}
    error = create_error(error_reply(429, "Too Many Requests", headers))
    assert (error.code, error.retry_after) == ("rate_limited", 10.0)


def test_it_says_when_the_daily_limit_is_used_up():
    headers = {"X-RateLimit-Daily-Remaining": "0", "x-ratelimit-daily-reset": "2026-06-02T00:00:00Z"}
    error = create_error(error_reply(429, "Too Many Requests", headers))
    assert error.code == "daily_limit"
    assert "daily" in error.message
    assert "2026-06-02T00:00:00Z" in error.message
    assert not error.permanent


def test_it_marks_a_server_error_on_create_as_retryable_with_unknown_outcome():
    error = create_error(error_reply(500, "Internal server error"))
    assert (error.code, error.status, error.permanent, error.outcome_unknown) == (
        "server_error",
        500,
        False,
        True,
    )
    assert "Internal server error" in error.message


def test_it_explains_a_body_that_is_not_json():
    error = create_error(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert "not JSON" in error.message
    assert (error.status, error.permanent) == (502, False)


def test_it_explains_a_client_error_that_is_not_json():
    error = create_error(lambda r: httpx.Response(404, text="Not Found"))
    assert "not JSON" in error.message
    assert "trailing slash" in error.message
    assert error.permanent


def test_it_leaves_the_outcome_unknown_after_a_read_timeout():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    error = create_error(handler)
    assert (error.code, error.outcome_unknown, error.permanent) == ("timeout", True, False)


def test_it_reports_a_refused_connection_as_retryable():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    error = create_error(handler)
    assert (error.code, error.outcome_unknown, error.permanent) == ("connect_error", False, False)


def test_raise_for_response_returns_on_success():
    assert highlevel.raise_for_response(httpx.Response(201, json={"success": True})) is None


# --- OAuth refresh --------------------------------------------------------------------------------


def oauth_handler(token_reply: httpx.Response | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return token_reply or httpx.Response(
                200,
                json={
                    "access_token": NEW_TOKEN,
                    "token_type": "Bearer",
                    "expires_in": 86399,
                    "refresh_token": NEW_REFRESH,
                    "scope": "conversations.write conversations.readonly",
                    "userType": "Location",
                    "locationId": LOC,
                },
            )
        if request.headers["Authorization"] != f"Bearer {NEW_TOKEN}":
            return error_reply(401, "Invalid JWT")(request)
        return created_reply(request)

    return handler


def test_it_refreshes_an_expired_oauth_token_and_retries_once(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="providers.http")
    changes: list[dict[str, str]] = []
    cred = oauth_credential(changes)
    http, sent = make_http(cred, oauth_handler())
    created = highlevel.create({"contactId": CONTACT}, cred, http)
    assert created.external_id == CONV
    assert [(r.method, r.url.path) for r in sent] == [
        ("POST", "/conversations/"),
        ("POST", "/oauth/token"),
        ("POST", "/conversations/"),
    ]
    token_request = sent[1]
    assert str(token_request.url) == "https://services.leadconnectorhq.com/oauth/token"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert token_request.headers["Version"] == "2021-07-28"
    assert parse_qsl(token_request.content.decode()) == [
        ("grant_type", "refresh_token"),
        ("refresh_token", REFRESH),
        ("client_id", "6578278e879ad2646715ba9c-abc123"),
        ("client_secret", CLIENT_SECRET),
        ("user_type", "Location"),
    ]
    assert sent[2].content == sent[0].content
    assert cred.secrets["token"] == NEW_TOKEN
    assert cred.secrets["refresh_token"] == NEW_REFRESH
    assert changes == [dict(cred.secrets)]
    assert_no_secret(http, caplog, "expired-access-token", REFRESH, CLIENT_SECRET, NEW_TOKEN, NEW_REFRESH)


def test_a_refresh_stores_when_the_new_access_token_expires():
    cred = oauth_credential()
    http, _ = make_http(cred, oauth_handler())
    before = datetime.now(UTC)
    highlevel.create({"contactId": CONTACT}, cred, http)
    expires = datetime.fromisoformat(cred.secrets[highlevel.TOKEN_EXPIRES_AT])
    assert timedelta(seconds=86390) <= expires - before <= timedelta(seconds=86410)
    # an expiry is no rotation: it is left out of the fingerprint and the rotation audit
    assert highlevel.TOKEN_EXPIRES_AT in highlevel.CACHED_SECRETS


def test_it_keeps_the_refresh_token_when_the_reply_has_none():
    cred = oauth_credential()
    http, _ = make_http(cred, oauth_handler(httpx.Response(200, json={"access_token": NEW_TOKEN})))
    highlevel.create({"contactId": CONTACT}, cred, http)
    assert (cred.secrets["token"], cred.secrets["refresh_token"]) == (NEW_TOKEN, REFRESH)


def test_it_reports_a_refused_refresh_without_retrying():
    reply = httpx.Response(
        400, json={"error": "invalid_grant", "error_description": "Invalid grant: refresh token is invalid"}
    )
    cred = oauth_credential()
    http, sent = make_http(cred, oauth_handler(reply))
    with pytest.raises(ProviderError) as info:
        highlevel.create({"contactId": CONTACT}, cred, http)
    assert info.value.code == "invalid_grant"
    assert "refresh token is invalid" in info.value.message
    assert info.value.permanent
    assert len(sent) == 2
    assert cred.secrets["refresh_token"] == REFRESH


def test_it_refreshes_only_once():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": NEW_TOKEN, "refresh_token": NEW_REFRESH})
        return error_reply(401, "Invalid JWT")(request)

    cred = oauth_credential()
    http, sent = make_http(cred, handler)
    with pytest.raises(ProviderError) as info:
        highlevel.create({"contactId": CONTACT}, cred, http)
    assert info.value.code == "invalid_token"
    assert len(sent) == 3


def test_it_does_not_refresh_for_a_missing_scope():
    cred = oauth_credential()
    http, sent = make_http(cred, error_reply(401, "The token is not authorized for this scope."))
    with pytest.raises(ProviderError):
        highlevel.create({"contactId": CONTACT}, cred, http)
    assert len(sent) == 1


def test_it_refreshes_during_a_credential_check():
    changes: list[dict[str, str]] = []
    cred = oauth_credential(changes)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": NEW_TOKEN, "refresh_token": NEW_REFRESH})
        if request.headers["Authorization"] != f"Bearer {NEW_TOKEN}":
            return error_reply(401, "Invalid token: access token is invalid")(request)
        return search_reply()

    http, _ = make_http(cred, handler)
    assert highlevel.check(cred, http) == f"Token accepted for location {LOC}"
    assert changes[-1]["refresh_token"] == NEW_REFRESH


# --- lookup, fetch, check -------------------------------------------------------------------------


def test_it_looks_a_conversation_up_by_contact():
    cred = credential()
    http, sent = make_http(cred, lambda r: search_reply({"id": CONV, "contactId": CONTACT}))
    found = highlevel.lookup({"contactId": CONTACT}, cred, http)
    assert found is not None
    assert (found.external_id, found.existed, found.status) == (CONV, True, 200)
    assert dict(sent[0].url.params) == {"locationId": LOC, "contactId": CONTACT, "limit": "1"}


def test_it_finds_nothing_to_look_up(sleeps: list[float]):
    http, sent = make_http(credential(), lambda r: search_reply())
    assert highlevel.lookup({"contactId": CONTACT}, credential(), http) is None
    assert len(sent) == 3


def test_it_fetches_a_flat_conversation_with_its_contact():
    conversation = {"id": CONV, "contactId": CONTACT, "locationId": LOC, "type": 1, "unreadCount": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/contacts/{CONTACT}":
            assert request.headers["Version"] == "2021-07-28"
            contact = {"id": CONTACT, "firstName": "Ada", "lastName": "Byron", "email": "ada@example.com"}
            return httpx.Response(200, json={"contact": contact})
        assert request.url.path == f"/conversations/{CONV}"
        assert request.headers["Version"] == "2021-04-15"
        return httpx.Response(200, json=conversation)

    cred = credential()
    http, _ = make_http(cred, handler)
    fetched = highlevel.fetch(CONV, cred, http)
    assert (fetched.external_id, fetched.conversation) == (CONV, conversation)
    assert fetched.participants == [{"contactId": CONTACT, "name": "Ada Byron", "email": "ada@example.com"}]


def test_it_fetches_a_wrapped_conversation_and_keeps_the_contact_id_when_the_contact_is_unreadable():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/contacts/"):
            return error_reply(401, "The token is not authorized for this scope.")(request)
        return httpx.Response(200, json={"success": True, "conversation": {"id": CONV, "contactId": CONTACT}})

    http, _ = make_http(credential(), handler)
    fetched = highlevel.fetch(CONV, credential(), http)
    assert fetched.conversation == {"id": CONV, "contactId": CONTACT}
    assert fetched.participants == [{"contactId": CONTACT}]


def test_it_keeps_the_contact_id_when_the_contact_read_times_out():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/contacts/"):
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"id": CONV, "contactId": CONTACT})

    http, _ = make_http(credential(), handler)
    assert highlevel.fetch(CONV, credential(), http).participants == [{"contactId": CONTACT}]


def test_it_reports_an_unknown_conversation():
    http, _ = make_http(credential(), error_reply(404, "Conversation not found"))
    with pytest.raises(ProviderError) as info:
        highlevel.fetch(CONV, credential(), http)
    assert info.value.code == "not_found"


def test_it_escapes_the_conversation_id_in_the_path():
    http, sent = make_http(credential(), error_reply(404, "Not Found"))
    with pytest.raises(ProviderError):
        highlevel.fetch("../contacts/x", credential(), http)
    assert sent[0].url.raw_path == b"/conversations/..%2Fcontacts%2Fx"


def test_it_checks_the_credential_with_a_one_result_search():
    cred = credential()
    http, sent = make_http(cred, lambda r: search_reply())
    assert highlevel.check(cred, http) == f"Token accepted for location {LOC}"
    assert sent[0].method == "GET"
    assert sent[0].url.path == "/conversations/search"
    assert dict(sent[0].url.params) == {"locationId": LOC, "limit": "1"}
    assert sent[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_it_explains_a_check_without_the_read_scope():
    http, _ = make_http(credential(), error_reply(401, "The token is not authorized for this scope."))
    with pytest.raises(ProviderError) as info:
        highlevel.check(credential(), http)
    assert "conversations.readonly" in info.value.message


def test_it_reports_a_check_against_another_location():
    http, _ = make_http(credential(), error_reply(403, "The token does not have access to this location."))
    with pytest.raises(ProviderError) as info:
        highlevel.check(credential(), http)
    assert info.value.code == "wrong_location"


# --- secrets --------------------------------------------------------------------------------------


def test_it_keeps_the_token_out_of_exchanges_and_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="providers.http")

    def handler(request: httpx.Request) -> httpx.Response:
        # A reply that echoes the token (as some gateways do) must be masked too.
        return httpx.Response(
            201, json={"conversation": {"id": CONV}, "debug": request.headers["Authorization"]}
        )

    cred = credential()
    http, _ = make_http(cred, handler)
    highlevel.create({"contactId": CONTACT}, cred, http)
    assert http.exchanges[0].request_headers["authorization"] == "Bearer [redacted]"
    assert "POST https://services.leadconnectorhq.com/conversations/" in caplog.text
    assert_no_secret(http, caplog, TOKEN)
