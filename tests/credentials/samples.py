"""Realistic credential data for each provider and respx routes faking each provider's check."""

from __future__ import annotations

import httpx
import respx

# Mixin: the official Node SDK's public test keystore (its published test vectors).
MIXIN_APP_ID = "13c79909-fd32-401b-bfe5-ecf53816ddbf"
MIXIN = {
    "app_id": MIXIN_APP_ID,
    "session_id": "26f481d3-9fd5-47ae-acf3-dff8c94f9e87",
    "server_public_key": "63e2f06c98ca6b74fe369df18fb673c19d95821e080891666c7f46266a06e2eb",
    "session_private_key": "8608c3972c7b61a0e9edb1c8bc051bd5d2c62818c9e338bceb7413306611c722",
}
TWILIO_ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO = {"account_sid": TWILIO_ACCOUNT, "auth_token": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}
HIGHLEVEL_LOCATION = "tDtDnQdgm2LXpyiqYvZ6"
HIGHLEVEL = {"token": "pit-3f1c2a9e-8b7d-4c6e-9a1b-2d3e4f5a6b7c", "location_id": HIGHLEVEL_LOCATION}
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "535fb089-9ff3-47b6-9bfb-4f1264799865"
GROUP = "29981b6a-0e57-42dc-94c9-cd24f5306196"
MSGRAPH = {
    "tenant_id": TENANT,
    "client_id": CLIENT,
    "client_secret": "Xy8Q~abcDEF123ghiJKL456mnoPQR789stu.WX0y",
    "group_id": GROUP,
}

VALID = {"mixin": MIXIN, "twilio": TWILIO, "highlevel": HIGHLEVEL, "msgraph": MSGRAPH}
#: The main secret of each: it must never appear in a page, an audit row or an exchange.
SECRET = {
    "mixin": MIXIN["session_private_key"],
    "twilio": TWILIO["auth_token"],
    "highlevel": HIGHLEVEL["token"],
    "msgraph": MSGRAPH["client_secret"],
}

LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com"
TOKEN_URL = f"{LOGIN}/{TENANT}/oauth2/v2.0/token"
APP_ACCESS = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.app-only.sig"


def mock_check(router: respx.MockRouter, provider: str, *, ok: bool = True) -> respx.Route:
    """Route the provider's check call to a realistic answer (accepted, or refused with its error body)."""
    if provider == "mixin":
        route = router.get("https://api.mixin.one/me")
        return route.mock(
            httpx.Response(200, json={"data": {"user_id": MIXIN_APP_ID, "full_name": "Support Bot"}})
            if ok
            else httpx.Response(
                401,
                json={
                    "error": {"status": 202, "code": 401, "description": "Unauthorized, maybe invalid token."}
                },
            )
        )
    if provider == "twilio":
        route = router.get("https://conversations.twilio.com/v1/Configuration")
        return route.mock(
            httpx.Response(
                200, json={"account_sid": TWILIO_ACCOUNT, "default_chat_service_sid": "IS" + "1" * 32}
            )
            if ok
            else httpx.Response(
                401,
                json={
                    "code": 20003,
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
            )
        )
    if provider == "highlevel":
        route = router.get("https://services.leadconnectorhq.com/conversations/search")
        return route.mock(
            httpx.Response(200, json={"conversations": [], "total": 0})
            if ok
            else httpx.Response(401, json={"statusCode": 401, "message": "Invalid JWT"})
        )
    route = router.post(TOKEN_URL)
    if not ok:
        return route.mock(
            httpx.Response(
                401,
                json={
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        )
    route.mock(
        httpx.Response(200, json={"access_token": APP_ACCESS, "token_type": "Bearer", "expires_in": 3599})
    )
    router.get(f"{GRAPH}/v1.0/groups/{GROUP}").mock(
        httpx.Response(
            200, json={"id": GROUP, "displayName": "Support", "mailEnabled": True, "groupTypes": ["Unified"]}
        )
    )
    return route
