from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import httpx
import pytest

from providers import msgraph
from providers.base import Credential, InvalidCredential, LookupAmbiguous, ProviderError
from providers.http import Http
from providers.redact import secret_forms

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "535fb089-9ff3-47b6-9bfb-4f1264799865"  # the documented example client id
SECRET = "Xy8Q~abcDEF123ghiJKL456mnoPQR789stu.WX0y"
GROUP = "29981b6a-0e57-42dc-94c9-cd24f5306196"
OTHER_GROUP = "4d81ce71-486c-41e9-afc5-e41bf2d0722a"
REFRESH = "0.AXoA-old-refresh-token+/="
APP_ACCESS = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.app-only.sig"
CONV = "AAQkAGRhZmRhMWM3LTYwZTktNDZmYy1hNWU1LThhZWU4NzI2YTEyZgAQADamkjVbzvRKnUq1oBRdwhk="
THREAD = "AAQkAGRhZmRhMWM3LTYwZTktNDZmYy1hNWU1LThhZWU4NzI2YTEyZgMkABAANqaSNVvO9EqdSrWgFF3CGRAANqaSNVvO9EqdSrWgFF3CGQ=="
GRAPH = "https://graph.microsoft.com"
LOGIN = "https://login.microsoftonline.com"
APP_ONLY_403 = {
    "error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."}
}
CREATED = {
    "@odata.context": f"{GRAPH}/v1.0/$metadata#groups('{OTHER_GROUP}')/conversations/$entity",
    "id": CONV,
    "threads": [{"id": THREAD}],
}
BODY = {
    "topic": "Order 123",
    "threads": [
        {
            "posts": [
                {
                    "body": {"contentType": "text", "content": "Kick-off"},
                    "newParticipants": [
                        {"emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.com"}}
                    ],
                }
            ]
        }
    ],
}
P = msgraph.PARTICIPANTS_PATH

Route = Any  # (status, json[, headers]) | callable | list of those, served in order (the last repeats)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(msgraph, "_sleep", waited.append)
    return waited


class FakeMicrosoft:
    """The token endpoint (issuing numbered tokens) and Graph routes keyed by "METHOD /raw/path"."""

    def __init__(self, routes: dict[str, Route] | None = None, token: Route | None = None):
        self.routes = dict(routes or {})
        self.token = token
        self.requests: list[httpx.Request] = []
        self.issued: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?")[0]
        if path.endswith("/oauth2/v2.0/token"):
            return self.serve(self.token, request) if self.token else self.issue(request)
        return self.serve(self.routes[f"{request.method} {path}"], request)

    def serve(self, route: Route, request: httpx.Request) -> httpx.Response:
        if isinstance(route, list):
            route = route.pop(0) if len(route) > 1 else route[0]
        if callable(route):
            return route(request)
        status, payload, *headers = route
        return httpx.Response(status, json=payload, headers=headers[0] if headers else None)

    def issue(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        if form["grant_type"] == "client_credentials":
            self.issued.append(APP_ACCESS)
            return httpx.Response(
                200,
                json={
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": APP_ACCESS,
                },
            )
        n = len(self.issued) + 1
        access, refresh = f"eyJ0eXAi.delegated-{n}.sig", f"0.AXoA-new-refresh-{n}"
        self.issued += [access, refresh]
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "scope": "https://graph.microsoft.com/Group.ReadWrite.All",
                "expires_in": 3599,
                "access_token": access,
                "refresh_token": refresh,
                "id_token": f"eyJ.id-token-{n}.sig",
            },
        )

    def graph_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if not r.url.path.endswith("/token")]

    def token_forms(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.content.decode())) for r in self.requests if r.url.path.endswith("/token")]


def credential(changes: list[dict[str, str]] | None = None, **extra: str | None) -> Credential:
    data = {
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "group_id": GROUP,
        "refresh_token": REFRESH,
        **extra,
    }
    cred = msgraph.parse_credential({k: v for k, v in data.items() if v is not None})
    if changes is not None:
        cred.on_change = changes.append
    return cred


def uncached(changes: list[dict[str, str]]) -> list[dict[str, str]]:
    """The stored secrets without the cached access token and its expiry."""
    return [{k: v for k, v in c.items() if k not in msgraph.CACHED_SECRETS} for c in changes]


def http_for(cred: Credential, fake: Callable[[httpx.Request], httpx.Response]) -> Http:
    return Http(cred.secret_values(), transport=httpx.MockTransport(fake))


def create_route(status: int = 201, payload: Any = None) -> dict[str, Route]:
    return {f"POST /v1.0/groups/{GROUP}/conversations": (status, CREATED if payload is None else payload)}


def prepared(body: dict[str, Any] | None = None) -> dict[str, Any]:
    return msgraph.prepare(copy.deepcopy(body or BODY), credential())


def body_with(**post: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["threads"][0]["posts"][0].update(post)
    return body


def paths(body: Any) -> dict[str, str]:
    return {e.path: e.message for e in msgraph.validate(body)}


def rejected(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidCredential) as exc:
        msgraph.parse_credential(data)
    return {e.path: e.message for e in exc.value.errors}


def assert_no_secrets(http: Http, values: list[str], caplog: pytest.LogCaptureFixture | None = None) -> None:
    forms = secret_forms(values)
    texts = []
    for ex in http.exchanges:
        texts += [ex.url, ex.request_body, ex.response_body, ex.error]
        texts += list(ex.request_headers.values()) + list(ex.response_headers.values())
    if caplog is not None:
        texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        for form in forms:
            assert form not in text, f"secret form {form!r} leaked in {text[:200]!r}"


# --- credential -----------------------------------------------------------------------------------


def test_it_parses_a_credential_without_a_refresh_token() -> None:
    cred = credential(refresh_token=None, tenant_id=TENANT.upper())
    assert cred.provider == "msgraph"
    assert cred.settings == {"tenant_id": TENANT, "client_id": CLIENT, "group_id": GROUP, "cloud": "global"}
    assert cred.secrets == {"client_secret": SECRET}


def test_it_keeps_the_refresh_token_secret() -> None:
    assert credential().secrets == {"client_secret": SECRET, "refresh_token": REFRESH}


def test_it_accepts_a_verified_domain_as_tenant() -> None:
    assert credential(tenant_id="Contoso.onmicrosoft.com").settings["tenant_id"] == "contoso.onmicrosoft.com"


@pytest.mark.parametrize("alias", ["common", "organizations", "Consumers"])
def test_it_rejects_multi_tenant_aliases(alias: str) -> None:
    errors = rejected({"tenant_id": alias, "client_id": CLIENT, "client_secret": SECRET, "group_id": GROUP})
    assert "specific tenant" in errors["tenant_id"]


@pytest.mark.parametrize("tenant", ["not a tenant", "contoso", "72f988bf-86f1-41af-91ab"])
def test_it_rejects_a_malformed_tenant(tenant: str) -> None:
    errors = rejected({"tenant_id": tenant, "client_id": CLIENT, "client_secret": SECRET, "group_id": GROUP})
    assert "tenant" in errors["tenant_id"]


@pytest.mark.parametrize("field", ["client_id", "group_id"])
def test_it_rejects_ids_that_are_not_guids(field: str) -> None:
    data = {
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "group_id": GROUP,
        field: "sales",
    }
    assert "GUID" in rejected(data)[field]


def test_it_warns_when_the_secret_id_is_pasted_instead_of_the_value() -> None:
    data = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": str(uuid.uuid4()), "group_id": GROUP}
    assert "looks like the secret ID" in rejected(data)["client_secret"]


def test_it_lists_every_missing_and_bad_field_at_once() -> None:
    errors = rejected({"tenant_id": "common", "client_id": "x", "cloud": "mars"})
    assert set(errors) == {"tenant_id", "client_id", "client_secret", "group_id", "cloud"}


def test_it_rejects_a_credential_that_is_not_an_object() -> None:
    assert "credential" in rejected(["tenant_id"])  # type: ignore[arg-type]


def test_it_rejects_plain_http_base_url_on_a_public_host() -> None:
    data = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET, "group_id": GROUP}
    assert "https" in rejected({**data, "base_url": "http://graph.example.com"})["base_url"]
    assert "https" in rejected({**data, "login_url": "http://login.example.com"})["login_url"]


def test_it_allows_loopback_overrides_for_both_hosts() -> None:
    cred = credential(base_url="http://127.0.0.1:8001/", login_url="http://localhost:8001")
    assert cred.settings["base_url"] == "http://127.0.0.1:8001"
    assert cred.settings["login_url"] == "http://localhost:8001"


# --- clouds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "login", "graph"),
    [
        ("global", "login.microsoftonline.com", "graph.microsoft.com"),
        ("usgov", "login.microsoftonline.us", "graph.microsoft.us"),
        ("dod", "login.microsoftonline.us", "dod-graph.microsoft.us"),
        ("china", "login.partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_it_uses_the_hosts_and_scopes_of_the_national_cloud(cloud: str, login: str, graph: str) -> None:
    cred = credential(cloud=cloud)
    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": (201, CREATED)})
    msgraph.create(prepared(), cred, http_for(cred, fake))
    token, create = fake.requests
    assert str(token.url) == f"https://{login}/{TENANT}/oauth2/v2.0/token"
    assert fake.token_forms()[0]["scope"] == f"https://{graph}/Group.ReadWrite.All offline_access"
    assert str(create.url) == f"https://{graph}/v1.0/groups/{GROUP}/conversations"
    url = msgraph.authorize_url(
        cred, redirect_uri="https://admin.example.com/cb", state="s", code_challenge="c"
    )
    assert url.startswith(f"https://{login}/{TENANT}/oauth2/v2.0/authorize?")


def test_it_sends_everything_to_the_overridden_hosts_but_keeps_the_cloud_scope() -> None:
    cred = credential(base_url="http://127.0.0.1:8001", login_url="http://127.0.0.1:8002")
    fake = FakeMicrosoft(create_route())
    msgraph.create(prepared(), cred, http_for(cred, fake))
    assert [str(r.url) for r in fake.requests] == [
        f"http://127.0.0.1:8002/{TENANT}/oauth2/v2.0/token",
        f"http://127.0.0.1:8001/v1.0/groups/{GROUP}/conversations",
    ]
    assert fake.token_forms()[0]["scope"] == "https://graph.microsoft.com/Group.ReadWrite.All offline_access"


# --- sign-in (authorization code + PKCE) ----------------------------------------------------------


def test_it_computes_the_rfc_7636_pkce_challenge() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert msgraph.pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_it_makes_fresh_pkce_pairs() -> None:
    verifier, challenge = msgraph.pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert challenge == msgraph.pkce_challenge(verifier)
    assert msgraph.pkce_pair()[0] != verifier


def test_it_builds_the_exact_authorize_url() -> None:
    url = msgraph.authorize_url(
        credential(refresh_token=None),
        redirect_uri="https://admin.example.com/credentials/7/microsoft/callback",
        state="st-123",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    )
    assert url == (
        f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize?client_id={CLIENT}&response_type=code"
        "&redirect_uri=https%3A%2F%2Fadmin.example.com%2Fcredentials%2F7%2Fmicrosoft%2Fcallback"
        "&response_mode=query&scope=https%3A%2F%2Fgraph.microsoft.com%2FGroup.ReadWrite.All%20offline_access"
        "&state=st-123&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        "&prompt=select_account"
    )
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params["scope"] == "https://graph.microsoft.com/Group.ReadWrite.All offline_access"
    assert SECRET not in url


def test_it_redeems_the_code_stores_the_refresh_token_and_says_who_signed_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="providers.http")
    changes: list[dict[str, str]] = []
    cred = credential(changes, refresh_token=None)
    me = {"id": "u-1", "userPrincipalName": "adele@contoso.com", "displayName": "Adele Vance"}
    fake = FakeMicrosoft({"GET /v1.0/me": (200, me)})
    http = http_for(cred, fake)
    code, verifier = "0.AXoA-authorization-code", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    before = datetime.now(UTC)
    signed = msgraph.redeem_code(
        cred, code=code, redirect_uri="https://admin.example.com/cb", code_verifier=verifier, http=http
    )
    assert (signed.user, signed.display_name) == ("adele@contoso.com", "Adele Vance")
    assert signed.obtained_at >= before and signed.obtained_at.tzinfo is UTC
    token, me_request = fake.requests
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"
    assert list(parse_qsl(token.content.decode())) == [
        ("client_id", CLIENT),
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "https://admin.example.com/cb"),
        ("code_verifier", verifier),
        ("client_secret", SECRET),
        ("scope", "https://graph.microsoft.com/Group.ReadWrite.All offline_access"),
    ]
    assert str(me_request.url) == f"{GRAPH}/v1.0/me?$select=id,userPrincipalName,displayName"
    assert me_request.headers["authorization"] == "Bearer eyJ0eXAi.delegated-1.sig"
    assert cred.secrets["refresh_token"] == "0.AXoA-new-refresh-1"
    assert uncached(changes) == [{"client_secret": SECRET, "refresh_token": "0.AXoA-new-refresh-1"}]
    assert changes[0]["access_token"] == "eyJ0eXAi.delegated-1.sig"  # the new user's, not a previous one's
    assert_no_secrets(http, [SECRET, code, verifier, *fake.issued], caplog)


def test_it_refuses_a_sign_in_without_a_refresh_token() -> None:
    cred = credential(refresh_token=None)
    fake = FakeMicrosoft(
        token=(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ.no-offline"})
    )
    with pytest.raises(ProviderError) as exc:
        msgraph.redeem_code(
            cred,
            code="c0de-value",
            redirect_uri="https://a.example/cb",
            code_verifier="v" * 43,
            http=http_for(cred, fake),
        )
    assert exc.value.code == "no_refresh_token"
    assert "offline_access" in exc.value.message


# --- tokens ---------------------------------------------------------------------------------------


def test_it_sends_the_documented_client_credentials_body() -> None:
    cred = credential(refresh_token=None)
    fake = FakeMicrosoft()
    assert msgraph.app_token(cred, http_for(cred, fake)) == APP_ACCESS
    (request,) = fake.requests
    assert request.method == "POST"
    assert str(request.url) == f"{LOGIN}/{TENANT}/oauth2/v2.0/token"
    expected = (
        f"client_id={CLIENT}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        "&client_secret=<secret>&grant_type=client_credentials"
    )
    assert request.content.decode() == expected.replace("<secret>", SECRET)


def test_it_sends_the_exact_refresh_token_body() -> None:
    cred = credential()
    fake = FakeMicrosoft()
    msgraph.delegated_token(cred, http_for(cred, fake))
    assert fake.requests[0].content.decode() == (
        f"client_id={CLIENT}&grant_type=refresh_token&refresh_token=0.AXoA-old-refresh-token%2B%2F%3D"
        f"&client_secret={SECRET}&scope=https%3A%2F%2Fgraph.microsoft.com%2FGroup.ReadWrite.All+offline_access"
    )


def test_it_refuses_to_create_before_anyone_signed_in() -> None:
    cred = credential(refresh_token=None)
    fake = FakeMicrosoft(create_route())
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "not_signed_in"
    assert "Sign in with Microsoft" in exc.value.message
    assert fake.requests == []


def token_error(error: str, codes: list[int], description: str, status: int = 400) -> Route:
    return (
        status,
        {
            "error": error,
            "error_description": f"{description}\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2026-01-01",
            "error_codes": codes,
            "trace_id": "0000",
            "correlation_id": "1111",
        },
    )


@pytest.mark.parametrize(
    ("error", "codes", "code", "hint"),
    [
        ("invalid_client", [7000215], "AADSTS7000215", "secret's ID"),
        ("invalid_client", [7000222], "AADSTS7000222", "expired"),
        ("unauthorized_client", [700016], "AADSTS700016", "client ID"),
        ("invalid_request", [90002], "AADSTS90002", "No such tenant"),
        ("invalid_scope", [70011], "AADSTS70011", "scope"),
        ("invalid_grant", [65001], "AADSTS65001", "admin consent"),
        ("invalid_grant", [50076], "AADSTS50076", "Multi-factor"),
        ("invalid_grant", [70008], "AADSTS70008", "sign in again"),
        ("interaction_required", [], "interaction_required", "sign in again"),
    ],
)
def test_it_maps_token_endpoint_errors_by_code(error: str, codes: list[int], code: str, hint: str) -> None:
    cred = credential()
    fake = FakeMicrosoft(token=token_error(error, codes, "AADSTS00000: what Microsoft says."))
    with pytest.raises(ProviderError) as exc:
        msgraph.delegated_token(cred, http_for(cred, fake))
    assert exc.value.code == code
    assert hint in exc.value.message
    assert exc.value.message.endswith("Microsoft says: AADSTS00000: what Microsoft says.")
    assert "Trace ID" not in exc.value.message
    assert exc.value.permanent
    assert not exc.value.outcome_unknown


def test_it_branches_on_error_codes_not_on_the_description() -> None:
    cred = credential()
    fake = FakeMicrosoft(token=token_error("invalid_client", [7000222], "Invalid client secret provided."))
    with pytest.raises(ProviderError) as exc:
        msgraph.app_token(cred, http_for(cred, fake))
    assert exc.value.code == "AADSTS7000222"
    assert "expired" in exc.value.message


def test_it_asks_to_sign_in_again_on_invalid_grant() -> None:
    cred = credential()
    fake = FakeMicrosoft(
        create_route(), token=token_error("invalid_grant", [], "The refresh token has expired.")
    )
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "invalid_grant"
    assert "sign in again" in exc.value.message
    assert len(fake.requests) == 1


def test_it_treats_a_busy_sign_in_service_as_retryable() -> None:
    cred = credential()
    fake = FakeMicrosoft(token=token_error("temporarily_unavailable", [], "Busy.", status=503))
    with pytest.raises(ProviderError) as exc:
        msgraph.delegated_token(cred, http_for(cred, fake))
    assert not exc.value.permanent


def test_it_explains_a_token_reply_that_is_not_json() -> None:
    cred = credential()
    fake = FakeMicrosoft(token=lambda r: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ProviderError) as exc:
        msgraph.app_token(cred, http_for(cred, fake))
    assert exc.value.status == 502
    assert "without a readable error" in exc.value.message
    assert not exc.value.permanent


def test_it_rejects_a_token_reply_without_an_access_token() -> None:
    cred = credential()
    fake = FakeMicrosoft(token=(200, {"token_type": "Bearer"}))
    with pytest.raises(ProviderError) as exc:
        msgraph.app_token(cred, http_for(cred, fake))
    assert exc.value.code == "no_access_token"


def test_a_token_timeout_is_not_an_unknown_create_outcome() -> None:
    cred = credential()

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    fake = FakeMicrosoft(create_route(), token=timeout)
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "timeout"
    assert not exc.value.outcome_unknown
    assert len(fake.requests) == 1


# --- validation -----------------------------------------------------------------------------------


def test_it_accepts_the_documented_body() -> None:
    assert msgraph.validate(BODY) == []
    assert msgraph.validate({**BODY, "groupId": OTHER_GROUP}, credential()) == []


def test_it_accepts_a_post_without_participants() -> None:
    body = copy.deepcopy(BODY)
    del body["threads"][0]["posts"][0]["newParticipants"]
    assert msgraph.validate(body) == []


def test_it_requires_a_topic() -> None:
    assert paths({k: v for k, v in BODY.items() if k != "topic"}) == {"topic": "Topic is required."}


def test_it_rejects_a_blank_topic() -> None:
    assert paths({**BODY, "topic": "   "}) == {"topic": "Topic is required."}


def test_it_rejects_a_topic_that_is_not_text() -> None:
    assert paths({**BODY, "topic": 123}) == {"topic": "Topic must be text."}


def test_it_takes_a_long_topic_since_no_limit_is_documented() -> None:
    assert msgraph.validate({**BODY, "topic": "x" * 1000}) == []


@pytest.mark.parametrize("threads", [None, [], "x", [{"posts": []}, {"posts": []}]])
def test_it_requires_exactly_one_thread(threads: Any) -> None:
    body = {**BODY, "threads": threads} if threads is not None else {"topic": "t"}
    assert "exactly one thread" in paths(body)["threads"]


def test_it_rejects_a_thread_that_is_not_an_object() -> None:
    assert "threads.0" in paths({**BODY, "threads": ["hello"]})


@pytest.mark.parametrize("posts", [None, [], [BODY["threads"][0]["posts"][0]] * 2])
def test_it_requires_exactly_one_post(posts: Any) -> None:
    assert paths({**BODY, "threads": [{"posts": posts}]}) == {
        "threads.0.posts": "Give exactly one post in the thread."
    }


def test_it_rejects_a_post_that_is_not_an_object() -> None:
    assert "threads.0.posts.0" in paths({**BODY, "threads": [{"posts": [5]}]})


def test_it_requires_the_message() -> None:
    body = copy.deepcopy(BODY)
    del body["threads"][0]["posts"][0]["body"]
    assert paths(body) == {"threads.0.posts.0.body.content": "The first message is required."}


def test_it_rejects_a_post_body_that_is_not_an_object() -> None:
    assert "threads.0.posts.0.body" in paths(body_with(body="Kick-off"))


@pytest.mark.parametrize("kind", [None, "markdown", "", 1])
def test_it_rejects_a_content_type_other_than_text_or_html(kind: Any) -> None:
    item = {"content": "Hi"} if kind is None else {"contentType": kind, "content": "Hi"}
    assert "text" in paths(body_with(body=item))["threads.0.posts.0.body.contentType"]


def test_it_accepts_html_in_any_case() -> None:
    assert msgraph.validate(body_with(body={"contentType": "HTML", "content": "<p>Hi</p>"})) == []


def test_it_rejects_blank_content() -> None:
    errors = paths(body_with(body={"contentType": "text", "content": " \n"}))
    assert errors == {"threads.0.posts.0.body.content": "The first message is required."}


def test_it_rejects_content_that_is_not_text() -> None:
    errors = paths(body_with(body={"contentType": "text", "content": ["a"]}))
    assert errors == {"threads.0.posts.0.body.content": "The first message must be text."}


@pytest.mark.parametrize("key", msgraph.COMPUTED)
def test_it_names_computed_properties_that_cannot_be_sent(key: str) -> None:
    assert "computed" in paths({**BODY, key: "x"})[key]


def test_it_rejects_the_seed_body() -> None:
    seed = {
        "topic": "topic-value",
        "hasAttachments": True,
        "lastDeliveredDateTime": "datetime-value",
        "uniqueSenders": ["uniqueSenders-value"],
        "preview": "preview-value",
    }
    assert set(paths(seed)) == {
        "hasAttachments",
        "lastDeliveredDateTime",
        "uniqueSenders",
        "preview",
        "threads",
    }


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({**BODY, "subject": "x"}, "subject"),
        ({**BODY, "threads": [{"posts": BODY["threads"][0]["posts"], "topic": "x"}]}, "threads.0.topic"),
        (body_with(sender={"emailAddress": {"address": "a@b.co"}}), "threads.0.posts.0.sender"),
        (body_with(body={"contentType": "text", "content": "x", "extra": 1}), "threads.0.posts.0.body.extra"),
    ],
)
def test_it_rejects_unknown_keys(body: dict[str, Any], path: str) -> None:
    assert "Unknown field" in paths(body)[path]


@pytest.mark.parametrize("group", ["sales", 42, ""])
def test_it_rejects_a_group_id_that_is_not_a_guid(group: Any) -> None:
    assert "GUID" in paths({**BODY, "groupId": group})["groupId"]


def test_it_rejects_participants_that_are_not_a_list() -> None:
    assert paths(body_with(newParticipants={"emailAddress": {}})) == {P: "newParticipants must be a list."}


def test_it_caps_participants_at_the_project_limit() -> None:
    rows = [
        {"emailAddress": {"address": f"user{i}@contoso.com"}} for i in range(msgraph.MAX_PARTICIPANTS + 1)
    ]
    assert "limit of this tool" in paths(body_with(newParticipants=rows))[P]
    assert msgraph.validate(body_with(newParticipants=rows[:-1])) == []


def test_it_requires_a_participant_address() -> None:
    errors = paths(body_with(newParticipants=[{"emailAddress": {"name": "Adele"}}]))
    assert errors == {f"{P}.0.emailAddress.address": "E-mail address is required."}


def test_it_requires_the_email_address_object() -> None:
    assert paths(body_with(newParticipants=[{}])) == {
        f"{P}.0.emailAddress.address": "E-mail address is required."
    }


@pytest.mark.parametrize(
    "address", ["adele", "adele@", "adele@contoso", "a b@contoso.com", "<a@contoso.com>"]
)
def test_it_rejects_an_invalid_participant_address(address: str) -> None:
    errors = paths(body_with(newParticipants=[{"emailAddress": {"address": address}}]))
    assert "not an e-mail address" in errors[f"{P}.0.emailAddress.address"]


def test_it_rejects_a_participant_name_that_is_not_text() -> None:
    errors = paths(body_with(newParticipants=[{"emailAddress": {"name": 5, "address": "a@contoso.com"}}]))
    assert errors == {f"{P}.0.emailAddress.name": "Name must be text."}


def test_it_rejects_unknown_participant_keys() -> None:
    row = {"emailAddress": {"address": "a@contoso.com", "type": "x"}, "role": "owner"}
    assert set(paths(body_with(newParticipants=[row]))) == {f"{P}.0.role", f"{P}.0.emailAddress.type"}


def test_it_rejects_a_participant_that_is_not_an_object() -> None:
    assert f"{P}.0" in paths(body_with(newParticipants=["a@contoso.com"]))
    assert f"{P}.0.emailAddress" in paths(body_with(newParticipants=[{"emailAddress": "a@contoso.com"}]))


def test_it_rejects_the_same_participant_twice_whatever_the_case() -> None:
    rows = [
        {"emailAddress": {"address": "adele@contoso.com"}},
        {"emailAddress": {"address": "AdeleV@contoso.com"}},
    ]
    rows.append({"emailAddress": {"address": "ADELE@contoso.com"}})
    errors = paths(body_with(newParticipants=rows))
    assert errors == {f"{P}.2.emailAddress.address": "ADELE@contoso.com is already participant 1."}


def test_it_prefixes_participant_errors_with_the_row_index() -> None:
    errors = msgraph.validate_participant({"emailAddress": {"address": "nope"}}, 4)
    assert [e.path for e in errors] == [f"{P}.4.emailAddress.address"]


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        [],
        "x",
        3,
        {"threads": {"0": 1}},
        {"threads": [None]},
        {"threads": [{"posts": "x"}]},
        {"topic": {}},
    ],
)
def test_it_never_raises_on_garbage(garbage: Any) -> None:
    assert msgraph.validate(garbage)
    assert msgraph.validate_participant(garbage)
    msgraph.summarize(garbage)
    msgraph.fields_from_body(garbage)


def test_the_form_fields_are_the_error_paths() -> None:
    body = msgraph.body_from_fields({}, [{"emailAddress.name": "Adele"}])
    errors = {e.path for e in msgraph.validate(body)}
    body_names = {f.name for f in msgraph.BODY_FIELDS}
    row_names = {f"{P}.0.{f.name}" for f in msgraph.PARTICIPANT_FIELDS}
    assert errors <= body_names | row_names
    assert errors == {
        "topic",
        "threads.0.posts.0.body.contentType",
        "threads.0.posts.0.body.content",
        f"{P}.0.emailAddress.address",
    }


# --- prepare, summary, form round trip ------------------------------------------------------------


def test_it_fills_the_group_from_the_credential_and_normalises_the_format() -> None:
    body = body_with(body={"contentType": "HTML", "content": "<b>x</b>"})
    ready = msgraph.prepare(body, credential())
    assert ready["groupId"] == GROUP
    assert ready["threads"][0]["posts"][0]["body"]["contentType"] == "html"
    assert "groupId" not in body and body["threads"][0]["posts"][0]["body"]["contentType"] == "HTML"


def test_it_keeps_a_group_override_when_preparing() -> None:
    assert msgraph.prepare({**BODY, "groupId": OTHER_GROUP.upper()}, credential())["groupId"] == OTHER_GROUP


def test_it_summarizes_topic_and_addresses() -> None:
    assert msgraph.summarize(BODY) == msgraph.Summary("Order 123", ["AdeleV@contoso.com"])
    assert msgraph.summarize({"threads": "x"}) == msgraph.Summary("", [])


def test_it_round_trips_the_form() -> None:
    for body in (
        BODY,
        body_with(newParticipants=[{"emailAddress": {"address": "a@contoso.com"}}]),
    ):
        fields, rows = msgraph.fields_from_body(body)
        assert msgraph.body_from_fields(fields, rows) == body


def test_the_form_of_a_prepared_body_leaves_its_marker_out() -> None:
    # "Duplicate as new" goes through the form: the copy gets a marker of its own when prepared.
    body = prepared()
    fields, rows = msgraph.fields_from_body(body)
    again = msgraph.body_from_fields(fields, rows)
    assert msgraph.marker_of(again) is None
    assert again == {**BODY, "groupId": GROUP}


def test_it_drops_blank_rows_and_blank_optional_values_from_the_form() -> None:
    fields = {
        "groupId": " ",
        "topic": " Order 123 ",
        "threads.0.posts.0.body.contentType": "text",
        "threads.0.posts.0.body.content": "Kick-off",
    }
    rows = [{"emailAddress.name": "", "emailAddress.address": ""}, {"emailAddress.address": "b@contoso.com "}]
    assert msgraph.body_from_fields(fields, rows) == {
        "topic": "Order 123",
        "threads": [
            {
                "posts": [
                    {
                        "body": {"contentType": "text", "content": "Kick-off"},
                        "newParticipants": [{"emailAddress": {"address": "b@contoso.com"}}],
                    }
                ]
            }
        ],
    }


# --- create ---------------------------------------------------------------------------------------


def test_it_sends_the_exact_create_request() -> None:
    cred = credential()
    fake = FakeMicrosoft({f"POST /v1.0/groups/{OTHER_GROUP}/conversations": (201, CREATED)})
    body = msgraph.prepare({**BODY, "groupId": OTHER_GROUP}, cred, key="record-42")
    msgraph.create(body, cred, http_for(cred, fake))
    _, request = fake.requests
    assert request.method == "POST"
    assert str(request.url) == f"{GRAPH}/v1.0/groups/{OTHER_GROUP}/conversations"
    assert request.headers["authorization"] == "Bearer eyJ0eXAi.delegated-1.sig"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    uuid.UUID(request.headers["client-request-id"])
    assert request.content == (
        b'{"topic":"Order 123","threads":[{"posts":[{"body":{"contentType":"text","content":"Kick-off"},'
        b'"newParticipants":[{"emailAddress":{"name":"Adele Vance","address":"AdeleV@contoso.com"}}],'
        b'"singleValueExtendedProperties":[{"id":"String {8c7a3b1e-5d2f-4e6a-9b0c-1f2e3d4c5b6a} Name '
        b'convadmin-key","value":"record-42"}]}]}]}'
    )


def test_prepare_marks_the_first_post_with_the_key_or_a_fresh_uuid_kept_by_a_retry() -> None:
    cred = credential()
    assert msgraph.marker_of(msgraph.prepare(BODY, cred, key="record-7")) == "record-7"
    fresh = msgraph.prepare(BODY, cred)
    uuid.UUID(msgraph.marker_of(fresh))
    assert msgraph.marker_of(msgraph.prepare(BODY, cred)) != msgraph.marker_of(fresh)
    # A retry sends the stored (prepared) body again: it validates and keeps its marker.
    assert msgraph.validate(fresh) == []
    assert msgraph.marker_of(msgraph.prepare(fresh, cred)) == msgraph.marker_of(fresh)


def test_it_accepts_only_its_own_marker_property() -> None:
    other = [{"id": "String {00020329-0000-0000-c000-000000000046} Name x", "value": "v"}]
    assert paths(body_with(singleValueExtendedProperties=other)) == {
        msgraph.MARKER_PATH: paths(body_with(singleValueExtendedProperties=[]))[msgraph.MARKER_PATH]
    }
    assert "Only the marker" in paths(body_with(singleValueExtendedProperties="x"))[msgraph.MARKER_PATH]


def test_it_sends_unicode_as_utf8() -> None:
    request = msgraph.build_request({**BODY, "topic": "Café ☕"}, credential(), "tok")
    assert json.loads(request.content)["topic"] == "Café ☕"
    assert "Café ☕".encode() in request.content


def test_it_builds_a_preview_with_a_token_placeholder() -> None:
    request = msgraph.build_request(prepared(), credential())
    assert request.headers["authorization"] == f"Bearer {msgraph.ACCESS_TOKEN_PLACEHOLDER}"
    assert b"groupId" not in request.content


@pytest.mark.parametrize("status", [200, 201])
def test_it_parses_the_created_conversation(status: int) -> None:
    cred = credential()
    fake = FakeMicrosoft(create_route(status))
    created = msgraph.create(prepared(), cred, http_for(cred, fake))
    assert created.external_id == CONV
    assert created.status == status
    assert created.body["threads"] == [{"id": THREAD}]
    assert created.participants == BODY["threads"][0]["posts"][0]["newParticipants"]
    assert not created.existed


def test_it_stores_the_rotated_refresh_token_on_create() -> None:
    changes: list[dict[str, str]] = []
    cred = credential(changes)
    fake = FakeMicrosoft(create_route())
    msgraph.create(prepared(), cred, http_for(cred, fake))
    assert fake.token_forms()[0]["refresh_token"] == REFRESH
    assert fake.token_forms()[0]["grant_type"] == "refresh_token"
    assert uncached(changes) == [{"client_secret": SECRET, "refresh_token": "0.AXoA-new-refresh-1"}]
    assert cred.secrets["refresh_token"] == "0.AXoA-new-refresh-1"


def test_it_refreshes_once_and_retries_after_a_401() -> None:
    changes: list[dict[str, str]] = []
    cred = credential(changes)
    expired = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}})
    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": [expired, (201, CREATED)]})
    created = msgraph.create(prepared(), cred, http_for(cred, fake))
    assert created.external_id == CONV
    first, second = [r for r in fake.requests if r.method == "POST" and "/groups/" in r.url.path]
    assert first.headers["authorization"] == "Bearer eyJ0eXAi.delegated-1.sig"
    assert second.headers["authorization"] == "Bearer eyJ0eXAi.delegated-3.sig"
    assert fake.token_forms()[1]["refresh_token"] == "0.AXoA-new-refresh-1"  # the rotated one
    assert [c["refresh_token"] for c in changes] == ["0.AXoA-new-refresh-1", "0.AXoA-new-refresh-3"]


def test_it_gives_up_after_a_second_401() -> None:
    cred = credential()
    expired = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}})
    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": [expired]})
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "InvalidAuthenticationToken"
    assert exc.value.status == 401
    assert not exc.value.outcome_unknown
    assert len(fake.graph_requests()) == 2


def test_it_explains_that_app_only_tokens_cannot_create() -> None:
    cred = credential()
    fake = FakeMicrosoft(create_route(403, APP_ONLY_403))
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "ErrorAccessDenied"
    assert exc.value.status == 403
    assert exc.value.message.startswith("Access is denied. Check credentials and try again.")
    assert "delegated permission Group.ReadWrite.All" in exc.value.message
    assert exc.value.permanent


@pytest.mark.parametrize("code", ["Request_ResourceNotFound", "MailboxNotEnabledForRESTAPI"])
def test_it_explains_that_only_microsoft_365_groups_have_conversations(code: str) -> None:
    cred = credential()
    fake = FakeMicrosoft(create_route(404, {"error": {"code": code, "message": "Not found."}}))
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == code
    assert "only Microsoft 365 (Unified) groups have conversations" in exc.value.message
    assert exc.value.permanent


def test_it_reports_a_bad_request_as_permanent() -> None:
    cred = credential()
    fake = FakeMicrosoft(create_route(400, {"error": {"code": "BadRequest", "message": "Invalid request."}}))
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert (exc.value.code, exc.value.message, exc.value.permanent) == (
        "BadRequest",
        "Invalid request.",
        True,
    )


def test_it_waits_the_fractional_retry_after_when_throttled() -> None:
    cred = credential()
    throttled = {
        "error": {
            "code": "TooManyRequests",
            "message": "Please retry again later.",
            "innerError": {"code": "429", "message": "Please retry after", "status": "429"},
        }
    }
    fake = FakeMicrosoft(
        {f"POST /v1.0/groups/{GROUP}/conversations": (429, throttled, {"Retry-After": "2.128"})}
    )
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "TooManyRequests"
    assert exc.value.retry_after == 2.128
    assert not exc.value.permanent
    assert not exc.value.outcome_unknown


# Any 5xx on a create may come after the work was done (a 504 gateway gave up waiting, say).
@pytest.mark.parametrize(("status", "unknown"), [(503, True), (504, True), (500, True), (502, True)])
def test_it_treats_server_errors_as_retryable(status: int, unknown: bool) -> None:
    cred = credential()
    fake = FakeMicrosoft(create_route(status, {"error": {"code": "serviceNotAvailable", "message": "Busy."}}))
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert not exc.value.permanent
    assert exc.value.outcome_unknown is unknown


def test_it_explains_an_error_body_that_is_not_json() -> None:
    cred = credential()
    fake = FakeMicrosoft(
        {f"POST /v1.0/groups/{GROUP}/conversations": lambda r: httpx.Response(400, text="<html>Bad</html>")}
    )
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.message == "Microsoft Graph answered HTTP 400: an error without a readable body."
    assert exc.value.code == "http_400"


@pytest.mark.parametrize(
    "reply", [lambda r: httpx.Response(201, text="ok"), lambda r: httpx.Response(201, json={})]
)
def test_a_success_without_an_id_leaves_the_outcome_unknown(
    reply: Callable[[httpx.Request], httpx.Response],
) -> None:
    cred = credential()
    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": reply})
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "no_id"
    assert exc.value.outcome_unknown


def test_a_read_timeout_on_create_leaves_the_outcome_unknown() -> None:
    cred = credential()

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": timeout})
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.outcome_unknown
    assert not exc.value.permanent


def test_a_refused_connection_is_retryable_and_sent_nothing() -> None:
    cred = credential()

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": refused})
    with pytest.raises(ProviderError) as exc:
        msgraph.create(prepared(), cred, http_for(cred, fake))
    assert exc.value.code == "connect_error"
    assert not exc.value.permanent
    assert not exc.value.outcome_unknown


# --- lookup ---------------------------------------------------------------------------------------


CONVERSATIONS = f"/v1.0/groups/{GROUP}/conversations"
SENT_AT = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def candidate(cid: str, delivered: str = "2026-02-01T10:00:00Z") -> dict[str, Any]:
    return {"id": cid, "topic": "Order 123", "lastDeliveredDateTime": delivered}


def candidate_routes(cid: str, marker: str | None, created: str = "2026-02-01T09:00:05Z") -> dict[str, Route]:
    """A conversation with one thread whose one post carries ``marker`` (None: no marker)."""
    thread = f"T-{cid}"
    post: dict[str, Any] = {"id": f"P-{cid}", "createdDateTime": created}
    if marker is not None:
        post["singleValueExtendedProperties"] = [{"id": msgraph.MARKER_ID, "value": marker}]
    return {
        f"GET {CONVERSATIONS}/{quote(cid, safe='=')}/threads": (200, {"value": [{"id": thread}]}),
        f"GET /v1.0/groups/{GROUP}/threads/{thread}/posts": (200, {"value": [post]}),
    }


def test_it_finds_the_conversation_carrying_its_marker_across_pages() -> None:
    cred = credential()
    body = msgraph.prepare(BODY, cred, key="record-42")
    page1 = {
        "value": [candidate("newer=", "2026-02-02T10:00:00Z"), {"id": "other=", "topic": "Order 124"}],
        "@odata.nextLink": f"{GRAPH}{CONVERSATIONS}?$select=id,topic,lastDeliveredDateTime&$skiptoken=abc",
    }
    page2 = {"value": [candidate(CONV)]}
    fake = FakeMicrosoft(
        {
            f"GET {CONVERSATIONS}": [(200, page1), (200, page2)],
            **candidate_routes("newer=", "record-43"),  # another record's conversation, same topic
            **candidate_routes(CONV, "record-42"),
        }
    )
    found = msgraph.lookup(body, cred, http_for(cred, fake))
    assert found is not None
    assert (found.external_id, found.existed, found.status) == (CONV, True, 200)
    first, second, *reads = fake.graph_requests()
    assert str(first.url) == f"{GRAPH}{CONVERSATIONS}?$select=id,topic,lastDeliveredDateTime"
    assert str(second.url).endswith("&$skiptoken=abc")
    assert first.headers["authorization"] == "Bearer eyJ0eXAi.delegated-1.sig"
    posts = next(r for r in reads if r.url.path.endswith("/posts"))
    assert (
        posts.url.params["$expand"] == f"singleValueExtendedProperties($filter=id eq '{msgraph.MARKER_ID}')"
    )


def test_a_second_create_never_reports_the_first_conversation_with_its_topic() -> None:
    # Issue 7: the group already has "Order 123" (record 41's); record 42's create timed out before Graph
    # made anything. The look-up must not claim record 41's conversation.
    cred = credential()
    body = msgraph.prepare(BODY, cred, key="record-42")
    fake = FakeMicrosoft(
        {f"GET {CONVERSATIONS}": (200, {"value": [candidate(CONV)]}), **candidate_routes(CONV, "record-41")}
    )
    assert msgraph.lookup(body, cred, http_for(cred, fake), sent_at=SENT_AT) is None


def test_a_candidate_without_a_marker_is_ambiguous() -> None:
    cred = credential()
    body = msgraph.prepare(BODY, cred, key="record-42")
    fake = FakeMicrosoft(
        {f"GET {CONVERSATIONS}": (200, {"value": [candidate(CONV)]}), **candidate_routes(CONV, None)}
    )
    with pytest.raises(LookupAmbiguous) as exc:
        msgraph.lookup(body, cred, http_for(cred, fake), sent_at=SENT_AT)
    assert (exc.value.code, exc.value.candidates) == ("ambiguous", [CONV])
    assert "Check in the group" in exc.value.message


def test_conversations_written_before_the_send_are_not_candidates() -> None:
    cred = credential()
    body = msgraph.prepare(BODY, cred, key="record-42")
    fake = FakeMicrosoft(
        {
            f"GET {CONVERSATIONS}": (
                200,
                {"value": [candidate("stale=", "2026-01-01T10:00:00Z"), candidate(CONV)]},
            ),
            # Delivered to after the send (someone replied) but its first post is older: not ours.
            **candidate_routes(CONV, None, created="2026-01-15T08:00:00Z"),
        }
    )
    assert msgraph.lookup(body, cred, http_for(cred, fake), sent_at=SENT_AT) is None
    assert not any("stale=" in str(r.url) for r in fake.graph_requests()[1:])


def test_a_body_without_a_marker_is_found_only_when_one_candidate_follows_the_send() -> None:
    cred = credential()
    body = {**BODY, "groupId": GROUP}  # stored before markers existed
    one = {f"GET {CONVERSATIONS}": (200, {"value": [candidate(CONV)]}), **candidate_routes(CONV, None)}
    found = msgraph.lookup(body, cred, http_for(cred, FakeMicrosoft(one)), sent_at=SENT_AT)
    assert found is not None and found.external_id == CONV
    with pytest.raises(LookupAmbiguous):  # without the send time nothing proves it
        msgraph.lookup(body, cred, http_for(cred, FakeMicrosoft(one)))
    two = {
        f"GET {CONVERSATIONS}": (200, {"value": [candidate(CONV), candidate("twin=")]}),
        **candidate_routes(CONV, None),
        **candidate_routes("twin=", None),
    }
    with pytest.raises(LookupAmbiguous) as exc:
        msgraph.lookup(body, cred, http_for(cred, FakeMicrosoft(two)), sent_at=SENT_AT)
    assert sorted(exc.value.candidates) == sorted([CONV, "twin="])


def test_too_many_candidates_are_ambiguous_without_reading_each() -> None:
    cred = credential()
    many = [candidate(f"c{n}=") for n in range(msgraph.MAX_CANDIDATES + 1)]
    fake = FakeMicrosoft({f"GET {CONVERSATIONS}": (200, {"value": many})})
    with pytest.raises(LookupAmbiguous):
        msgraph.lookup(prepared(), cred, http_for(cred, fake))
    assert len(fake.graph_requests()) == 1


def test_it_finds_nothing_when_no_topic_matches() -> None:
    cred = credential(refresh_token=None)
    fake = FakeMicrosoft(
        {f"GET /v1.0/groups/{GROUP}/conversations": (200, {"value": [{"id": "x=", "topic": "Other"}]})}
    )
    assert msgraph.lookup(prepared(), cred, http_for(cred, fake)) is None
    assert fake.graph_requests()[0].headers["authorization"] == f"Bearer {APP_ACCESS}"


def test_it_never_follows_a_paging_link_to_another_host() -> None:
    cred = credential()
    page = {"value": [], "@odata.nextLink": "https://evil.example.com/v1.0/next"}
    fake = FakeMicrosoft({f"GET /v1.0/groups/{GROUP}/conversations": (200, page)})
    with pytest.raises(ProviderError, match="another host"):
        msgraph.lookup(prepared(), cred, http_for(cred, fake))
    assert all(r.url.host != "evil.example.com" for r in fake.requests)


# --- fetch ----------------------------------------------------------------------------------------

CONVERSATION = {
    "id": CONV,
    "topic": "Order 123",
    "hasAttachments": False,
    "lastDeliveredDateTime": "2026-02-01T10:00:00Z",
    "uniqueSenders": ["Megan Bowen"],
    "preview": "Kick-off",
}
POSTS = {
    "value": [
        {
            "id": "post-1=",
            "from": {"emailAddress": {"name": "Megan Bowen", "address": "MeganB@contoso.com"}},
            "newParticipants": [{"emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.com"}}],
        },
        {"id": "post-2=", "from": {"emailAddress": {"name": "Adele Vance", "address": "adelev@contoso.com"}}},
    ]
}


def fetch_routes(conversation: Route = (200, CONVERSATION), group: str = GROUP) -> dict[str, Route]:
    return {
        f"GET /v1.0/groups/{group}/conversations/{CONV}": conversation,
        f"GET /v1.0/groups/{group}/conversations/{CONV}/threads": (
            200,
            {"value": [{"id": THREAD, "topic": "Order 123"}]},
        ),
        f"GET /v1.0/groups/{group}/threads/{THREAD}/posts": (200, POSTS),
    }


def test_it_fetches_the_conversation_threads_and_people() -> None:
    cred = credential()
    fake = FakeMicrosoft(fetch_routes())
    fetched = msgraph.fetch(CONV, cred, http_for(cred, fake))
    assert fetched.external_id == CONV
    assert fetched.conversation["topic"] == "Order 123"
    assert fetched.conversation["threads"][0]["id"] == THREAD
    assert [p["id"] for p in fetched.conversation["threads"][0]["posts"]] == ["post-1=", "post-2="]
    assert fetched.participants == [
        {"emailAddress": {"name": "Megan Bowen", "address": "MeganB@contoso.com"}, "role": "sender"},
        {"emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.com"}, "role": "participant"},
    ]
    urls = [str(r.url) for r in fake.graph_requests()]
    assert urls == [
        f"{GRAPH}/v1.0/groups/{GROUP}/conversations/{CONV}",
        f"{GRAPH}/v1.0/groups/{GROUP}/conversations/{CONV}/threads",
        f"{GRAPH}/v1.0/groups/{GROUP}/threads/{THREAD}/posts?$select=id,from,sender,newParticipants,receivedDateTime",
    ]


def test_it_percent_encodes_slash_and_plus_in_ids() -> None:
    cred = credential()
    odd = "AAQk/AGRh+ZmRh="
    fake = FakeMicrosoft(
        {
            f"GET /v1.0/groups/{GROUP}/conversations/AAQk%2FAGRh%2BZmRh=": (
                404,
                {"error": {"code": "Request_ResourceNotFound", "message": "x"}},
            )
        }
    )
    with pytest.raises(ProviderError):
        msgraph.fetch(odd, cred, http_for(cred, fake))
    assert (
        fake.graph_requests()[0].url.raw_path
        == f"/v1.0/groups/{GROUP}/conversations/AAQk%2FAGRh%2BZmRh=".encode()
    )


def test_it_fetches_from_another_group_when_told() -> None:
    cred = credential()
    fake = FakeMicrosoft(fetch_routes(group=OTHER_GROUP))
    assert msgraph.fetch(CONV, cred, http_for(cred, fake), body={"groupId": OTHER_GROUP}).external_id == CONV


def test_it_reads_with_the_app_token_when_nobody_signed_in() -> None:
    cred = credential(refresh_token=None)
    fake = FakeMicrosoft(fetch_routes())
    msgraph.fetch(CONV, cred, http_for(cred, fake))
    assert fake.token_forms()[0]["grant_type"] == "client_credentials"
    assert {r.headers["authorization"] for r in fake.graph_requests()} == {f"Bearer {APP_ACCESS}"}


def test_it_waits_out_replication_lag_after_a_create(sleeps: list[float]) -> None:
    cred = credential()
    lag = (
        404,
        {
            "error": {
                "code": "ErrorItemNotFound",
                "message": "The specified object was not found in the store.",
            }
        },
    )
    fake = FakeMicrosoft(fetch_routes([lag, lag, (200, CONVERSATION)]))
    assert msgraph.fetch(CONV, cred, http_for(cred, fake)).external_id == CONV
    assert sleeps == [msgraph.LAG_DELAY, msgraph.LAG_DELAY]


def test_it_stops_waiting_for_replication_after_a_few_seconds(sleeps: list[float]) -> None:
    cred = credential()
    lag = (404, {"error": {"code": "ErrorItemNotFound", "message": "Not found in the store."}})
    fake = FakeMicrosoft(fetch_routes([lag]))
    with pytest.raises(ProviderError) as exc:
        msgraph.fetch(CONV, cred, http_for(cred, fake))
    assert exc.value.code == "ErrorItemNotFound"
    assert len(fake.graph_requests()) == msgraph.LAG_ATTEMPTS
    assert len(sleeps) == msgraph.LAG_ATTEMPTS - 1
    assert 4 <= sum(sleeps) <= 6


def test_it_does_not_retry_other_not_found_errors(sleeps: list[float]) -> None:
    cred = credential()
    fake = FakeMicrosoft(
        fetch_routes((404, {"error": {"code": "Request_ResourceNotFound", "message": "No group."}}))
    )
    with pytest.raises(ProviderError):
        msgraph.fetch(CONV, cred, http_for(cred, fake))
    assert sleeps == []


# --- check ----------------------------------------------------------------------------------------

GROUP_PATH = f"GET /v1.0/groups/{GROUP}"
UNIFIED = {"id": GROUP, "displayName": "Sales", "mailEnabled": True, "groupTypes": ["Unified"]}
ME = {"id": "u-1", "userPrincipalName": "adele@contoso.com"}


def test_it_checks_the_group_and_who_is_signed_in() -> None:
    changes: list[dict[str, str]] = []
    cred = credential(changes)
    fake = FakeMicrosoft({GROUP_PATH: (200, UNIFIED), "GET /v1.0/me": (200, ME)})
    message = msgraph.check(cred, http_for(cred, fake))
    assert message == "Group 'Sales' (Microsoft 365) reachable; signed in as adele@contoso.com"
    assert [f["grant_type"] for f in fake.token_forms()] == ["client_credentials", "refresh_token"]
    group_request, me_request = fake.graph_requests()
    assert (
        str(group_request.url) == f"{GRAPH}/v1.0/groups/{GROUP}?$select=id,displayName,mailEnabled,groupTypes"
    )
    assert str(me_request.url) == f"{GRAPH}/v1.0/me?$select=id,userPrincipalName,displayName"
    assert uncached(changes) == [{"client_secret": SECRET, "refresh_token": "0.AXoA-new-refresh-2"}]


def test_it_checks_with_the_app_token_before_anyone_signed_in() -> None:
    cred = credential(refresh_token=None)
    fake = FakeMicrosoft({GROUP_PATH: (200, UNIFIED)})
    message = msgraph.check(cred, http_for(cred, fake))
    assert message.startswith("Group 'Sales' (Microsoft 365) reachable with the app's token")
    assert "Sign in with Microsoft" in message
    assert fake.graph_requests()[0].headers["authorization"] == f"Bearer {APP_ACCESS}"


@pytest.mark.parametrize(
    "group",
    [
        {**UNIFIED, "groupTypes": []},
        {**UNIFIED, "mailEnabled": False, "groupTypes": ["Unified"]},
        {"id": GROUP, "displayName": "Sales"},
    ],
)
def test_it_rejects_a_group_that_is_not_microsoft_365(group: dict[str, Any]) -> None:
    cred = credential()
    fake = FakeMicrosoft({GROUP_PATH: (200, group), "GET /v1.0/me": (200, ME)})
    with pytest.raises(ProviderError) as exc:
        msgraph.check(cred, http_for(cred, fake))
    assert exc.value.code == "not_unified_group"
    assert "Group 'Sales' is not a Microsoft 365 group" in exc.value.message


def test_it_reports_a_missing_group() -> None:
    cred = credential()
    missing = (
        404,
        {"error": {"code": "Request_ResourceNotFound", "message": f"Resource '{GROUP}' does not exist."}},
    )
    fake = FakeMicrosoft({GROUP_PATH: missing})
    with pytest.raises(ProviderError) as exc:
        msgraph.check(cred, http_for(cred, fake))
    assert exc.value.code == "Request_ResourceNotFound"
    assert exc.value.message.startswith(f"Resource '{GROUP}' does not exist.")


def test_it_reports_a_wrong_secret_during_the_check() -> None:
    cred = credential()
    fake = FakeMicrosoft(
        token=token_error("invalid_client", [7000215], "AADSTS7000215: Invalid client secret provided.")
    )
    with pytest.raises(ProviderError) as exc:
        msgraph.check(cred, http_for(cred, fake))
    assert exc.value.code == "AADSTS7000215"
    assert "secret's ID" in exc.value.message


def test_it_explains_an_app_without_read_permission() -> None:
    cred = credential(refresh_token=None)
    denied = (
        403,
        {
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
            }
        },
    )
    fake = FakeMicrosoft({GROUP_PATH: denied})
    with pytest.raises(ProviderError) as exc:
        msgraph.check(cred, http_for(cred, fake))
    assert "Group.Read.All" in exc.value.message


# --- secrets --------------------------------------------------------------------------------------


def test_no_secret_reaches_exchanges_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="providers.http")
    cred = credential()
    routes = {**create_route(), **fetch_routes(), GROUP_PATH: (200, UNIFIED), "GET /v1.0/me": (200, ME)}
    fake = FakeMicrosoft(routes)
    http = http_for(cred, fake)
    created = msgraph.create(prepared(), cred, http)
    msgraph.fetch(created.external_id, cred, http)
    msgraph.check(cred, http)
    expired = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
    fake.routes[f"POST /v1.0/groups/{GROUP}/conversations"] = [expired, (201, CREATED)]
    msgraph.create(prepared(), cred, http)
    assert len(http.exchanges) == len(fake.requests) > 10
    assert_no_secrets(http, [SECRET, REFRESH, *fake.issued], caplog)
    token_exchange = http.exchanges[0]
    assert "client_secret=[redacted]" in token_exchange.request_body
    assert token_exchange.request_headers.get("content-type") == "application/x-www-form-urlencoded"


def test_the_credential_repr_hides_secrets() -> None:
    assert SECRET not in repr(credential())
    assert REFRESH not in repr(credential())


# --- the access token is reused until it expires ---------------------------------------------------

CACHED = "eyJ0eXAi.cached-access.sig"


def expiring_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_it_creates_with_the_stored_access_token_while_it_is_valid() -> None:
    changes: list[dict[str, str]] = []
    cred = credential(changes)
    cred.secrets.update(access_token=CACHED, access_token_expires_at=expiring_in(600))
    fake = FakeMicrosoft(create_route())
    http = Http([SECRET, REFRESH], transport=httpx.MockTransport(fake))
    assert msgraph.create(prepared(), cred, http).external_id == CONV
    assert fake.token_forms() == []  # the refresh token is not spent
    assert fake.graph_requests()[0].headers["authorization"] == f"Bearer {CACHED}"
    assert changes == []
    assert CACHED in http.secrets  # redacted from the exchanges even when the session did not know it
    assert_no_secrets(http, [CACHED])


@pytest.mark.parametrize(
    "expires_at",
    [expiring_in(115), expiring_in(-60), "", "soon", "2026-01-01T00:00:00"],
    ids=["within-the-margin", "expired", "empty", "unreadable", "without-a-zone"],
)
def test_it_refreshes_a_token_that_expires_within_the_margin_or_has_no_readable_expiry(
    expires_at: str,
) -> None:
    changes: list[dict[str, str]] = []
    cred = credential(changes)
    cred.secrets.update(access_token=CACHED, access_token_expires_at=expires_at)
    fake = FakeMicrosoft(create_route())
    before = datetime.now(UTC)
    msgraph.create(prepared(), cred, http_for(cred, fake))
    assert [f["refresh_token"] for f in fake.token_forms()] == [REFRESH]
    assert fake.graph_requests()[0].headers["authorization"] == "Bearer eyJ0eXAi.delegated-1.sig"
    stored = changes[-1]
    assert stored["access_token"] == "eyJ0eXAi.delegated-1.sig"
    expires = datetime.fromisoformat(stored["access_token_expires_at"])
    assert before + timedelta(seconds=3599) <= expires <= datetime.now(UTC) + timedelta(seconds=3599)


def test_a_caller_that_waited_for_the_lock_uses_the_token_the_first_one_stored() -> None:
    """The lock reloads the secrets: another process refreshed meanwhile, so no second refresh."""
    cred = credential()
    held = []

    @contextmanager
    def lock():
        held.append(True)
        cred.secrets.update(
            refresh_token="0.AXoA-theirs", access_token=CACHED, access_token_expires_at=expiring_in(3000)
        )
        yield

    cred.lock = lock
    fake = FakeMicrosoft(create_route())
    msgraph.create(prepared(), cred, http_for(cred, fake))
    assert held == [True] and fake.token_forms() == []
    assert fake.graph_requests()[0].headers["authorization"] == f"Bearer {CACHED}"


def test_the_refresh_runs_inside_the_lock() -> None:
    cred = credential()
    inside: list[bool] = []
    state = {"locked": False}

    @contextmanager
    def lock():
        state["locked"] = True
        yield
        state["locked"] = False

    def token(request: httpx.Request) -> httpx.Response:
        inside.append(state["locked"])
        return FakeMicrosoft().issue(request)

    cred.lock = lock
    msgraph.create(prepared(), cred, http_for(cred, FakeMicrosoft(create_route(), token=token)))
    assert inside == [True]


def test_a_refused_stored_token_is_refreshed_once_not_reused() -> None:
    cred = credential()
    cred.secrets.update(access_token=CACHED, access_token_expires_at=expiring_in(3000))
    expired = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "Token revoked."}})
    fake = FakeMicrosoft({f"POST /v1.0/groups/{GROUP}/conversations": [expired, (201, CREATED)]})
    assert msgraph.create(prepared(), cred, http_for(cred, fake)).external_id == CONV
    first, second = fake.graph_requests()
    assert first.headers["authorization"] == f"Bearer {CACHED}"
    assert second.headers["authorization"] == "Bearer eyJ0eXAi.delegated-1.sig"
    assert [f["refresh_token"] for f in fake.token_forms()] == [REFRESH]
    assert cred.secrets["access_token"] == "eyJ0eXAi.delegated-1.sig"


def test_a_sign_in_replaces_the_previous_users_stored_token() -> None:
    cred = credential()
    cred.secrets.update(access_token=CACHED, access_token_expires_at=expiring_in(3000))
    fake = FakeMicrosoft({"GET /v1.0/me": (200, ME)})
    msgraph.redeem_code(
        cred, code="c", redirect_uri="https://a.example/cb", code_verifier="v" * 43, http=http_for(cred, fake)
    )
    assert cred.secrets["access_token"] == "eyJ0eXAi.delegated-1.sig"


def test_a_check_whose_stored_token_was_revoked_refreshes_once_instead_of_asking_to_sign_in_again() -> None:
    cred = credential()
    cred.secrets.update(access_token=CACHED, access_token_expires_at=expiring_in(3000))
    revoked = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "Token revoked."}})
    fake = FakeMicrosoft({GROUP_PATH: [revoked, (200, UNIFIED)], "GET /v1.0/me": (200, ME)})
    message = msgraph.check(cred, http_for(cred, fake))
    assert message == "Group 'Sales' (Microsoft 365) reachable; signed in as adele@contoso.com"
    assert [f["grant_type"] for f in fake.token_forms()] == [
        "client_credentials",
        "refresh_token",
        "client_credentials",
    ]
    assert [r.headers["authorization"] for r in fake.graph_requests()] == [
        f"Bearer {CACHED}",
        "Bearer eyJ0eXAi.delegated-2.sig",
        "Bearer eyJ0eXAi.delegated-2.sig",
    ]


def test_a_read_refused_twice_is_an_error() -> None:
    cred = credential()
    cred.secrets.update(access_token=CACHED, access_token_expires_at=expiring_in(3000))
    revoked = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "Token revoked."}})
    fake = FakeMicrosoft({GROUP_PATH: [revoked]})
    with pytest.raises(ProviderError) as exc:
        msgraph.check(cred, http_for(cred, fake))
    assert exc.value.status == 401 and len(fake.graph_requests()) == 2
