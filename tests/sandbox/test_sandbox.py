"""The sandbox, driven with plain httpx (the provider modules get their own end-to-end tests)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from providers.sandbox import Sandbox, find_trigger
from providers.sandbox.mixin import unique_conversation_id

ROOT = Path(__file__).resolve().parents[2]
GRAPH_SCOPE = "offline_access https://graph.microsoft.com/Group.ReadWrite.All"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed="tests", slow_seconds=3.0) as sb:
        yield sb


# -- helpers ---------------------------------------------------------------------------------
def mixin_jwt(cred, method, target, body=b"", key_hex=None, **claims):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex or cred["session_private_key"]))
    moment = int(time.time())
    payload = {
        "uid": cred["app_id"],
        "sid": cred["session_id"],
        "iat": moment,
        "exp": moment + 300,
        "jti": str(uuid.uuid4()),
        "sig": hashlib.sha256(method.encode() + target.encode() + body).hexdigest(),
        "scp": "FULL",
    } | claims
    return jwt.encode(payload, key, algorithm="EdDSA")


def mixin(sandbox, method, target, body=None, token=None, timeout=5.0):
    cred = sandbox.credentials()["mixin"]
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Authorization": f"Bearer {token or mixin_jwt(cred, method, target, raw)}"}
    return httpx.request(method, cred["base_url"] + target, content=raw, headers=headers, timeout=timeout)


def mixin_group(name):
    return {
        "category": "GROUP",
        "conversation_id": str(uuid.uuid4()),
        "name": name,
        "participants": [{"user_id": str(uuid.uuid4())}],
    }


def twilio(sandbox, method, path, data=None, auth=None, timeout=5.0):
    cred = sandbox.credentials()["twilio"]
    auth = auth or (cred["account_sid"], cred["auth_token"])
    return httpx.request(method, cred["base_url"] + path, data=data, auth=auth, timeout=timeout)


def highlevel(sandbox, method, path, body=None, token=None, version="2021-04-15", timeout=5.0):
    cred = sandbox.credentials()["highlevel"]
    headers = {"Authorization": f"Bearer {token or cred['token']}", "Accept": "application/json"}
    if version:
        headers["Version"] = version
    return httpx.request(method, cred["base_url"] + path, json=body, headers=headers, timeout=timeout)


def contact_id(prefix=""):
    return (prefix + secrets.token_hex(10))[:24]


def graph_token(sandbox, **form):
    cred = sandbox.credentials()["msgraph"]
    data = {"client_id": cred["client_id"], "client_secret": cred["client_secret"]} | form
    return httpx.post(f"{cred['login_url']}/{cred['tenant_id']}/oauth2/v2.0/token", data=data)


def app_only(sandbox):
    return graph_token(
        sandbox, grant_type="client_credentials", scope="https://graph.microsoft.com/.default"
    ).json()["access_token"]


def delegated(sandbox):
    refresh = sandbox.credentials()["msgraph"]["refresh_token"]
    reply = graph_token(sandbox, grant_type="refresh_token", refresh_token=refresh, scope=GRAPH_SCOPE)
    return reply.json()["access_token"]


def graph(sandbox, method, path, token, body=None, timeout=5.0):
    cred = sandbox.credentials()["msgraph"]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, cred["base_url"] + path, json=body, headers=headers, timeout=timeout)


def graph_body(topic, address="adele@sandbox.test"):
    post = {
        "body": {"contentType": "text", "content": "Kick-off"},
        "newParticipants": [{"emailAddress": {"name": "Adele", "address": address}}],
    }
    return {"topic": topic, "threads": [{"posts": [post]}]}


# -- Mixin -----------------------------------------------------------------------------------
def test_mixin_unique_conversation_id_matches_the_sdk_vector():
    a, b = "965e5c6e-434c-3fa9-b780-c50f43cd955c", "d1e9ec7e-199d-4578-91a0-a69d9a7ba048"
    assert (
        unique_conversation_id(a, b) == unique_conversation_id(b, a) == "60478c27-1052-3df5-b938-b96a8b907e76"
    )


def test_mixin_me_returns_the_app_user(sandbox):
    reply = mixin(sandbox, "GET", "/me")
    assert reply.status_code == 200
    assert reply.json()["data"]["user_id"] == sandbox.credentials()["mixin"]["app_id"]
    assert reply.json()["data"]["full_name"] == "Sandbox Bot"


@pytest.mark.parametrize(
    "bad",
    [
        {"sig": "0" * 64},
        {"exp": int(time.time()) - 60},
        {"uid": str(uuid.uuid4())},
        {"key_hex": "11" * 32},
    ],
    ids=["wrong-sig", "expired", "other-uid", "other-key"],
)
def test_mixin_rejects_a_bad_token_with_202_and_code_401(sandbox, bad):
    cred = sandbox.credentials()["mixin"]
    reply = mixin(sandbox, "GET", "/me", token=mixin_jwt(cred, "GET", "/me", **bad))
    assert reply.status_code == 202
    assert reply.json() == {
        "error": {"status": 202, "code": 401, "description": "Unauthorized, maybe invalid token."}
    }


def test_mixin_rejects_a_missing_or_reused_token(sandbox):
    cred = sandbox.credentials()["mixin"]
    assert httpx.get(cred["base_url"] + "/me").json()["error"]["code"] == 401
    token = mixin_jwt(cred, "GET", "/me")
    assert mixin(sandbox, "GET", "/me", token=token).status_code == 200
    assert mixin(sandbox, "GET", "/me", token=token).json()["error"]["code"] == 401


def test_mixin_signs_the_query_string_too(sandbox):
    cred = sandbox.credentials()["mixin"]
    token = mixin_jwt(cred, "GET", "/me")
    reply = httpx.get(cred["base_url"] + "/me?x=1", headers={"Authorization": f"Bearer {token}"})
    assert reply.json()["error"]["code"] == 401


def test_mixin_creates_a_contact_and_returns_the_same_one_again(sandbox):
    app_id = sandbox.credentials()["mixin"]["app_id"]
    user = str(uuid.uuid4())
    body = {
        "category": "CONTACT",
        "conversation_id": unique_conversation_id(app_id, user),
        "participants": [{"user_id": user}],
    }
    first = mixin(sandbox, "POST", "/conversations", body)
    assert first.status_code == 200
    data = first.json()["data"]
    assert data["conversation_id"] == body["conversation_id"]
    assert {p["user_id"] for p in data["participants"]} == {app_id, user}
    assert mixin(sandbox, "POST", "/conversations", body).json()["data"] == data
    assert mixin(sandbox, "GET", f"/conversations/{body['conversation_id']}").json()["data"] == data


def test_mixin_group_lists_the_owner(sandbox):
    body = mixin_group("Team") | {"announcement": "Hello"}
    data = mixin(sandbox, "POST", "/conversations", body).json()["data"]
    roles = {p["user_id"]: p["role"] for p in data["participants"]}
    assert roles[sandbox.credentials()["mixin"]["app_id"]] == "OWNER"
    assert (data["name"], data["announcement"], data["category"]) == ("Team", "Hello", "GROUP")


def test_mixin_refuses_a_wrong_contact_id_with_10002(sandbox):
    body = {
        "category": "CONTACT",
        "conversation_id": str(uuid.uuid4()),
        "participants": [{"user_id": str(uuid.uuid4())}],
    }
    error = mixin(sandbox, "POST", "/conversations", body).json()["error"]
    assert (error["code"], error["description"]) == (10002, "The request data has invalid field.")
    assert error["extra"]["field"] == "conversation_id"


def test_mixin_unknown_conversation_is_code_404(sandbox):
    reply = mixin(sandbox, "GET", f"/conversations/{uuid.uuid4()}")
    assert (reply.status_code, reply.json()["error"]["code"]) == (202, 404)


# -- Twilio ----------------------------------------------------------------------------------
def test_twilio_rejects_a_wrong_auth_token(sandbox):
    reply = twilio(
        sandbox, "GET", "/v1/Configuration", auth=(sandbox.credentials()["twilio"]["account_sid"], "x" * 32)
    )
    assert reply.status_code == 401
    body = reply.json()
    assert (body["code"], body["message"], body["status"]) == (20003, "Authenticate", 401)
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20003"


def test_twilio_check_reads_work_with_the_api_key(sandbox):
    cred = sandbox.credentials(variants=True)["twilio-api-key"]
    auth = (cred["api_key_sid"], cred["api_key_secret"])
    assert twilio(sandbox, "GET", "/v1/Configuration", auth=auth).json()["account_sid"] == cred["account_sid"]
    assert twilio(sandbox, "GET", "/v1/Services?PageSize=1", auth=auth).json()["meta"]["key"] == "services"


def test_twilio_reads_repeated_participants_and_pages_them(sandbox):
    items = [
        json.dumps({"identity": "agent-7"}),
        json.dumps({"messaging_binding": {"address": "+15558675310", "proxy_address": "+15017122661"}}),
        json.dumps({"identity": "agent-8"}),
    ]
    form = {
        "FriendlyName": "Order 123",
        "UniqueName": "order-123",
        "State": "active",
        "Timers.Inactive": "PT1H",
    }
    reply = twilio(sandbox, "POST", "/v1/ConversationWithParticipants", data=form | {"Participant": items})
    assert reply.status_code == 202
    conversation = reply.json()
    assert conversation["sid"].startswith("CH") and conversation["attributes"] == "{}"
    assert twilio(sandbox, "GET", "/v1/Conversations/order-123").json()["sid"] == conversation["sid"]
    page = twilio(sandbox, "GET", f"/v1/Conversations/{conversation['sid']}/Participants?PageSize=2").json()
    assert [p["identity"] for p in page["participants"]] == ["agent-7", None]
    assert page["participants"][1]["messaging_binding"]["address"] == "+15558675310"
    last = httpx.get(
        page["meta"]["next_page_url"],
        auth=(conversation["account_sid"], sandbox.credentials()["twilio"]["auth_token"]),
    )
    assert [p["identity"] for p in last.json()["participants"]] == ["agent-8"]
    assert last.json()["meta"]["next_page_url"] is None


def test_twilio_answers_201_without_participants(sandbox):
    cred = sandbox.credentials()["twilio"]
    service = twilio(sandbox, "GET", "/v1/Configuration").json()["default_chat_service_sid"]
    reply = twilio(
        sandbox, "POST", f"/v1/Services/{service}/ConversationWithParticipants", data={"FriendlyName": "x"}
    )
    assert reply.status_code == 201
    assert reply.json()["url"].startswith(cred["base_url"])


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"Participant": ["{not json"]}, 50424),
        ({"Participant": [json.dumps({"identity": f"a{i}"}) for i in range(11)]}, 50426),
        ({"Participant": [json.dumps({"identity": "a"})] * 2}, 50433),
        ({"State": "closed"}, 50384),
        ({"Timers.Inactive": "PT5M"}, 50382),
        ({"State": "active", "Timers.Closed": "PT5M"}, 50379),
        ({"UniqueName": "CH" + "a" * 32}, 50390),
        (
            {
                "Participant": [
                    json.dumps(
                        {"messaging_binding": {"address": "+15550001111", "proxy_address": "+15550001111"}}
                    )
                ]
            },
            50409,
        ),
    ],
)
def test_twilio_refuses_invalid_creates(sandbox, form, code):
    reply = twilio(sandbox, "POST", "/v1/ConversationWithParticipants", data=form)
    assert (reply.status_code, reply.json()["code"]) == (400, code)


def test_twilio_refuses_an_address_already_in_a_conversation(sandbox):
    item = json.dumps({"messaging_binding": {"address": "+15550002222", "proxy_address": "+15017122661"}})
    first = twilio(sandbox, "POST", "/v1/ConversationWithParticipants", data={"Participant": [item]})
    again = twilio(sandbox, "POST", "/v1/ConversationWithParticipants", data={"Participant": [item]})
    assert again.json()["code"] == 50416
    assert first.json()["sid"] in again.json()["message"]


# -- HighLevel -------------------------------------------------------------------------------
def test_highlevel_needs_the_trailing_slash(sandbox):
    reply = highlevel(sandbox, "POST", "/conversations", {})
    assert reply.status_code == 404
    assert reply.json() == {"statusCode": 404, "message": "Cannot POST /conversations", "error": "Not Found"}


def test_highlevel_rejects_an_unknown_token_and_a_missing_version(sandbox):
    reply = highlevel(sandbox, "GET", "/conversations/search?locationId=x", token="pit-nope")
    assert (reply.status_code, reply.json()["message"]) == (401, "Invalid token: access token is invalid")
    reply = highlevel(sandbox, "GET", "/conversations/search?locationId=x", version=None)
    assert reply.status_code == 400 and "Version" in reply.json()["message"]


def test_highlevel_creates_refuses_the_duplicate_and_search_finds_it(sandbox):
    cred = sandbox.credentials()["highlevel"]
    body = {"locationId": cred["location_id"], "contactId": contact_id()}
    created = highlevel(sandbox, "POST", "/conversations/", body)
    assert created.status_code == 201
    assert created.json()["success"] is True and created.json()["traceId"]
    assert int(created.headers["X-RateLimit-Remaining"]) < int(created.headers["X-RateLimit-Max"])
    conversation = created.json()["conversation"]
    again = highlevel(sandbox, "POST", "/conversations/", body)
    assert again.status_code == 400
    assert again.json()["message"] == f"Conversation with the contact id:{body['contactId']} already exists!"
    search = highlevel(
        sandbox,
        "GET",
        f"/conversations/search?locationId={cred['location_id']}&contactId={body['contactId']}&limit=1",
    )
    assert search.json()["conversations"][0]["id"] == conversation["id"]
    assert (
        highlevel(sandbox, "GET", f"/conversations/{conversation['id']}").json()["contactId"]
        == body["contactId"]
    )
    contact = highlevel(sandbox, "GET", f"/contacts/{body['contactId']}", version="2021-07-28")
    assert contact.json()["contact"]["id"] == body["contactId"]


def test_highlevel_refuses_another_location_and_extra_keys(sandbox):
    reply = highlevel(sandbox, "POST", "/conversations/", {"locationId": "A" * 20, "contactId": contact_id()})
    assert (reply.status_code, reply.json()["message"]) == (
        403,
        "The token does not have access to this location.",
    )
    cred = sandbox.credentials()["highlevel"]
    reply = highlevel(
        sandbox, "POST", "/conversations/", {"locationId": cred["location_id"], "contactId": "x" * 20, "x": 1}
    )
    assert reply.status_code == 422 and reply.json()["message"] == ["property x should not exist"]


def test_highlevel_refresh_rotates_the_refresh_token(sandbox):
    cred = sandbox.credentials(variants=True)["highlevel-oauth"]
    form = {k: cred[k] for k in ("refresh_token", "client_id", "client_secret")} | {
        "grant_type": "refresh_token",
        "user_type": "Location",
    }
    url = cred["base_url"] + "/oauth/token"
    first = httpx.post(url, data=form)
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["refresh_token"] != cred["refresh_token"] and tokens["locationId"] == cred["location_id"]
    assert sandbox.credentials(variants=True)["highlevel-oauth"]["refresh_token"] == tokens["refresh_token"]
    reused = httpx.post(url, data=form)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    body = {"locationId": cred["location_id"], "contactId": contact_id()}
    assert (
        highlevel(sandbox, "POST", "/conversations/", body, token=tokens["access_token"]).status_code == 201
    )
    wrong = httpx.post(url, data=form | {"client_secret": "nope", "refresh_token": tokens["refresh_token"]})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")


# -- Microsoft Graph -------------------------------------------------------------------------
def test_graph_rejects_a_wrong_client_secret(sandbox):
    reply = graph_token(
        sandbox,
        grant_type="client_credentials",
        scope="https://graph.microsoft.com/.default",
        client_secret="nope",
    )
    assert reply.status_code == 401
    body = reply.json()
    assert (body["error"], body["error_codes"]) == ("invalid_client", [7000215])
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def test_graph_app_only_can_read_but_not_create(sandbox):
    token = app_only(sandbox)
    gid = sandbox.credentials()["msgraph"]["group_id"]
    group = graph(sandbox, "GET", f"/v1.0/groups/{gid}?$select=id,mailEnabled,groupTypes", token).json()
    assert group["groupTypes"] == ["Unified"] and group["mailEnabled"] is True and "displayName" not in group
    reply = graph(sandbox, "POST", f"/v1.0/groups/{gid}/conversations", token, graph_body("Order 1"))
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "ErrorAccessDenied"
    assert reply.json()["error"]["message"] == "Access is denied. Check credentials and try again."
    assert graph(sandbox, "GET", "/v1.0/me", token).status_code == 400


def test_graph_delegated_creates_and_reads_back(sandbox):
    token = delegated(sandbox)
    gid = sandbox.credentials()["msgraph"]["group_id"]
    assert graph(sandbox, "GET", "/v1.0/me", token).json()["userPrincipalName"] == "qa@sandbox.test"
    reply = graph(sandbox, "POST", f"/v1.0/groups/{gid}/conversations", token, graph_body("Order 123"))
    assert reply.status_code == 201
    cid, tid = reply.json()["id"], reply.json()["threads"][0]["id"]
    assert cid.startswith("AAQkAG") and cid.endswith("=")
    assert (
        graph(sandbox, "GET", f"/v1.0/groups/{gid}/conversations/{cid}", token).json()["topic"] == "Order 123"
    )
    threads = graph(sandbox, "GET", f"/v1.0/groups/{gid}/conversations/{cid}/threads", token).json()["value"]
    assert [t["id"] for t in threads] == [tid]
    posts = graph(sandbox, "GET", f"/v1.0/groups/{gid}/threads/{tid}/posts", token).json()["value"]
    assert posts[0]["body"]["content"] == "Kick-off" and posts[0]["conversationId"] == cid
    unknown = graph(sandbox, "GET", f"/v1.0/groups/{uuid.uuid4()}", token)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "Request_ResourceNotFound")


def test_graph_lists_pages_with_next_link_and_select(sandbox):
    token = delegated(sandbox)
    gid = sandbox.credentials()["msgraph"]["group_id"]
    for topic in ("Page A", "Page B"):
        graph(sandbox, "POST", f"/v1.0/groups/{gid}/conversations", token, graph_body(topic))
    first = graph(sandbox, "GET", f"/v1.0/groups/{gid}/conversations?$top=1&$select=topic", token).json()
    assert [set(c) for c in first["value"]] == [{"id", "topic"}]
    second = httpx.get(first["@odata.nextLink"], headers={"Authorization": f"Bearer {token}"}).json()
    assert set(second["value"][0]) == {"id", "topic"}
    assert second["value"][0]["id"] != first["value"][0]["id"]


def test_graph_refresh_rotates_and_the_old_token_fails(sandbox):
    old = sandbox.credentials()["msgraph"]["refresh_token"]
    first = graph_token(sandbox, grant_type="refresh_token", refresh_token=old, scope=GRAPH_SCOPE)
    assert first.status_code == 200 and first.json()["refresh_token"] != old
    assert sandbox.credentials()["msgraph"]["refresh_token"] == first.json()["refresh_token"]
    again = graph_token(sandbox, grant_type="refresh_token", refresh_token=old, scope=GRAPH_SCOPE)
    assert (again.status_code, again.json()["error"], again.json()["error_codes"]) == (
        400,
        "invalid_grant",
        [70008],
    )


def test_graph_authorization_code_flow_checks_pkce(sandbox):
    cred = sandbox.credentials()["msgraph"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://127.0.0.1:9/callback"
    params = {
        "client_id": cred["client_id"],
        "response_type": "code",
        "redirect_uri": redirect,
        "scope": GRAPH_SCOPE,
        "state": "s-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    reply = httpx.get(f"{cred['login_url']}/{cred['tenant_id']}/oauth2/v2.0/authorize", params=params)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    query = parse_qs(location.query)
    assert query["state"] == ["s-1"]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": redirect,
        "scope": GRAPH_SCOPE,
    }
    wrong = graph_token(sandbox, **form, code_verifier="not-the-verifier")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    good = graph_token(sandbox, **form, code_verifier=verifier)
    assert good.status_code == 200 and good.json()["refresh_token"]
    assert graph(sandbox, "GET", "/v1.0/me", good.json()["access_token"]).status_code == 200
    assert graph_token(sandbox, **form, code_verifier=verifier).json()["error_codes"] == [54005]
    posted = httpx.get(
        f"{cred['login_url']}/{cred['tenant_id']}/oauth2/v2.0/authorize",
        params=params | {"response_mode": "form_post"},
    )
    assert (
        posted.status_code == 200 and f'action="{redirect}"' in posted.text and 'name="code"' in posted.text
    )


# -- QA triggers -----------------------------------------------------------------------------
def create_with(sandbox, provider, trigger, timeout=5.0):
    """Send a create carrying ``trigger``; return (response or exception, lookup function)."""
    tag = f"{trigger}-{secrets.token_hex(4)}"
    if provider == "mixin":
        body = mixin_group(f"{tag} group")

        def send():
            return mixin(sandbox, "POST", "/conversations", body, timeout=timeout)

        def lookup():
            return "data" in mixin(sandbox, "GET", f"/conversations/{body['conversation_id']}").json()

    elif provider == "twilio":

        def send():
            data = {"UniqueName": tag, "Participant": [json.dumps({"identity": "agent-1"})]}
            return twilio(sandbox, "POST", "/v1/ConversationWithParticipants", data=data, timeout=timeout)

        def lookup():
            return twilio(sandbox, "GET", f"/v1/Conversations/{tag}").status_code == 200

    elif provider == "highlevel":
        cred = sandbox.credentials()["highlevel"]
        contact = contact_id(trigger.replace("-", ""))

        def send():
            body = {"locationId": cred["location_id"], "contactId": contact}
            return highlevel(sandbox, "POST", "/conversations/", body, timeout=timeout)

        def lookup():
            path = f"/conversations/search?locationId={cred['location_id']}&contactId={contact}"
            return highlevel(sandbox, "GET", path).json()["total"] == 1

    else:
        token = delegated(sandbox)
        gid = sandbox.credentials()["msgraph"]["group_id"]

        def send():
            return graph(
                sandbox, "POST", f"/v1.0/groups/{gid}/conversations", token, graph_body(tag), timeout=timeout
            )

        def lookup():
            items = graph(sandbox, "GET", f"/v1.0/groups/{gid}/conversations?$top=999", token).json()["value"]
            return any(c["topic"] == tag for c in items)

    return send, lookup


PROVIDERS = ["mixin", "twilio", "highlevel", "msgraph"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fail_500_answers_500_in_the_provider_shape(sandbox, provider):
    send, lookup = create_with(sandbox, provider, "fail-500")
    reply = send()
    assert reply.status_code == 500
    body = reply.json()
    shape = {
        "mixin": lambda: body["error"]["code"] == 500,
        "twilio": lambda: body["code"] == 20500 and body["status"] == 500,
        "highlevel": lambda: body["statusCode"] == 500,
        "msgraph": lambda: body["error"]["code"] == "generalException",
    }
    assert shape[provider]()
    assert not lookup()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_answers_429_with_retry_after(sandbox, provider):
    send, lookup = create_with(sandbox, provider, "rate-limit")
    reply = send()
    assert reply.headers["Retry-After"] == "2"
    if provider == "mixin":  # Mixin sends client errors as HTTP 202
        assert (reply.status_code, reply.json()["error"]["code"]) == (202, 429)
    else:
        assert reply.status_code == 429
    assert not lookup()


@pytest.mark.parametrize(
    ("provider", "status"), [("mixin", 200), ("twilio", 409), ("highlevel", 400), ("msgraph", 409)]
)
def test_duplicate_answers_the_provider_duplicate_and_the_existing_one_is_found(sandbox, provider, status):
    send, lookup = create_with(sandbox, provider, "duplicate")
    reply = send()
    assert reply.status_code == status
    expected = {
        "mixin": lambda b: "data" in b,
        "twilio": lambda b: b["code"] == 50353,
        "highlevel": lambda b: b["message"].endswith("already exists!"),
        "msgraph": lambda b: b["error"]["code"] == "nameAlreadyExists",
    }
    assert expected[provider](reply.json())
    assert lookup()


@pytest.mark.parametrize(
    ("provider", "status"), [("mixin", 200), ("twilio", 202), ("highlevel", 201), ("msgraph", 201)]
)
def test_invalid_json_answers_success_with_a_broken_body(sandbox, provider, status):
    send, lookup = create_with(sandbox, provider, "invalid-json")
    reply = send()
    assert reply.status_code == status
    with pytest.raises(ValueError):
        reply.json()
    assert lookup()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_times_out_but_the_conversation_exists(sandbox, provider):
    send, lookup = create_with(sandbox, provider, "slow", timeout=0.5)
    with pytest.raises(httpx.ReadTimeout):
        send()
    assert lookup()


def test_triggers_ignore_case_and_separators():
    assert find_trigger("FAIL_500 please") == "fail-500"
    assert find_trigger(None, "ratelimitAAAAAAAAAAA") == "rate-limit"
    assert find_trigger("Order 123", None) is None


# -- credentials and the command line ----------------------------------------------------------
def _without_urls(creds):
    return {name: {k: v for k, v in c.items() if not k.endswith("_url")} for name, c in creds.items()}


def test_credentials_are_deterministic_per_seed_and_well_formed():
    with Sandbox(seed="demo") as one, Sandbox(seed="demo") as two, Sandbox() as other:
        first = _without_urls(one.credentials(variants=True))
        assert first == _without_urls(two.credentials(variants=True))
        assert first != _without_urls(other.credentials(variants=True))
        creds = one.credentials()
    assert re.fullmatch(r"[0-9a-f]{64}", creds["mixin"]["session_private_key"])
    assert set(creds["mixin"]) == {
        "app_id",
        "session_id",
        "server_public_key",
        "session_private_key",
        "base_url",
    }
    assert re.fullmatch(r"AC[0-9a-f]{32}", creds["twilio"]["account_sid"])
    assert re.fullmatch(r"pit-[0-9a-f-]{36}", creds["highlevel"]["token"])
    assert re.fullmatch(r"[A-Za-z0-9]{20}", creds["highlevel"]["location_id"])
    for key in ("tenant_id", "client_id", "group_id"):
        assert uuid.UUID(creds["msgraph"][key])
    assert creds["msgraph"]["base_url"] == creds["msgraph"]["login_url"]


def _free_base_port():
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        sockets = []
        try:
            for offset in range(4):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    pytest.skip("no four consecutive free ports")


def test_command_line_prints_the_urls_and_writes_credentials(tmp_path):
    port, out = _free_base_port(), tmp_path / "creds.json"
    command = [sys.executable, "-m", "providers.sandbox", "--port", str(port), "--seed", "cli"]
    proc = subprocess.Popen(
        [*command, "--credentials-out", str(out), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, bufsize=0
    )
    try:
        lines = []
        while len(lines) < 4 and select.select([proc.stdout], [], [], 15)[0]:
            lines.append(proc.stdout.readline().decode().strip())
        assert lines == [f"{name} http://127.0.0.1:{port + i}" for i, name in enumerate(PROVIDERS)]
        assert os.stat(out).st_mode & 0o777 == 0o600
        cred = json.loads(out.read_text())["twilio"]
        reply = httpx.get(
            cred["base_url"] + "/v1/Configuration", auth=(cred["account_sid"], cred["auth_token"])
        )
        assert reply.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# -- transport faults and introspection (used by `make faults`) ---------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_reset_before_drops_the_connection_and_creates_nothing(sandbox, provider):
    send, lookup = create_with(sandbox, provider, "reset-before")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        send()
    assert not lookup()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reset_after_creates_then_drops_the_connection(sandbox, provider):
    send, lookup = create_with(sandbox, provider, "reset-after")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        send()
    assert lookup()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fail_once_answers_500_then_creates_the_same_body(sandbox, provider):
    send, lookup = create_with(sandbox, provider, "fail-once")
    assert send().status_code == 500
    assert not lookup()
    assert send().status_code in (200, 201, 202)
    assert lookup()


def test_state_lists_conversations_and_posts_received(sandbox):
    send, _ = create_with(sandbox, "twilio", "reset-after")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        send()
    state = httpx.get(sandbox.url("mixin") + "/__sandbox__/state").json()
    tag = [r for r in state["received"] if "resetafter" in r["body"].replace("-", "")][-1]
    assert tag["api"] == "twilio" and tag["path"] == "/v1/ConversationWithParticipants"
    assert any("reset-after" in (c["unique_name"] or "") for c in state["conversations"]["twilio"])
    assert set(state["conversations"]) == set(PROVIDERS)
