"""The one place that masks secrets: before anything is logged, stored, rendered or exported.

Three layers (``providers.http`` applies them to every exchange it records):
- headers that carry credentials (``Authorization``, cookies, API-key headers), case-insensitively;
- secret fields in JSON bodies and in form-encoded bodies (token requests);
- every known secret value wherever it still appears (URL, body, header), raw, URL-encoded and base64.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

MASK = "[redacted]"

SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
SECRET_HEADER_WORDS = ("token", "secret", "password", "api-key", "apikey")

#: Keys masked in JSON bodies (any depth). ``code`` is not here: Mixin and Twilio errors carry a
#: numeric ``code`` that must stay readable; it is masked in form bodies (OAuth code redemption).
SECRET_JSON_KEYS = {
    "access_token",
    "api_key_secret",
    "auth_token",
    "client_assertion",
    "client_secret",
    "code_verifier",
    "id_token",
    "password",
    "pin",
    "pin_token",
    "private_key",
    "refresh_token",
    "session_private_key",
    "spend_private_key",
    "token",
}
SECRET_FORM_KEYS = SECRET_JSON_KEYS | {"code"}

MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary text; no real secret is that short


def _b64_forms(raw: bytes) -> set[str]:
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    return {std, std.rstrip("="), url, url.rstrip("=")}


def secret_forms(secrets: Iterable[str]) -> list[str]:
    """Every spelling of each secret that may end up on the wire: raw, URL-encoded, base64."""
    forms: set[str] = set()
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            continue
        forms |= {secret, quote(secret, safe=""), quote_plus(secret), *_b64_forms(secret.encode())}
        # As it appears inside a JSON string (a PEM key's newlines become \n).
        forms |= {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    # Longest first, so a value that contains another is masked whole.
    return sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    for form in secret_forms(secrets):
        text = text.replace(form, MASK)
    return text


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or any(word in lowered for word in SECRET_HEADER_WORDS)


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], secrets: Iterable[str] = ()
) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    secrets = list(secrets)
    out: dict[str, str] = {}
    for name, value in items:
        if _is_secret_header(name):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            out[name] = f"{scheme} {MASK}".strip() if scheme in ("Bearer", "Basic") else MASK
        else:
            out[name] = redact_text(value, secrets)
    return out


def redact_data(value: Any, keys: set[str] = SECRET_JSON_KEYS) -> Any:
    """Mask secret keys in parsed JSON (dicts and lists, any depth)."""
    if isinstance(value, dict):
        return {
            k: (MASK if k.lower() in keys and v not in (None, "") else redact_data(v, keys))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_data(v, keys) for v in value]
    return value


def redact_body(body: bytes | str, content_type: str = "", secrets: Iterable[str] = ()) -> str:
    """A body as text, with secret fields and known secret values masked."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not text:
        return ""
    ctype = content_type.lower()
    if "x-www-form-urlencoded" in ctype:
        pairs = parse_qsl(text, keep_blank_values=True)
        text = urlencode([(k, MASK if k.lower() in SECRET_FORM_KEYS else v) for k, v in pairs], safe="[]")
    elif "json" in ctype or text.lstrip()[:1] in ("{", "["):
        # A reply nested beyond Python's recursion limit stays raw text (still value-masked below).
        with contextlib.suppress(ValueError, RecursionError):
            text = json.dumps(redact_data(json.loads(text)), ensure_ascii=False)
    return redact_text(text, secrets)


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    return redact_text(url, secrets)
