"""The four real provider modules, end to end over loopback HTTP against ``providers.sandbox``.

Every call goes through :class:`providers.http.Http` to a real socket; nothing is mocked. The
``connect`` fixture checks after each test that no secret shows in any recorded exchange.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import providers
from providers import highlevel, mixin, msgraph, twilio
from providers.base import ProviderError
from providers.http import TIMEOUT, Http
from providers.sandbox import Sandbox

SLOW_SECONDS = 1.5
SHORT = httpx.Timeout(0.5, connect=2.0)  # shorter than SLOW_SECONDS: the ``slow`` trigger times out
SECRET_KEYS = {
    "session_private_key",
    "auth_token",
    "api_key_secret",
    "token",
    "refresh_token",
    "client_secret",
}
PROVIDERS = ["mixin", "twilio", "highlevel", "msgraph"]
REDIRECT = "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed="end-to-end", slow_seconds=SLOW_SECONDS) as sb:
        yield sb


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(highlevel, "sleep", lambda seconds: None)
    monkeypatch.setattr(msgraph, "_sleep", lambda seconds: None)


def _secrets_of(creds):
    return {v for c in creds.values() for k, v in c.items() if k in SECRET_KEYS and v}


@pytest.fixture
def connect(sandbox):
    """``connect(credential, timeout=...)`` opens an Http; afterwards no exchange may show a secret."""
    before = _secrets_of(sandbox.credentials(variants=True))
    opened: list[Http] = []

    def open_http(credential, timeout=TIMEOUT):
        http = Http(credential.secret_values(), timeout=timeout)
        opened.append(http)
        return http

    yield open_http
    for http in opened:
        http.close()
    known = before | _secrets_of(sandbox.credentials(variants=True))
    known |= {s for http in opened for s in http.secrets}
    forms = known | {base64.b64encode(s.encode()).decode() for s in known}
    records = [json.dumps(e.as_dict(), default=str) for http in opened for e in http.exchanges]
    assert records, "the test sent nothing"
    leaks = sorted({form[:8] + "…" for form in forms for record in records if form in record})
    assert not leaks, f"secrets in exchange records: {leaks}"


def credential_for(sandbox, name, **changes):
    creds = sandbox.credentials(variants=True)
    module = providers.get(name.split("-")[0])
    return module.parse_credential(creds[name] | changes)


def valid(module, body, credential):
    """validate + prepare, as the app does before a create (Mixin fills in the conversation id)."""
    assert module.validate(body, credential) == []
    return module.prepare(body, credential)


def create_valid(module, body, credential, http):
    prepared = valid(module, body, credential)
    return prepared, module.create(prepared, credential, http)


def tag() -> str:
    return uuid.uuid4().hex[:10]  # hex never spells a trigger word


def phone() -> str:
    return "+1555" + "".join(random.choices("0123456789", k=7))


# -- bodies, optionally carrying a QA trigger ------------------------------------------------------
def mixin_body(name=None):
    return {
        "category": "GROUP",
        "name": name or f"Order {tag()} support",
        "announcement": "Customer, agent and supervisor for this order.",
        "participants": [{"user_id": str(uuid.uuid4()), "role": "ADMIN"}, {"user_id": str(uuid.uuid4())}],
    }


def twilio_body(unique=None):
    return {
        "FriendlyName": "Order support",
        "UniqueName": unique or f"order-{tag()}",
        "Attributes": {"order": 123},
        "Participant": [
            {"identity": "agent-7"},
            {"messaging_binding": {"address": phone(), "proxy_address": "+15017122661"}},
        ],
    }


def highlevel_body(prefix=""):
    return {"contactId": (prefix + uuid.uuid4().hex)[:24]}


def graph_body(topic=None):
    post = {
        "body": {"contentType": "html", "content": "<p>Kick-off for the order.</p>"},
        "newParticipants": [
            {"emailAddress": {"name": "Adele Vance", "address": "adele@contoso.com"}},
            {"emailAddress": {"address": "megan@contoso.com"}},
        ],
    }
    return {"topic": topic or f"Order {tag()}", "threads": [{"posts": [post]}]}


def trigger_body(provider, trigger):
    word = trigger.replace("-", "")
    return {
        "mixin": lambda: mixin_body(name=f"{trigger} {tag()}"),
        "twilio": lambda: twilio_body(unique=f"{trigger}-{tag()}"),
        "highlevel": lambda: highlevel_body(prefix=word),
        "msgraph": lambda: graph_body(topic=f"{trigger} check {tag()}"),
    }[provider]()


# -- happy paths -----------------------------------------------------------------------------------
def test_mixin_creates_a_group_and_a_contact_and_reads_them_back(sandbox, connect):
    credential = credential_for(sandbox, "mixin")
    app_id = credential.settings["app_id"]
    http = connect(credential)
    assert mixin.check(credential, http) == f"Authenticated as Sandbox Bot ({app_id})"

    body = mixin_body()
    prepared, created = create_valid(mixin, body, credential, http)
    members = [app_id, *(p["user_id"] for p in body["participants"])]
    assert created.external_id == prepared["conversation_id"]
    assert [(p["user_id"], p["role"]) for p in created.participants] == list(
        zip(members, ["OWNER", "ADMIN", ""], strict=True)
    )
    fetched = mixin.fetch(created.external_id, credential, http)
    assert fetched.conversation["name"] == body["name"]
    assert [p["user_id"] for p in fetched.participants] == members
    assert mixin.lookup(prepared, credential, http).external_id == created.external_id
    # The same id again "ensures" the conversation instead of failing.
    assert mixin.create(prepared, credential, http).external_id == created.external_id

    user = str(uuid.uuid4())
    contact, created = create_valid(
        mixin, {"category": "CONTACT", "participants": [{"user_id": user}]}, credential, http
    )
    assert created.external_id == mixin.unique_conversation_id(app_id, user) == contact["conversation_id"]
    assert [p["user_id"] for p in created.participants] == [app_id, user]


def test_mixin_refuses_a_keystore_whose_private_key_was_tampered_with(sandbox, connect):
    real = sandbox.credentials()["mixin"]["session_private_key"]
    credential = credential_for(
        sandbox, "mixin", session_private_key=real[:-2] + ("00" if real[-2:] != "00" else "11")
    )
    http = connect(credential)
    with pytest.raises(ProviderError) as refused:
        mixin.check(credential, http)
    assert (refused.value.message, refused.value.code, refused.value.permanent) == (
        "Unauthorized, maybe invalid token.",
        "401",
        True,
    )
    with pytest.raises(ProviderError, match="Unauthorized"):
        create_valid(mixin, mixin_body(), credential, http)


@pytest.mark.parametrize("variant", ["twilio", "twilio-api-key"])
def test_twilio_creates_with_participants_and_reads_them_back(sandbox, connect, variant):
    credential = credential_for(sandbox, variant)
    http = connect(credential)
    via = f" with API key {credential.settings['api_key_sid']}" if variant == "twilio-api-key" else ""
    assert twilio.check(credential, http).startswith(
        f"Account {credential.settings['account_sid']} reachable{via};"
    )

    body = twilio_body()
    prepared, created = create_valid(twilio, body, credential, http)
    assert created.status == 202 and created.external_id.startswith("CH")
    address = body["Participant"][1]["messaging_binding"]["address"]
    reported = [(p["identity"], (p["messaging_binding"] or {}).get("address")) for p in created.participants]
    assert reported == [("agent-7", None), (None, address)]
    fetched = twilio.fetch(created.external_id, credential, http)
    assert fetched.conversation["unique_name"] == body["UniqueName"]
    assert json.loads(fetched.conversation["attributes"]) == {"order": 123}
    assert [p["sid"] for p in fetched.participants] == [p["sid"] for p in created.participants]
    found = twilio.lookup(prepared, credential, http)
    assert (found.external_id, found.existed, len(found.participants)) == (created.external_id, True, 2)


def test_highlevel_creates_for_a_contact_and_reads_it_back(sandbox, connect):
    credential = credential_for(sandbox, "highlevel")
    location = credential.settings["location_id"]
    http = connect(credential)
    assert highlevel.check(credential, http) == f"Token accepted for location {location}"

    body = highlevel_body()
    prepared, created = create_valid(highlevel, body, credential, http)
    assert prepared == {"locationId": location, **body}
    assert created.participants == [body]
    fetched = highlevel.fetch(created.external_id, credential, http)
    assert fetched.conversation["contactId"] == body["contactId"]
    [person] = fetched.participants
    assert person["contactId"] == body["contactId"] and person["name"].startswith("Sandbox Contact")
    assert person["email"] == f"{body['contactId']}@contacts.sandbox.test"
    found = highlevel.lookup(body, credential, http)
    assert (found.external_id, found.existed) == (created.external_id, True)


def test_highlevel_oauth_refreshes_an_expired_token_and_rotates_the_refresh_token(sandbox, connect):
    location = sandbox.credentials()["highlevel"]["location_id"]
    expired = sandbox.sign({"typ": "hl-access", "loc": location, "exp": int(time.time()) - 60})
    credential = credential_for(sandbox, "highlevel-oauth", token=expired)
    old_refresh = credential.secrets["refresh_token"]
    changes = []
    credential.on_change = changes.append
    http = connect(credential)

    _, created = create_valid(highlevel, highlevel_body(), credential, http)
    assert created.external_id
    assert [e.status for e in http.exchanges] == [401, 200, 201]  # refused, refreshed, created
    [change] = changes
    assert change["refresh_token"] not in (old_refresh, "") and change["token"] != expired
    assert change == credential.secrets
    assert sandbox.credentials(variants=True)["highlevel-oauth"]["refresh_token"] == change["refresh_token"]

    stale = credential_for(sandbox, "highlevel-oauth", refresh_token=old_refresh)
    with pytest.raises(ProviderError) as refused:
        highlevel.refresh(stale, connect(stale))
    assert (refused.value.code, refused.value.status, refused.value.permanent) == ("invalid_grant", 400, True)
    assert "refresh token is invalid" in refused.value.message


def test_graph_creates_with_the_signed_in_user_and_reads_it_back(sandbox, connect):
    credential = credential_for(sandbox, "msgraph")
    changes = []
    credential.on_change = changes.append
    http = connect(credential)
    assert (
        msgraph.check(credential, http)
        == "Group 'Sandbox Team' (Microsoft 365) reachable; signed in as qa@sandbox.test"
    )

    body = graph_body()
    prepared, created = create_valid(msgraph, body, credential, http)
    create_call = http.exchanges[-1]
    # The check's delegated token is reused (one refresh); the sandbox refuses an app-only create with 403.
    assert [e for e in http.exchanges if "grant_type=refresh_token" in e.request_body] == [http.exchanges[1]]
    assert (create_call.method, create_call.status) == ("POST", 201)
    assert created.external_id.startswith("AAQkAG")
    assert created.participants == body["threads"][0]["posts"][0]["newParticipants"]
    assert changes and changes[-1]["refresh_token"] == credential.secrets["refresh_token"]

    fetched = msgraph.fetch(created.external_id, credential, http)
    assert fetched.conversation["topic"] == body["topic"]
    people = [(p["emailAddress"]["address"], p["role"]) for p in fetched.participants]
    assert people == [
        ("qa@sandbox.test", "sender"),
        ("adele@contoso.com", "participant"),
        ("megan@contoso.com", "participant"),
    ]
    found = msgraph.lookup(prepared, credential, http)
    assert (found.external_id, found.existed) == (created.external_id, True)


def test_graph_without_a_signed_in_user_reads_but_cannot_create(sandbox, connect):
    credential = credential_for(sandbox, "msgraph", refresh_token="")
    http = connect(credential)
    assert "nobody has signed in yet" in msgraph.check(credential, http)
    prepared = msgraph.prepare(graph_body(), credential)
    sent = len(http.exchanges)
    with pytest.raises(ProviderError) as refused:
        msgraph.create(prepared, credential, http)
    assert refused.value.code == "not_signed_in" and "Sign in with Microsoft" in refused.value.message
    assert len(http.exchanges) == sent  # refused before anything was sent

    # The app's own token is what the module refuses to use: Graph would answer 403.
    request = msgraph.build_request(prepared, credential, msgraph.app_token(credential, http))
    with pytest.raises(ProviderError) as denied:
        msgraph.raise_for_response(http.send(request))
    assert (denied.value.code, denied.value.status) == ("ErrorAccessDenied", 403)
    assert "app-only tokens cannot create" in denied.value.message


def test_graph_sign_in_with_an_authorization_code_enables_creating(sandbox, connect):
    credential = credential_for(sandbox, "msgraph", refresh_token="")
    changes = []
    credential.on_change = changes.append
    verifier, challenge = msgraph.pkce_pair()
    url = msgraph.authorize_url(credential, redirect_uri=REDIRECT, state="state-1", code_challenge=challenge)
    reply = httpx.get(url, follow_redirects=False, timeout=5)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["state-1"]

    http = connect(credential)
    signed_in = msgraph.redeem_code(
        credential, code=query["code"][0], redirect_uri=REDIRECT, code_verifier=verifier, http=http
    )
    assert (signed_in.user, signed_in.display_name) == ("qa@sandbox.test", "QA User")
    assert changes[0]["refresh_token"] and credential.secrets["refresh_token"] == changes[-1]["refresh_token"]
    _, created = create_valid(msgraph, graph_body(), credential, http)
    assert created.status == 201
    with pytest.raises(ProviderError) as reused:  # a code works once
        msgraph.redeem_code(
            credential, code=query["code"][0], redirect_uri=REDIRECT, code_verifier=verifier, http=http
        )
    assert reused.value.code == "AADSTS54005"


def test_sandbox_answers_a_kept_alive_connection_without_a_delayed_ack_pause(sandbox, connect):
    credential = credential_for(sandbox, "twilio")
    http = connect(credential)
    for _ in range(5):
        twilio.check(credential, http)
    assert sorted(e.duration_ms for e in http.exchanges)[2] < 20  # the median; loopback needs ~1 ms


# -- QA triggers -----------------------------------------------------------------------------------
FAIL_500_MESSAGES = {
    "mixin": "Internal Server Error.",
    "twilio": "Internal Server Error",
    "highlevel": "Internal server error",
    "msgraph": "An unspecified error has occurred.",
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fail_500_is_a_retryable_error_with_the_provider_message(sandbox, connect, provider):
    module, credential = providers.get(provider), credential_for(sandbox, provider)
    http = connect(credential)
    prepared = valid(module, trigger_body(provider, "fail-500"), credential)
    with pytest.raises(ProviderError) as failed:
        module.create(prepared, credential, http)
    assert (failed.value.status, failed.value.permanent) == (500, False)
    assert FAIL_500_MESSAGES[provider] in failed.value.message
    assert module.lookup(prepared, credential, http) is None  # nothing was created


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_is_retryable_after_the_given_seconds(sandbox, connect, provider):
    module, credential = providers.get(provider), credential_for(sandbox, provider)
    http = connect(credential)
    prepared = valid(module, trigger_body(provider, "rate-limit"), credential)
    with pytest.raises(ProviderError) as limited:
        module.create(prepared, credential, http)
    assert (limited.value.retry_after, limited.value.permanent, limited.value.outcome_unknown) == (
        2.0,
        False,
        False,
    )
    assert module.lookup(prepared, credential, http) is None


@pytest.mark.parametrize("provider", ["twilio", "highlevel", "msgraph"])
def test_duplicate_is_refused_and_the_existing_conversation_is_found(sandbox, connect, provider):
    module, credential = providers.get(provider), credential_for(sandbox, provider)
    http = connect(credential)
    prepared = valid(module, trigger_body(provider, "duplicate"), credential)
    with pytest.raises(ProviderError) as duplicate:
        module.create(prepared, credential, http)
    expected = {
        "twilio": ("50353", 409),
        "highlevel": ("duplicate_contact", 400),
        "msgraph": ("nameAlreadyExists", 409),
    }
    assert (duplicate.value.code, duplicate.value.status) == expected[provider]
    assert duplicate.value.permanent and not duplicate.value.outcome_unknown
    found = module.lookup(prepared, credential, http)
    assert found is not None and found.existed
    if provider == "highlevel":  # the module searched for it already
        assert duplicate.value.existing_id == found.external_id


def test_mixin_duplicate_returns_the_existing_conversation(sandbox, connect):
    credential = credential_for(sandbox, "mixin")
    http = connect(credential)
    prepared, created = create_valid(mixin, trigger_body("mixin", "duplicate"), credential, http)
    assert created.external_id == prepared["conversation_id"]
    created_at = datetime.fromisoformat(created.body["created_at"][:19]).replace(tzinfo=UTC)
    assert created_at < datetime.now(UTC) - timedelta(minutes=30)  # made an hour back, not now


INVALID_JSON_MESSAGES = {
    "mixin": "with a body that is not JSON",
    "twilio": "without a conversation SID",
    "highlevel": "without a conversation id",
    "msgraph": "without a conversation id",
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invalid_json_is_a_clear_error_and_the_conversation_is_found(sandbox, connect, provider):
    module, credential = providers.get(provider), credential_for(sandbox, provider)
    http = connect(credential)
    prepared = valid(module, trigger_body(provider, "invalid-json"), credential)
    with pytest.raises(ProviderError) as broken:
        module.create(prepared, credential, http)
    assert INVALID_JSON_MESSAGES[provider] in broken.value.message
    assert not broken.value.permanent or broken.value.outcome_unknown  # worth a lookup or a retry
    assert module.lookup(prepared, credential, http) is not None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_create_times_out_with_an_unknown_outcome_and_lookup_finds_it(sandbox, connect, provider):
    module, credential = providers.get(provider), credential_for(sandbox, provider)
    http = connect(credential, timeout=SHORT)
    prepared = valid(module, trigger_body(provider, "slow"), credential)
    started = time.monotonic()
    with pytest.raises(ProviderError) as timed_out:
        module.create(prepared, credential, http)
    assert time.monotonic() - started < SLOW_SECONDS
    assert (timed_out.value.code, timed_out.value.outcome_unknown) == ("timeout", True)
    found = module.lookup(prepared, credential, http)
    assert found is not None and found.external_id


# -- a job killed and re-run never creates twice -----------------------------------------------------
def test_graph_never_reports_an_older_conversation_with_the_same_topic(sandbox, connect):
    credential = credential_for(sandbox, "msgraph")
    http = connect(credential)
    topic = f"Order {tag()}"
    first = msgraph.prepare(graph_body(topic), credential, key=f"record-{tag()}")
    created = msgraph.create(first, credential, http)
    # A second record with the same topic whose create never reached Graph:
    second = msgraph.prepare(graph_body(topic), credential, key=f"record-{tag()}")
    assert msgraph.lookup(second, credential, http, sent_at=datetime.now(UTC)) is None
    assert msgraph.lookup(first, credential, http).external_id == created.external_id


def test_graph_finds_its_own_timed_out_create_among_same_topic_conversations(sandbox, connect):
    credential = credential_for(sandbox, "msgraph")
    topic = f"slow check {tag()}"
    patient = connect(credential)  # waits out the slow trigger: the earlier conversation is made
    earlier = msgraph.create(msgraph.prepare(graph_body(topic), credential, key=tag()), credential, patient)
    http = connect(credential, timeout=SHORT)
    prepared = msgraph.prepare(graph_body(topic), credential, key=tag())
    sent_at = datetime.now(UTC)
    with pytest.raises(ProviderError) as timed_out:
        msgraph.create(prepared, credential, http)
    assert timed_out.value.outcome_unknown
    found = msgraph.lookup(prepared, credential, http, sent_at=sent_at)
    assert found is not None and found.external_id != earlier.external_id


def test_twilio_fills_the_unique_name_from_the_key_so_a_resend_cannot_duplicate(sandbox, connect):
    credential = credential_for(sandbox, "twilio")
    http = connect(credential)
    key = tag()
    body = {**twilio_body(), "UniqueName": ""}
    prepared = twilio.prepare(body, credential, key=key)
    assert prepared["UniqueName"] == f"convadmin-{key}"
    created = twilio.create(prepared, credential, http)
    assert twilio.lookup(prepared, credential, http).external_id == created.external_id
    with pytest.raises(ProviderError) as again:  # a job re-sending after a look-up missed it
        twilio.create(twilio.prepare(body, credential, key=key), credential, http)
    assert (again.value.code, again.value.outcome_unknown) == ("50353", False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_deadline_ends_a_dripping_create_with_an_unknown_outcome_that_lookup_settles(
    sandbox, connect, provider
):
    module, credential = providers.get(provider), credential_for(sandbox, provider)
    http = connect(credential)  # the ordinary 20 s read timeout: each byte comes well within it
    prepared = valid(module, trigger_body(provider, "drip"), credential)
    http.set_deadline(0.8)  # covers Graph's token refresh and the create together
    started = time.monotonic()
    with pytest.raises(ProviderError) as late:
        module.create(prepared, credential, http)
    assert time.monotonic() - started < 0.8 + 0.5  # without it: one byte a second, for minutes
    assert (late.value.code, late.value.outcome_unknown) == ("deadline", True)
    http.set_deadline(None)
    assert module.lookup(prepared, credential, http) is not None
