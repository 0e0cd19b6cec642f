"""Echo: a fifth provider that exists only for the tests (registered in tests/settings.py).

It proves the recipe in providers/README.md: one module that follows ``providers.base.Provider`` is
all the Django layer needs: pages, services, exports and commands ask its hooks and never its name.
Its API is a JSON ``POST {base_url}/v1/conversations`` with a bearer token, mocked with respx.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from providers.base import (
    Created,
    Credential,
    Fetched,
    Field,
    FieldError,
    ProviderError,
    Summary,
    base_url,
    bearer_curl_auth,
    require_fields,
)
from providers.http import Http, json_body

NAME = "echo"
LABEL = "Echo (tests)"
DEFAULT_BASE_URL = "https://api.echo.test"
URL_HOSTS = {"base_url": ("api.echo.test",)}
PARTICIPANTS_PATH = "members"
MAX_PARTICIPANTS = 3
NATURAL_KEY = "ref"
KEY_IS_UNIQUE = True
NOT_DUPLICATED = ("ref",)
PARTICIPANT_IDENTITY = ("handle",)
PREVIEW_HINT = "Echo repeats what it is sent."
UNTITLED = "Echo with {participant}"
curl_auth = bearer_curl_auth("ECHO_TOKEN", "the echo token.")

CREDENTIAL_FIELDS = [Field("token", "Token", secret=True, widget="password")]
BODY_FIELDS = [Field("title", "Title"), Field("ref", "Reference", required=False)]
PARTICIPANT_FIELDS = [Field("handle", "Handle")]


def parse_credential(data: Mapping[str, Any], extra_hosts: Iterable[str] = ()) -> Credential:
    return require_fields(data, CREDENTIAL_FIELDS, NAME, URL_HOSTS, extra_hosts)


def validate_participant(row: Mapping[str, Any], index: int = 0) -> list[FieldError]:
    handle = row.get("handle")
    if not isinstance(handle, str) or not handle.strip():
        return [FieldError(f"{PARTICIPANTS_PATH}.{index}.handle", "Handle is required.")]
    if not handle.startswith("@"):
        return [FieldError(f"{PARTICIPANTS_PATH}.{index}.handle", "A handle starts with @.")]
    return []


def validate(body: Mapping[str, Any], credential: Credential | None = None) -> list[FieldError]:
    errors = [] if str(body.get("title") or "").strip() else [FieldError("title", "Title is required.")]
    members = body.get(PARTICIPANTS_PATH) or []
    if len(members) > MAX_PARTICIPANTS:
        errors.append(FieldError(PARTICIPANTS_PATH, f"At most {MAX_PARTICIPANTS} members."))
    for index, member in enumerate(members):
        errors += validate_participant(member if isinstance(member, Mapping) else {}, index)
    return errors


def prepare(body: Mapping[str, Any], credential: Credential, key: str | None = None) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value not in (None, "", [])}


def summarize(body: Mapping[str, Any]) -> Summary:
    return Summary(str(body.get("title") or ""), [m["handle"] for m in body.get(PARTICIPANTS_PATH) or []])


def body_from_fields(fields: Mapping[str, str], participants: list[Mapping[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {name: value for name, value in fields.items() if value}
    body[PARTICIPANTS_PATH] = [{"handle": row.get("handle", "")} for row in participants]
    return body


def fields_from_body(body: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    fields = {f.name: str(body.get(f.name) or "") for f in BODY_FIELDS}
    return fields, [{"handle": str(m.get("handle", ""))} for m in body.get(PARTICIPANTS_PATH) or []]


def _headers(credential: Credential) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential.secrets['token']}"}


def build_request(body: Mapping[str, Any], credential: Credential) -> httpx.Request:
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/v1/conversations"
    return httpx.Request("POST", url, json=dict(body), headers=_headers(credential))


def raise_for_response(response: httpx.Response) -> None:
    if response.is_success:
        return
    data = json_body(response) or {}
    raise ProviderError(
        str(data.get("error") or "Echo refused the request."),
        status=response.status_code,
        permanent=response.status_code < 500,
        outcome_unknown=response.status_code >= 500,
    )


def _created(data: Mapping[str, Any], status: int, existed: bool = False) -> Created:
    return Created(
        external_id=str(data["id"]),
        status=status,
        body=dict(data),
        participants=list(data.get(PARTICIPANTS_PATH) or []),
        existed=existed,
    )


def create(body: Mapping[str, Any], credential: Credential, http: Http) -> Created:
    response = http.send(build_request(body, credential))
    raise_for_response(response)
    return _created(json_body(response) or {}, response.status_code)


def lookup(
    body: Mapping[str, Any], credential: Credential, http: Http, *, sent_at: datetime | None = None
) -> Created | None:
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/v1/conversations?ref={body[NATURAL_KEY]}"
    response = http.send(httpx.Request("GET", url, headers=_headers(credential)))
    raise_for_response(response)
    items = (json_body(response) or {}).get("items") or []
    return _created(items[0], response.status_code, existed=True) if items else None


def fetch(
    external_id: str, credential: Credential, http: Http, body: Mapping[str, Any] | None = None
) -> Fetched:
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/v1/conversations/{external_id}"
    response = http.send(httpx.Request("GET", url, headers=_headers(credential)))
    raise_for_response(response)
    data = json_body(response) or {}
    return Fetched(external_id, data, list(data.get(PARTICIPANTS_PATH) or []))


def check(credential: Credential, http: Http) -> str:
    url = f"{base_url(credential, DEFAULT_BASE_URL)}/v1/me"
    response = http.send(httpx.Request("GET", url, headers=_headers(credential)))
    raise_for_response(response)
    return f"Signed in as {(json_body(response) or {}).get('name', 'someone')}."
