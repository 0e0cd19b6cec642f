"""Shared helpers of the create-side tests (no tests here): credentials and provider replies."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from providers import highlevel, mixin
from tests.factories import TWILIO_SID, TWILIO_TOKEN, CredentialFactory

TWILIO = "https://conversations.twilio.com"
CH = "CH" + "0123456789abcdef" * 2
TWILIO_BASIC = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()

MIXIN = "https://api.mixin.one"
MIXIN_APP = "13c79909-fd32-401b-bfe5-ecf53816ddbf"
MIXIN_SEED = "8608c3972c7b61a0e9edb1c8bc051bd5d2c62818c9e338bceb7413306611c722"
MIXIN_USER = "d1e9ec7e-199d-4578-91a0-a69d9a7ba048"
MIXIN_OTHER = "965e5c6e-434c-3fa9-b780-c50f43cd955c"
MIXIN_CONTACT_ID = "c64b260e-cdea-35d5-b637-8cd8b63786dc"  # UniqueConversationId(app, user)

HIGHLEVEL = "https://services.leadconnectorhq.com"
HL_TOKEN = "pit-3f1c2a9e-8b7d-4c6e-9a1b-2d3e4f5a6b7c"
HL_LOCATION = "tDtDnQdgm2LXpyiqYvZ6"
HL_CONTACT = "rTDJGD7SjqDamyzrk5UW"
HL_CONVERSATION = "Ab12Cd34Ef56Gh78Ij90"

ALL_SECRETS = (TWILIO_TOKEN, TWILIO_BASIC, MIXIN_SEED, HL_TOKEN)


def twilio_credential(**kwargs: Any) -> Credential:
    return CredentialFactory(**kwargs)


def mixin_credential(**kwargs: Any) -> Credential:
    parsed = mixin.parse_credential(
        {
            "app_id": MIXIN_APP,
            "session_id": "26f481d3-9fd5-47ae-acf3-dff8c94f9e87",
            "session_private_key": MIXIN_SEED,
        }
    )
    kwargs.setdefault("label", "Mixin bot")
    return CredentialFactory(provider="mixin", settings=parsed.settings, secrets=parsed.secrets, **kwargs)


def highlevel_credential(**kwargs: Any) -> Credential:
    parsed = highlevel.parse_credential({"token": HL_TOKEN, "location_id": HL_LOCATION})
    kwargs.setdefault("label", "HighLevel shop")
    return CredentialFactory(provider="highlevel", settings=parsed.settings, secrets=parsed.secrets, **kwargs)


def twilio_conversation(**extra: Any) -> dict[str, Any]:
    return {
        "sid": CH,
        "account_sid": TWILIO_SID,
        "friendly_name": "Order 123",
        "unique_name": "order-123",
        "state": "active",
        "url": f"{TWILIO}/v1/Conversations/{CH}",
        **extra,
    }


def twilio_members(*identities: str) -> dict[str, Any]:
    items = [
        {"sid": f"MB{n:032d}", "conversation_sid": CH, "identity": identity, "messaging_binding": None}
        for n, identity in enumerate(identities, start=1)
    ]
    return {"meta": {"key": "participants", "next_page_url": None}, "participants": items}


def twilio_error(code: int, message: str, status: int) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def mixin_conversation(conversation_id: str = MIXIN_CONTACT_ID, *users: tuple[str, str]) -> dict[str, Any]:
    members = [{"type": "participant", "user_id": MIXIN_APP, "role": "OWNER"}]
    members += [{"type": "participant", "user_id": u, "role": r} for u, r in users or [(MIXIN_USER, "")]]
    return {
        "data": {
            "type": "conversation",
            "conversation_id": conversation_id,
            "creator_id": MIXIN_APP,
            "category": "CONTACT",
            "participants": members,
        }
    }


def stored_text() -> str:
    """Everything stored about exchanges, as one string (to assert no secret is in it)."""
    return " ".join(
        f"{e.url} {e.request_headers} {e.request_body} {e.response_headers} {e.response_body} {e.error}"
        for e in Exchange.objects.all()
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text


GRAPH = "https://graph.microsoft.com"
GRAPH_LOGIN = "https://login.microsoftonline.com"
GRAPH_TENANT = "contoso.onmicrosoft.com"
GRAPH_GROUP = "29981b6a-0e57-42dc-94c9-cd24f5306196"
GRAPH_SECRETS = (
    "graph-client-secret-value",
    "graph-refresh-token-value",
    "graph-access-token-1",
    "graph-refresh-token-2",
)


def graph_credential(**kwargs: Any) -> Credential:
    kwargs.setdefault("label", "Graph team")
    return CredentialFactory(
        provider="msgraph",
        settings={
            "tenant_id": GRAPH_TENANT,
            "client_id": "11111111-2222-3333-4444-555555555555",
            "group_id": GRAPH_GROUP,
            "cloud": "global",
        },
        secrets={"client_secret": GRAPH_SECRETS[0], "refresh_token": GRAPH_SECRETS[1]},
        **kwargs,
    )


def graph_body(*addresses: str) -> dict[str, Any]:
    post: dict[str, Any] = {"body": {"contentType": "text", "content": "Hello"}}
    if addresses:
        post["newParticipants"] = [{"emailAddress": {"address": a}} for a in addresses]
    return {"topic": "Launch", "threads": [{"posts": [post]}]}
