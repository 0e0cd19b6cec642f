"""Microsoft Graph group conversations and the Microsoft identity platform (Microsoft's Graph v1.0
and identity platform references).

One server answers both hosts: ``/{tenant}/oauth2/v2.0/{authorize,token}`` (login) and ``/v1.0/…``
(Graph). Grants: ``client_credentials`` (an app-only token: reads work, creating a conversation gets
403 ``ErrorAccessDenied``), ``authorization_code`` with PKCE (codes come from ``authorize``, which
signs ``qa@sandbox.test`` in without asking) and ``refresh_token`` (each refresh token works once; the
reply carries the next one, the old one then gets ``invalid_grant`` AADSTS70008).

Sandbox choices where the real behaviour is unverified: a malformed thread/post gets 400
``BadRequest``; the ``duplicate`` trigger gets 409 ``nameAlreadyExists`` (Graph itself has no
duplicate check on topics).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from providers.sandbox.server import Reply, Request, broken_json_reply, find_trigger, iso, json_reply, now

if TYPE_CHECKING:
    from datetime import datetime

    from providers.sandbox.server import Sandbox

GRAPH = "https://graph.microsoft.com"
ACCESS_SECONDS = 3599
DELEGATED_DEFAULT = "Group.ReadWrite.All User.Read"
APP_ROLES = ["Group.Read.All", "Group-Conversation.Read.All"]
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TENANT_ALIASES = ("sandbox.test", "organizations", "common")


def _scopes(requested: str) -> str:
    """Graph permissions named by a ``scope`` parameter, without the resource prefix."""
    names: list[str] = []
    for item in requested.split():
        name = item.removeprefix(f"{GRAPH}/")
        if name in ("offline_access", "openid", "profile", "email"):
            continue
        for granted in DELEGATED_DEFAULT.split() if name == ".default" else [name]:
            if granted not in names:
                names.append(granted)
    return " ".join(names) or "User.Read"


def _outlook_id(mailbox: str, key: bytes, thread: bool = False) -> str:
    """An opaque id shaped like Graph's (``AAQkAG…=``): base64url of mailbox + 16-byte key."""
    raw = b"\x00\x04$\x00" + mailbox.encode()
    raw += (b"\x03$\x00\x10\x00" + key + b"\x10\x00" + key) if thread else (b"\x00\x10\x00" + key)
    return base64.urlsafe_b64encode(raw).decode()


class GraphApi:
    name = "msgraph"

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.tenant_id = sandbox.uuid("msgraph:tenant_id")
        self.client_id = sandbox.uuid("msgraph:client_id")
        self.client_secret = (
            sandbox.alnum("msgraph:secret-head", 3) + "8Q~" + sandbox.alnum("msgraph:secret", 34)
        )
        self.group_id = sandbox.uuid("msgraph:group_id")
        self.security_group_id = sandbox.uuid("msgraph:security_group_id")  # not Microsoft 365: no mailbox
        self.user = {
            "id": sandbox.uuid("msgraph:user_id"),
            "displayName": "QA User",
            "userPrincipalName": "qa@sandbox.test",
            "mail": "qa@sandbox.test",
            "givenName": "QA",
            "surname": "User",
            "jobTitle": "Quality assurance",
        }
        self.groups = {
            self.group_id: self._group(self.group_id, "Sandbox Team", ["Unified"], True),
            self.security_group_id: self._group(self.security_group_id, "Sandbox Security", [], False),
        }
        self.conversations: dict[str, list[dict[str, Any]]] = {self.group_id: []}
        self.used: set[str] = set()  # redeemed codes and refresh tokens
        self.latest_refresh = sandbox.sign(self._refresh_claims(DELEGATED_DEFAULT, "seed"))

    @property
    def base(self) -> str:
        return self.sandbox.url(self.name)

    def credential(self) -> dict[str, str]:
        with self.lock:
            refresh = self.latest_refresh
        return {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "group_id": self.group_id,
            "refresh_token": refresh,
            "base_url": self.base,
            "login_url": self.base,
        }

    def internal_error(self) -> Reply:
        return self._error(500, "generalException", "An unspecified error has occurred.")

    def handle(self, request: Request) -> Reply:
        seg = request.segments
        if len(seg) == 4 and seg[1:3] == ("oauth2", "v2.0"):
            if seg[0] not in (self.tenant_id, *TENANT_ALIASES):
                return self._token_error(
                    400,
                    "invalid_request",
                    90002,
                    f"Tenant '{seg[0]}' not found. Check to make sure you have the correct tenant ID and are "
                    "signing into the correct cloud.",
                )
            if seg[3] == "token" and request.method == "POST":
                return self._token(request)
            if seg[3] == "authorize" and request.method == "GET":
                return self._authorize(request)
        if seg[:1] != ("v1.0",):
            return self._error(400, "BadRequest", f"Invalid version: {seg[0] if seg else ''}")
        reply = self._graph(request)
        request_id = str(uuid.uuid4())
        reply.headers.setdefault("request-id", request_id)
        reply.headers.setdefault("client-request-id", request.header("client-request-id") or request_id)
        return reply

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
        request_id = str(uuid.uuid4())
        inner = {"date": iso().rstrip("Z"), "request-id": request_id, "client-request-id": request_id}
        return json_reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers)

    # -- identity platform -------------------------------------------------------------------
    def _token_error(self, status: int, error: str, code: int, text: str) -> Reply:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = iso().replace("T", " ")
        description = (
            f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}"
        )
        body = {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{self.base}/error?code={code}",
        }
        return json_reply(status, body)

    def _refresh_claims(self, scopes: str, chain: str) -> dict[str, Any]:
        return {
            "typ": "graph-refresh",
            "cid": self.client_id,
            "tid": self.tenant_id,
            "oid": self.user["id"],
            "scp": scopes,
            "chain": chain,
        }

    def _access_token(self, delegated_scopes: str | None) -> str:
        claims: dict[str, Any] = {
            "typ": "graph-access",
            "aud": GRAPH,
            "tid": self.tenant_id,
            "appid": self.client_id,
            "exp": int(time.time()) + ACCESS_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        if delegated_scopes is None:
            claims |= {"idtyp": "app", "roles": APP_ROLES}
        else:
            claims |= {
                "idtyp": "user",
                "scp": delegated_scopes,
                "oid": self.user["id"],
                "upn": self.user["mail"],
            }
        return self.sandbox.sign(claims)

    def _token(self, request: Request) -> Reply:
        form = {k: v[0] for k, v in request.form().items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, encoded = request.header("Authorization").partition(" ")
        if scheme.lower() == "basic":  # the secret may come as HTTP Basic too
            with contextlib.suppress(ValueError):
                client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        if not client_id:
            return self._token_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if client_id != self.client_id:
            return self._token_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory 'Sandbox'.",
            )
        grant = form.get("grant_type", "")
        if grant not in ("client_credentials", "refresh_token", "authorization_code"):
            return self._token_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if not secret:
            return self._token_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if not hmac.compare_digest(secret.encode(), self.client_secret.encode()):
            return self._token_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
        if grant == "client_credentials":
            scope = form.get("scope", "")
            if not scope.endswith("/.default"):
                return self._token_error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                    "scope value with /.default suffixed to the resource identifier (application ID URI).",
                )
            return json_reply(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": ACCESS_SECONDS,
                    "ext_expires_in": ACCESS_SECONDS,
                    "access_token": self._access_token(None),
                },
            )
        if grant == "refresh_token":
            return self._refresh(form)
        return self._redeem(form)

    def _refresh(self, form: dict[str, str]) -> Reply:
        old = form.get("refresh_token", "")
        if not old:
            return self._token_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'refresh_token'.",
            )
        claims = self.sandbox.unsign(old, "graph-refresh")
        if not claims or claims.get("cid") != self.client_id:
            return self._token_error(
                400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        with self.lock:
            if old in self.used:
                return self._token_error(
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                    "interactive authorization request for this user and resource.",
                )
            self.used.add(old)
            new = self.sandbox.sign(claims | {"jti": str(uuid.uuid4())})
            if claims.get("chain") == "seed":
                self.latest_refresh = new
        return self._delegated_reply(claims["scp"], new, "openid" in form.get("scope", "").split())

    def _redeem(self, form: dict[str, str]) -> Reply:
        code = form.get("code", "")
        claims = self.sandbox.unsign(code, "graph-code")
        if not claims or claims.get("cid") != self.client_id:
            return self._token_error(
                400, "invalid_grant", 70000, "The provided value for the 'code' parameter is not valid."
            )
        if form.get("redirect_uri") != claims["redirect_uri"]:
            return self._token_error(
                400,
                "invalid_grant",
                70000,
                "The provided value for the 'redirect_uri' is not valid. The value must exactly match the "
                "redirect URI used to obtain the authorization code.",
            )
        if claims.get("cc"):
            verifier = form.get("code_verifier", "")
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if (digest if claims.get("ccm") == "S256" else verifier) != claims["cc"]:
                return self._token_error(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                )
        with self.lock:
            if code in self.used:
                return self._token_error(
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
                    "existing refresh token.",
                )
            self.used.add(code)
        requested = claims["scope"].split()
        refresh = None
        if "offline_access" in requested:
            refresh = self.sandbox.sign(self._refresh_claims(_scopes(claims["scope"]), str(uuid.uuid4())))
        return self._delegated_reply(_scopes(claims["scope"]), refresh, "openid" in requested)

    def _delegated_reply(self, scopes: str, refresh: str | None, openid: bool) -> Reply:
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(f"{GRAPH}/{s}" for s in scopes.split()),
            "expires_in": ACCESS_SECONDS,
            "ext_expires_in": ACCESS_SECONDS,
            "access_token": self._access_token(scopes),
        }
        if refresh:
            body["refresh_token"] = refresh
        if openid:
            body["id_token"] = self.sandbox.sign(
                {
                    "typ": "graph-id",
                    "aud": self.client_id,
                    "tid": self.tenant_id,
                    "oid": self.user["id"],
                    "name": self.user["displayName"],
                    "preferred_username": self.user["userPrincipalName"],
                    "exp": int(time.time()) + ACCESS_SECONDS,
                }
            )
        return json_reply(200, body)

    def _authorize(self, request: Request) -> Reply:
        """Sign ``qa@sandbox.test`` in without a page and send the code back to ``redirect_uri``."""
        client_id, redirect_uri = request.arg("client_id") or "", request.arg("redirect_uri") or ""
        problem = None
        if client_id != self.client_id:
            problem = (
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory."
            )
        elif request.arg("response_type") != "code":
            problem = "AADSTS900144: The request body must contain the following parameter: 'response_type'."
        elif not re.match(r"^https?://[^\s]+$", redirect_uri):
            problem = "AADSTS900144: The request body must contain the following parameter: 'redirect_uri'."
        if problem:
            page = f"<html><body><h1>Sign in</h1><p>{html.escape(problem)}</p></body></html>"
            return Reply(400, page.encode(), content_type="text/html; charset=utf-8")
        code = self.sandbox.sign(
            {
                "typ": "graph-code",
                "cid": client_id,
                "redirect_uri": redirect_uri,
                "scope": request.arg("scope") or "",
                "cc": request.arg("code_challenge") or "",
                "ccm": request.arg("code_challenge_method") or "plain",
                "exp": int(time.time()) + 600,
                "jti": str(uuid.uuid4()),
            }
        )
        params = {"code": code, "session_state": str(uuid.uuid4())}
        if (state := request.arg("state")) is not None:
            params["state"] = state
        if request.arg("response_mode") == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                for k, v in params.items()
            )
            page = (
                "<html><head><title>Working...</title></head><body>"
                f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">{fields}'
                "<noscript><p>Script is disabled. Click Submit to continue.</p>"
                '<input type="submit" value="Submit"/></noscript></form>'
                "<script>document.forms[0].submit();</script></body></html>"
            )
            return Reply(200, page.encode(), content_type="text/html; charset=utf-8")
        separator = "&" if "?" in redirect_uri else "?"
        return Reply(302, b"", {"Location": redirect_uri + separator + urlencode(params)}, content_type="")

    # -- Graph -------------------------------------------------------------------------------
    def _caller(self, request: Request) -> dict[str, Any] | Reply:
        token = request.bearer()
        if not token:
            return self._error(401, "InvalidAuthenticationToken", "Access token is empty.")
        claims = self.sandbox.unsign(token, "graph-access")
        if claims is None and self.sandbox.unsign(token, "graph-access", verify_exp=False):
            return self._error(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        if claims is None or claims.get("aud") != GRAPH or claims.get("tid") != self.tenant_id:
            return self._error(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        return claims

    def _graph(self, request: Request) -> Reply:
        caller = self._caller(request)
        if isinstance(caller, Reply):
            return caller
        method, seg = request.method, request.segments[1:]
        if method == "GET" and seg == ("me",):
            if caller["idtyp"] != "user":
                return self._error(
                    400, "BadRequest", "/me request is only valid with delegated authentication flow."
                )
            return json_reply(200, self._select(request, "users/$entity", self.user))
        if len(seg) < 2 or seg[0] != "groups":
            return self._error(
                400, "BadRequest", f"Resource not found for the segment '{'/'.join(seg[:1])}'."
            )
        group = self._find_group(seg[1])
        if isinstance(group, Reply):
            return group
        gid, rest = group["id"], seg[2:]
        if method == "GET" and not rest:
            return json_reply(200, self._select(request, "groups/$entity", group))
        if gid not in self.conversations:
            return self._error(
                404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported for this mailbox."
            )
        context = f"{self.base}/v1.0/$metadata#groups('{gid}')"
        if rest == ("conversations",) and method == "POST":
            return self._create(request, caller, gid, context)
        if rest == ("conversations",) and method == "GET":
            with self.lock:
                items = [self._public(c) for c in reversed(self.conversations[gid])]
            return self._page(request, f"{context}/conversations", items)
        with self.lock:
            conversation = next(
                (c for c in self.conversations[gid] if len(rest) >= 2 and c["id"] == rest[1]), None
            )
            thread = next(
                (
                    t
                    for c in self.conversations[gid]
                    for t in c["threads"]
                    if len(rest) >= 2 and t["id"] == rest[1]
                ),
                None,
            )
        if method == "GET" and rest[:1] == ("conversations",) and len(rest) in (2, 3) and conversation:
            if len(rest) == 2:
                return json_reply(
                    200, {"@odata.context": f"{context}/conversations/$entity"} | self._public(conversation)
                )
            if rest[2] == "threads":
                threads = [self._public(t) for t in conversation["threads"]]
                return self._page(
                    request, f"{context}/conversations('{conversation['id']}')/threads", threads
                )
        if method == "GET" and rest[:1] == ("threads",) and len(rest) == 3 and rest[2] == "posts" and thread:
            posts = [self._expanded(request, post) for post in thread["posts"]]
            return self._page(request, f"{context}/threads('{thread['id']}')/posts", posts)
        if rest[:1] in (("conversations",), ("threads",)) and len(rest) >= 2:
            return self._error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return self._error(
            400, "BadRequest", f"Resource not found for the segment '{rest[0] if rest else ''}'."
        )

    def _find_group(self, gid: str) -> dict[str, Any] | Reply:
        if not GUID.match(gid):
            return self._error(400, "Request_BadRequest", f"Invalid object identifier '{gid}'.")
        group = self.groups.get(gid.lower())
        if group is None:
            return self._error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{gid}' does not exist or one of its queried reference-property objects are not present.",
            )
        return group

    def _group(self, gid: str, name: str, types: list[str], mail: bool) -> dict[str, Any]:
        nickname = name.lower().replace(" ", "-")
        return {
            "id": gid,
            "displayName": name,
            "description": f"{name} (convadmin sandbox)",
            "groupTypes": types,
            "mailEnabled": mail,
            "mail": f"{nickname}@sandbox.test" if mail else None,
            "mailNickname": nickname,
            "securityEnabled": not mail,
            "visibility": "Private",
            "createdDateTime": "2024-01-01T00:00:00Z",
        }

    @staticmethod
    def _fields(request: Request) -> list[str]:
        return [f.strip() for f in (request.arg("$select") or "").split(",") if f.strip()]

    def _select(self, request: Request, entity: str, item: dict[str, Any]) -> dict[str, Any]:
        if fields := self._fields(request):
            item = {k: v for k, v in item.items() if k in fields}
            entity = entity.replace("/$entity", f"({','.join(fields)})/$entity")
        return {"@odata.context": f"{self.base}/v1.0/$metadata#{entity}"} | item

    def _page(self, request: Request, context: str, items: list[dict[str, Any]]) -> Reply:
        """One page of a collection: ``$top`` (default 10), ``$skip``, ``$select`` (``id`` always kept)."""
        try:
            top = min(max(int(request.arg("$top") or 10), 1), 999)
            skip = max(int(request.arg("$skip") or 0), 0)
        except ValueError:
            return self._error(400, "BadRequest", "Invalid $top or $skip value.")
        fields = self._fields(request)
        kept = {"id", "singleValueExtendedProperties"}  # an expanded property survives $select
        page = [{k: v for k, v in i.items() if k in fields or k in kept} if fields else i for i in items]
        body: dict[str, Any] = {"@odata.context": context, "value": page[skip : skip + top]}
        if skip + top < len(items):
            params = {"$top": top, "$skip": skip + top} | ({"$select": ",".join(fields)} if fields else {})
            body["@odata.nextLink"] = f"{self.base}{request.path}?{urlencode(params)}"
        return json_reply(200, body)

    @staticmethod
    def _expanded(request: Request, post: dict[str, Any]) -> dict[str, Any]:
        """A post as listed: its extended properties hidden unless ``$expand`` names one by id."""
        public = {k: v for k, v in post.items() if k != "_properties"}
        wanted = re.fullmatch(
            r"singleValueExtendedProperties\(\$filter=id eq '([^']*)'\)", request.arg("$expand") or ""
        )
        if wanted:
            matching = [p for p in post.get("_properties", []) if p.get("id") == wanted.group(1)]
            if matching:
                public["singleValueExtendedProperties"] = matching
        return public

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("threads", "posts")}

    def _create(self, request: Request, caller: dict[str, Any], gid: str, context: str) -> Reply:
        if caller["idtyp"] != "user" or "Group.ReadWrite.All" not in caller.get("scp", "").split():
            return self._error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        try:
            body = json.loads(request.body)
        except ValueError:
            return self._error(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of "
                "valid JSON format.",
            )
        if problem := self._invalid(body):
            return self._error(400, "BadRequest", problem)
        texts: list[Any] = [body.get("topic")]
        for thread in body["threads"]:
            for post in thread["posts"]:
                for p in post.get("newParticipants") or []:
                    texts += [p["emailAddress"].get("address"), p["emailAddress"].get("name")]
        trigger = find_trigger(*texts)
        if trigger == "fail-500":
            return self.internal_error()
        if trigger == "rate-limit":
            inner = {"code": "429", "message": "Please retry after", "status": "429"}
            reply = json_reply(
                429,
                {
                    "error": {
                        "code": "TooManyRequests",
                        "message": "Please retry again later.",
                        "innerError": inner,
                    }
                },
            )
            reply.headers["Retry-After"] = "2"
            return reply
        with self.lock:
            if trigger == "duplicate":
                if not any(c["topic"] == body.get("topic") for c in self.conversations[gid]):
                    self._store(gid, body, now() - timedelta(hours=1))  # the one that "already exists"
                return self._error(409, "nameAlreadyExists", "A conversation with this topic already exists.")
            conversation = self._store(gid, body, now())
        reply_body = {
            "@odata.context": f"{context}/conversations/$entity",
            "id": conversation["id"],
            "threads": [{"id": t["id"]} for t in conversation["threads"]],
        }
        if trigger == "slow":
            self.sandbox.hold()
        if trigger == "invalid-json":
            return broken_json_reply(201, reply_body)
        reply = json_reply(201, reply_body)
        reply.drip = trigger == "drip"
        return reply

    @staticmethod
    def _invalid(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "The request body must be a JSON object."
        if not isinstance(body.get("topic", ""), str):
            return "Invalid value for property 'topic'."
        threads = body.get("threads")
        if not isinstance(threads, list) or not threads:
            return "A new conversation needs at least one thread with one post."
        for thread in threads:
            posts = thread.get("posts") if isinstance(thread, dict) else None
            if not isinstance(posts, list) or not posts:
                return "A new conversation needs at least one thread with one post."
            for post in posts:
                content = post.get("body") if isinstance(post, dict) else None
                if not isinstance(content, dict) or str(content.get("contentType", "")).lower() not in (
                    "text",
                    "html",
                ):
                    return "Invalid value for property 'body.contentType': expected 'text' or 'html'."
                for p in post.get("newParticipants") or []:
                    address = p.get("emailAddress") if isinstance(p, dict) else None
                    if not isinstance(address, dict) or "@" not in str(address.get("address", "")):
                        return "Invalid value for property 'newParticipants.emailAddress.address'."
                properties = post.get("singleValueExtendedProperties", [])
                if not isinstance(properties, list) or not all(
                    isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("value"), str)
                    for p in properties
                ):
                    return "Invalid value for property 'singleValueExtendedProperties'."
        return None

    def _store(self, gid: str, body: dict[str, Any], created: datetime) -> dict[str, Any]:
        mailbox = str(uuid.UUID(bytes=self.sandbox.derive(f"msgraph:mailbox:{gid}", 16), version=4))
        stamp = iso(created)
        sender = {"emailAddress": {"name": self.user["displayName"], "address": self.user["mail"]}}
        group = self.groups[gid]
        key = secrets.token_bytes(16)
        conversation_id = _outlook_id(mailbox, key)
        threads = []
        for thread in body["threads"]:
            thread_key = key if not threads else secrets.token_bytes(16)
            thread_id = _outlook_id(mailbox, thread_key, thread=True)
            posts = []
            for post in thread["posts"]:
                content = str(post["body"].get("content", ""))
                posts.append(
                    {
                        "id": base64.urlsafe_b64encode(b"\x00\x00\x00" + secrets.token_bytes(45)).decode(),
                        "createdDateTime": stamp,
                        "lastModifiedDateTime": stamp,
                        "changeKey": base64.b64encode(secrets.token_bytes(15)).decode(),
                        "categories": [],
                        "receivedDateTime": stamp,
                        "hasAttachments": False,
                        "body": {"contentType": str(post["body"]["contentType"]).lower(), "content": content},
                        "from": sender,
                        "sender": sender,
                        "conversationThreadId": thread_id,
                        "conversationId": conversation_id,
                        "newParticipants": post.get("newParticipants") or [],
                        "_properties": [
                            {"id": str(p.get("id")), "value": str(p.get("value"))}
                            for p in post.get("singleValueExtendedProperties") or []
                            if isinstance(p, dict)
                        ],
                    }
                )
            preview = re.sub(r"<[^>]+>", "", posts[0]["body"]["content"])[:255] if posts else ""
            threads.append(
                {
                    "id": thread_id,
                    "topic": body.get("topic", ""),
                    "toRecipients": [
                        {"emailAddress": {"name": group["displayName"], "address": group["mail"]}}
                    ],
                    "ccRecipients": [],
                    "hasAttachments": False,
                    "lastDeliveredDateTime": stamp,
                    "uniqueSenders": [self.user["displayName"]],
                    "preview": preview,
                    "isLocked": False,
                    "posts": posts,
                }
            )
        conversation = {
            "id": conversation_id,
            "topic": body.get("topic", ""),
            "hasAttachments": False,
            "lastDeliveredDateTime": stamp,
            "uniqueSenders": [self.user["displayName"]],
            "preview": threads[0]["preview"],
            "threads": threads,
        }
        self.conversations[gid].append(conversation)
        return conversation
