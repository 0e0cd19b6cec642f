"""Documented fields the form does not show, accepted by the providers for "Edit as JSON" (issue 13):
Twilio's X-Twilio-Webhook-Enabled header; Graph's thread toRecipients / ccRecipients and post categories."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from providers import msgraph, twilio
from tests.providers.test_msgraph import BODY as GRAPH_BODY
from tests.providers.test_msgraph import credential as graph_credential
from tests.providers.test_twilio import cred as twilio_credential

HEADER = "X-Twilio-Webhook-Enabled"


def twilio_paths(body: dict[str, Any]) -> dict[str, str]:
    return {e.path: e.message for e in twilio.validate(body, twilio_credential())}


def graph_paths(body: dict[str, Any]) -> dict[str, str]:
    return {e.path: e.message for e in msgraph.validate(body)}


# --- Twilio: X-Twilio-Webhook-Enabled is a header -----------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"), [("true", "true"), ("FALSE", "false"), (True, "true"), (False, "false")]
)
def test_twilio_sends_webhook_enabled_as_a_header_not_a_form_field(given, sent):
    body = {"FriendlyName": "Order", HEADER: given}
    assert twilio_paths(body) == {}
    request = twilio.build_request(twilio.prepare(body, twilio_credential()), twilio_credential())
    assert request.headers[HEADER] == sent
    assert HEADER not in parse_qs(request.content.decode())
    assert parse_qs(request.content.decode())["FriendlyName"] == ["Order"]


def test_twilio_without_the_key_sends_no_webhook_header():
    request = twilio.build_request(
        twilio.prepare({"FriendlyName": "x"}, twilio_credential()), twilio_credential()
    )
    assert HEADER not in request.headers


@pytest.mark.parametrize("value", ["yes", 1, "on", ["true"]])
def test_twilio_refuses_a_webhook_value_other_than_true_or_false(value):
    assert twilio_paths({HEADER: value}) == {
        HEADER: "X-Twilio-Webhook-Enabled must be true or false (whether this call fires your webhooks)."
    }


def test_twilio_documented_fields_beyond_the_form_are_accepted():
    body = {
        "DateCreated": "2026-01-02T03:04:05Z",
        "DateUpdated": "2026-01-02T03:04:05+01:00",
        "Bindings.Email.Address": "shop@example.com",
        "Bindings.Email.Name": "Shop",
        "Participant": [{"identity": "a", "role_sid": "RL" + "c" * 32}],
    }
    assert twilio_paths(body) == {}


# --- Graph: recipients on the thread, categories on the post -------------------------------------


def with_thread(**thread: Any) -> dict[str, Any]:
    body = copy.deepcopy(GRAPH_BODY)
    body["threads"][0].update(thread)
    return body


def with_post(**post: Any) -> dict[str, Any]:
    body = copy.deepcopy(GRAPH_BODY)
    body["threads"][0]["posts"][0].update(post)
    return body


def test_graph_accepts_to_and_cc_recipients_and_sends_them():
    adele = {"emailAddress": {"name": "Adele", "address": "adele@contoso.com"}}
    body = with_thread(toRecipients=[adele], ccRecipients=[{"emailAddress": {"address": "alex@contoso.com"}}])
    assert graph_paths(body) == {}
    request = msgraph.build_request(msgraph.prepare(body, graph_credential()), graph_credential())
    sent = json.loads(request.content)
    assert sent["threads"][0]["toRecipients"] == [adele]
    assert sent["threads"][0]["ccRecipients"] == [{"emailAddress": {"address": "alex@contoso.com"}}]


def test_graph_checks_each_recipient_at_its_path():
    body = with_thread(toRecipients=[{"emailAddress": {"address": "nope"}}], ccRecipients="alex@contoso.com")
    assert graph_paths(body) == {
        "threads.0.toRecipients.0.emailAddress.address": "“nope” is not an e-mail address such as adele@contoso.com.",
        "threads.0.ccRecipients": 'ccRecipients must be a list of {"emailAddress": {…}} objects.',
    }


def test_graph_accepts_post_categories_as_names():
    body = with_post(categories=["Red category", "Launch"])
    assert graph_paths(body) == {}
    assert graph_paths(with_post(categories="Red")) == {
        "threads.0.posts.0.categories": 'categories must be a list of names, e.g. ["Red category"].'
    }
    assert graph_paths(with_post(categories=["ok", "", 3])) == {
        "threads.0.posts.0.categories.1": "A category is a non-empty name (text).",
        "threads.0.posts.0.categories.2": "A category is a non-empty name (text).",
    }


def test_graph_still_takes_one_post_only():
    post = GRAPH_BODY["threads"][0]["posts"][0]
    assert graph_paths(with_thread(posts=[post, post])) == {
        "threads.0.posts": "Give exactly one post in the thread."
    }


def test_graph_still_refuses_unknown_thread_fields():
    assert "threads.0.bccRecipients" in graph_paths(with_thread(bccRecipients=[]))
