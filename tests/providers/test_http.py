from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest

import providers
from providers.base import ProviderError
from providers.http import BODY_CAP, USER_AGENT, Http, json_body, retry_after
from providers.redact import MASK, secret_forms

SECRET = "sk-live-0123456789abcdef"
URL = "https://api.example.com/v1/things"

Handler = Callable[[httpx.Request], httpx.Response]


def make_http(handler: Handler, secrets: tuple[str, ...] = (SECRET,)) -> tuple[Http, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    return Http(secrets, transport=httpx.MockTransport(record)), sent


def post(body: dict[str, object] | None = None, url: str = URL) -> httpx.Request:
    return httpx.Request(
        "POST",
        url,
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        content=json.dumps(body or {"name": "x", "client_secret": SECRET}).encode(),
    )


def raising(exc: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return handler


def send_error(request: httpx.Request, exc: type[httpx.TransportError]) -> tuple[Http, ProviderError]:
    http, _ = make_http(raising(exc))
    with pytest.raises(ProviderError) as info:
        http.send(request)
    return http, info.value


def test_it_records_a_redacted_exchange():
    http, _ = make_http(
        lambda r: httpx.Response(
            201, json={"id": "c1", "access_token": SECRET}, headers={"X-Request-Id": "r1"}
        )
    )
    response = http.send(post())
    assert response.status_code == 201
    [exchange] = http.exchanges
    assert (exchange.method, exchange.url, exchange.status) == ("POST", URL, 201)
    assert exchange.request_headers["authorization"] == f"Bearer {MASK}"
    assert json.loads(exchange.request_body) == {"name": "x", "client_secret": MASK}
    assert json.loads(exchange.response_body) == {"id": "c1", "access_token": MASK}
    assert exchange.response_headers["x-request-id"] == "r1"
    assert exchange.request_size == len(post().content)
    assert exchange.response_size == len(response.content)
    assert exchange.duration_ms >= 0
    assert (exchange.error, exchange.truncated) == ("", False)
    assert SECRET not in json.dumps(exchange.as_dict(), default=str)


def test_it_masks_a_known_secret_in_the_url():
    http, sent = make_http(lambda r: httpx.Response(200))
    http.send(httpx.Request("GET", f"{URL}?api_key={SECRET}"))
    assert http.exchanges[0].url == f"{URL}?api_key={MASK}"
    assert sent[0].url.params["api_key"] == SECRET  # the wire keeps the real value


def test_it_masks_secrets_added_at_run_time():
    http, _ = make_http(lambda r: httpx.Response(200, text="new token: tok-added-later"), secrets=())
    http.add_secret("tok-added-later", None, "")
    http.send(httpx.Request("GET", URL))
    assert http.exchanges[0].response_body == f"new token: {MASK}"


def test_it_logs_one_info_line_and_bodies_only_at_debug(caplog: pytest.LogCaptureFixture):
    http, _ = make_http(lambda r: httpx.Response(200, json={"ok": True}))
    caplog.set_level(logging.INFO, logger="providers.http")
    http.send(post())
    records = [r for r in caplog.records if r.name == "providers.http"]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    line = records[0].getMessage()
    assert line.startswith(f"POST {URL} -> 200 in ")
    assert line.endswith(" ms")
    assert "client_secret" not in caplog.text


def test_it_logs_redacted_bodies_at_debug(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="providers.http")
    http, _ = make_http(lambda r: httpx.Response(200, json={"refresh_token": SECRET, "echo": SECRET}))
    http.send(post(url=f"{URL}?key={SECRET}"))
    lines = [r.getMessage() for r in caplog.records if r.name == "providers.http"]
    assert any(line.startswith("request body:") and "client_secret" in line for line in lines)
    assert any(line.startswith("response body:") and "refresh_token" in line for line in lines)
    for line in lines:
        for form in secret_forms([SECRET]):
            assert form not in line


def test_it_logs_a_transport_failure_without_secrets(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="providers.http")
    send_error(post(url=f"{URL}?key={SECRET}"), httpx.ConnectError)
    lines = [r.getMessage() for r in caplog.records if r.name == "providers.http"]
    assert len(lines) == 1
    assert "failed after" in lines[0]
    assert SECRET not in lines[0]


def test_it_truncates_a_long_response_body_keeping_its_size():
    http, _ = make_http(lambda r: httpx.Response(200, text="a" * (BODY_CAP + 10)))
    http.send(httpx.Request("GET", URL))
    exchange = http.exchanges[0]
    assert len(exchange.response_body) == BODY_CAP
    assert exchange.response_size == BODY_CAP + 10
    assert exchange.truncated


def test_it_truncates_a_long_request_body_keeping_its_size():
    http, _ = make_http(lambda r: httpx.Response(204))
    http.send(
        httpx.Request("POST", URL, content=b"b" * (BODY_CAP + 1), headers={"Content-Type": "text/plain"})
    )
    exchange = http.exchanges[0]
    assert (len(exchange.request_body), exchange.request_size, exchange.truncated) == (
        BODY_CAP,
        BODY_CAP + 1,
        True,
    )


def test_it_turns_a_refused_connection_into_a_retryable_error():
    http, error = send_error(post(), httpx.ConnectError)
    assert (error.code, error.permanent, error.outcome_unknown) == ("connect_error", False, False)
    assert "api.example.com" in error.message
    assert http.exchanges[0].error == error.message
    assert http.exchanges[0].status is None


def test_it_turns_a_connect_timeout_into_a_retryable_error():
    _, error = send_error(post(), httpx.ConnectTimeout)
    assert (error.code, error.permanent, error.outcome_unknown) == ("connect_timeout", False, False)


def test_it_leaves_the_outcome_unknown_after_a_read_timeout_on_a_post():
    http, error = send_error(post(), httpx.ReadTimeout)
    assert (error.code, error.permanent, error.outcome_unknown) == ("timeout", False, True)
    assert http.exchanges[0].error == error.message


def test_a_read_timeout_on_a_get_changes_nothing():
    _, error = send_error(httpx.Request("GET", URL), httpx.ReadTimeout)
    assert (error.code, error.outcome_unknown) == ("timeout", False)


def test_it_leaves_the_outcome_unknown_when_the_connection_breaks_during_a_post():
    _, error = send_error(post(), httpx.ReadError)
    assert (error.code, error.outcome_unknown, error.permanent) == ("transport_error", True, False)


def test_it_does_not_follow_redirects():
    http, sent = make_http(
        lambda r: httpx.Response(302, headers={"Location": "https://evil.example.net/steal"})
    )
    response = http.send(post())
    assert response.status_code == 302
    assert len(sent) == 1
    assert http.exchanges[0].status == 302


def test_it_sends_a_user_agent_naming_convadmin_and_its_version():
    http, sent = make_http(lambda r: httpx.Response(200))
    http.send(httpx.Request("GET", URL))
    assert sent[0].headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith(f"convadmin/{providers.__version__} ")


def test_it_keeps_a_user_agent_the_provider_set():
    http, sent = make_http(lambda r: httpx.Response(200))
    http.send(httpx.Request("GET", URL, headers={"User-Agent": "Mixin-SDK"}))
    assert sent[0].headers["User-Agent"] == "Mixin-SDK"


def test_it_records_every_exchange_in_order():
    http, _ = make_http(lambda r: httpx.Response(200))
    http.send(httpx.Request("GET", f"{URL}/1"))
    http.send(httpx.Request("GET", f"{URL}/2"))
    assert [e.url for e in http.exchanges] == [f"{URL}/1", f"{URL}/2"]


def test_json_body_parses_json_and_returns_none_otherwise():
    assert json_body(httpx.Response(200, json={"a": [1]})) == {"a": [1]}
    assert json_body(httpx.Response(502, text="<html>Bad Gateway</html>")) is None
    assert json_body(httpx.Response(204)) is None
    assert json_body(httpx.Response(200, content=b"\xff\xfe{")) is None


@pytest.mark.parametrize(("value", "expected"), [("7", 7.0), ("2.128", 2.128), ("soon", None)])
def test_retry_after_reads_seconds(value: str, expected: float | None):
    assert retry_after(httpx.Response(429, headers={"Retry-After": value})) == expected


def test_retry_after_is_none_without_the_header():
    assert retry_after(httpx.Response(429)) is None


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_retry_after_ignores_values_that_are_not_a_wait(value: str):
    assert retry_after(httpx.Response(429, headers={"Retry-After": value})) is None
