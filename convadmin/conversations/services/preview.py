"""The exact create request, redacted, with a curl command: built by the provider module, nothing sent."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import providers
from convadmin.conversations.services.common import (
    CallFailed,
    ValidationFailed,
    public_credential,
    validate_body,
)
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.models import Credential
from providers.http import USER_AGENT
from providers.redact import MASK, redact_body, redact_headers, redact_text

CURL_SKIPPED_HEADERS = {"authorization", "host", "content-length", "user-agent"}


@dataclass
class Preview:
    method: str
    url: str
    headers: dict[str, str]
    body: str
    body_display: str
    curl: str
    curl_note: str


def _display_body(body: str, content_type: str) -> str:
    if "x-www-form-urlencoded" in content_type:
        return "\n".join(f"{key} = {value}" for key, value in parse_qsl(body, keep_blank_values=True))
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def preview_request(body: Mapping[str, Any], credential: Credential, key: str | None = None) -> Preview:
    """The exact create request, redacted, and a curl command with ``$ENV`` placeholders for secrets.

    Builds the request the provider module would send (no network call). Raises
    :class:`ValidationFailed` for an invalid body and :class:`CallFailed` when the secret is unreadable.
    """
    errors = validate_body(body, credential)
    if errors:
        raise ValidationFailed(errors)
    module = providers.get(credential.provider)
    prepared = module.prepare(body, public_credential(credential), key=key)
    try:
        provider_credential = credential.to_provider()
    except SecretUnreadable as exc:
        raise CallFailed(str(exc), code="secret_unreadable") from None
    request = module.build_request(prepared, provider_credential)
    request.headers.setdefault("User-Agent", USER_AGENT)
    secrets = provider_credential.secret_values()
    token = request.headers.get("authorization", "").partition(" ")[2]
    if token and not token.startswith("$"):  # a signed JWT or Basic pair; Graph's preview has a placeholder
        secrets.append(token)
    content_type = request.headers.get("content-type", "")
    raw_body = request.content.decode("utf-8", "replace")
    shown_body = redact_body(request.content, content_type, secrets)
    if MASK not in shown_body:
        shown_body = redact_text(raw_body, secrets)  # nothing masked: show the bytes as sent, not re-encoded
    header_items = [(name.decode(), value.decode()) for name, value in request.headers.raw]
    headers = redact_headers(header_items, secrets)
    auth_arg, note = module.curl_auth(credential.settings)
    lines = [f"curl -sS -X {request.method} {shlex.quote(str(request.url))}"]
    for name, value in header_items:
        if name.lower() == "authorization":
            lines.append(auth_arg)
        elif name.lower() not in CURL_SKIPPED_HEADERS:
            lines.append(f"-H {shlex.quote(f'{name}: {value}')}")
    if raw_body:
        lines.append(f"--data-binary {shlex.quote(raw_body)}")
    curl = redact_text(" \\\n  ".join(lines), secrets)
    return Preview(
        method=request.method,
        url=redact_text(str(request.url), secrets),
        headers=headers,
        body=shown_body,
        body_display=redact_text(_display_body(raw_body, content_type), secrets),
        curl=curl,
        curl_note=note,
    )
