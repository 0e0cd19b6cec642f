from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, quote, quote_plus

import pytest

from providers.redact import MASK, redact_body, redact_data, redact_headers, redact_text, redact_url

# Chosen so that every spelling differs: quote != quote_plus (space), base64 != base64url (+ and /).
SECRET = "s3cr3t value/+?>>~"


def test_the_secret_has_distinct_spellings():
    std = base64.b64encode(SECRET.encode()).decode()
    assert len({SECRET, quote(SECRET, safe=""), quote_plus(SECRET)}) == 3
    assert std != base64.urlsafe_b64encode(SECRET.encode()).decode()


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION", "Proxy-Authorization"])
def test_it_masks_authorization_headers_whatever_their_case_keeping_the_scheme(name: str):
    assert redact_headers({name: "Bearer pit-1234-abcd"}) == {name: f"Bearer {MASK}"}
    assert redact_headers({name: "Basic QUM6c2VjcmV0"}) == {name: f"Basic {MASK}"}


def test_it_masks_an_authorization_header_without_a_known_scheme_whole():
    assert redact_headers({"Authorization": "eyJhbGciOi.payload.sig"}) == {"Authorization": MASK}


@pytest.mark.parametrize("name", ["Cookie", "cookie", "Set-Cookie", "X-Api-Key", "x-api-key", "X-Auth-Token"])
def test_it_masks_credential_headers(name: str):
    assert redact_headers([(name, "session=abcdef123")]) == {name: MASK}


def test_it_keeps_ordinary_headers_but_masks_known_secrets_in_them():
    headers = redact_headers(
        {"Content-Type": "application/json", "Location": f"https://x.test/?k={quote(SECRET, safe='')}"},
        [SECRET],
    )
    assert headers == {"Content-Type": "application/json", "Location": f"https://x.test/?k={MASK}"}


def test_it_masks_secret_json_keys_at_any_depth_but_keeps_error_codes():
    data = {
        "code": 20001,
        "error": {"code": "invalid_grant", "message": "bad"},
        "data": [{"Access_Token": "a1b2c3d4", "nested": {"refresh_token": "r1r2r3r4", "name": "kept"}}],
        "client_secret": "",
    }
    assert redact_data(data) == {
        "code": 20001,
        "error": {"code": "invalid_grant", "message": "bad"},
        "data": [{"Access_Token": MASK, "nested": {"refresh_token": MASK, "name": "kept"}}],
        "client_secret": "",
    }


def test_it_masks_secret_keys_in_a_json_body():
    body = json.dumps({"access_token": "tok-123456", "token_type": "Bearer", "code": 401}).encode()
    redacted = json.loads(redact_body(body, "application/json; charset=utf-8"))
    assert redacted == {"access_token": MASK, "token_type": "Bearer", "code": 401}


def test_it_recognises_json_without_a_content_type():
    assert json.loads(redact_body('{"pin_token": "abcdef"}')) == {"pin_token": MASK}


def test_it_masks_secret_keys_in_a_form_body_including_code_and_code_verifier():
    body = (
        "grant_type=refresh_token&refresh_token=r-1234&client_id=app-1&client_secret=cs-5678"
        "&code=auth-code-1&code_verifier=verifier-1&scope=offline_access"
    )
    redacted = dict(parse_qsl(redact_body(body, "application/x-www-form-urlencoded")))
    assert redacted == {
        "grant_type": "refresh_token",
        "refresh_token": MASK,
        "client_id": "app-1",
        "client_secret": MASK,
        "code": MASK,
        "code_verifier": MASK,
        "scope": "offline_access",
    }


def test_it_leaves_a_form_body_readable():
    assert redact_body(b"code=abcd&x=1", "application/x-www-form-urlencoded") == f"code={MASK}&x=1"


@pytest.mark.parametrize(
    "spelling",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
    ],
)
def test_it_masks_a_known_secret_in_every_spelling(spelling: str):
    text = f"before {spelling} after"
    assert redact_text(text, [SECRET]) == f"before {MASK} after"
    assert redact_url(f"https://x.test/cb?t={spelling}", [SECRET]) == f"https://x.test/cb?t={MASK}"


def test_it_masks_a_known_secret_in_a_plain_text_body():
    assert redact_body(f"echo: {SECRET}".encode(), "text/plain", [SECRET]) == f"echo: {MASK}"


def test_it_masks_a_known_secret_re_encoded_inside_a_form_body():
    body = f"Attributes={quote_plus(SECRET)}&FriendlyName=x"
    assert (
        redact_body(body, "application/x-www-form-urlencoded", [SECRET])
        == f"Attributes={MASK}&FriendlyName=x"
    )


def test_it_masks_basic_credentials_when_sid_and_secret_are_registered():
    pair = "AC00000000000000000000000000000000:twilio-auth-token"
    encoded = base64.b64encode(pair.encode()).decode()
    assert redact_text(f"Basic {encoded}", [pair]) == f"Basic {MASK}"


def test_it_does_not_mask_values_shorter_than_four_characters():
    assert redact_text("abc abcdef", ["abc"]) == "abc abcdef"


def test_it_masks_the_longer_secret_whole_when_one_contains_another():
    assert redact_text("key=abcd-efgh", ["abcd", "abcd-efgh"]) == f"key={MASK}"


def test_it_masks_a_known_secret_with_a_newline_inside_a_json_body():
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIN\n-----END PRIVATE KEY-----"
    body = json.dumps({"echo": pem}).encode()
    assert "MC4CAQAwBQYDK2VwBCIEIN" not in redact_body(body, "application/json", [pem])
