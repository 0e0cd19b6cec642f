"""A fifth provider is one module: Echo (tests/echo_provider.py, registered in tests/settings.py) goes through
the command line, the new-conversation page, the list, the detail page and the export with no Django change."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import call_command

from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential

pytestmark = pytest.mark.django_db
API = "https://api.echo.test"
TOKEN = "echo-secret-token-0123456789"


@pytest.fixture
def echo(tmp_path):
    path = tmp_path / "echo.json"
    path.write_text(json.dumps({"token": TOKEN}))
    call_command("add_credential", "echo", "Echo main", "--file", str(path), stdout=io.StringIO())
    return Credential.objects.get(label="Echo main")


def reply(ref: str = "r-1") -> dict:
    return {"id": "E-42", "title": "Hello", "ref": ref, "members": [{"handle": "@ann"}]}


def test_the_cli_creates_an_echo_conversation(echo, tmp_path, respx_mock):
    route = respx_mock.post(f"{API}/v1/conversations").respond(201, json=reply())
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"title": "Hello", "ref": "r-1", "members": [{"handle": "@ann"}]}))
    out = io.StringIO()
    call_command("create_conversation", "Echo main", "--file", str(path), stdout=out)
    result = json.loads(out.getvalue())
    assert result["status"] == "created" and result["external_id"] == "E-42"
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


def test_the_cli_refuses_an_invalid_echo_body_at_its_field(echo, tmp_path):
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"title": "Hello", "members": [{"handle": "ann"}]}))
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("create_conversation", "Echo main", "--file", str(path), stdout=out)
    assert exit_.value.code == 2
    assert json.loads(out.getvalue())["errors"] == {"members.0.handle": ["A handle starts with @."]}


def test_the_page_builds_and_creates_an_echo_conversation_then_lists_shows_and_exports_it(
    echo, support_client, respx_mock
):
    respx_mock.post(f"{API}/v1/conversations").respond(201, json=reply())
    page = support_client.get(f"/conversations/new/?provider=echo&credential={echo.pk}").content.decode()
    assert "Reference" in page and "Handle" in page
    data = {
        "provider": "echo",
        "credential": str(echo.pk),
        "idempotency_key": str(uuid.uuid4()),
        "title": "Hello",
        "ref": "r-1",
        "participants-TOTAL_FORMS": "1",
        "participants-INITIAL_FORMS": "0",
        "participants-0-handle": "@ann",
    }
    preview = support_client.post("/conversations/new/", {**data, "_preview": "1"}).content.decode()
    assert "Echo repeats what it is sent." in preview and "$ECHO_TOKEN" in preview and TOKEN not in preview
    response = support_client.post("/conversations/new/", data)
    conversation = Conversation.objects.get()
    assert response["Location"] == f"/conversations/{conversation.pk}/"
    assert conversation.status == Status.CREATED and conversation.participants == ["@ann"]

    listing = support_client.get("/conversations/?provider=echo").content.decode()
    assert "Echo (tests)" in listing and "E-42" in listing
    detail = support_client.get(f"/conversations/{conversation.pk}/").content.decode()
    assert "E-42" in detail and "@ann" in detail and TOKEN not in detail
    exported = b"".join(support_client.get("/conversations/export/?format=jsonl").streaming_content)
    row = json.loads(exported.decode().splitlines()[0])
    assert row["provider"] == "echo" and row["external_id"] == "E-42"
    assert TOKEN.encode() not in exported


def test_duplicate_as_new_leaves_out_the_echo_reference(echo, support_client):
    from tests.factories import ConversationFactory

    original = ConversationFactory(
        provider="echo", credential=echo, request_body={"title": "Hi", "ref": "r-9", "members": []}
    )
    page = support_client.get(f"/conversations/new/?from={original.pk}").content.decode()
    assert 'value="Hi"' in page and "r-9" not in page


def test_a_record_without_a_name_is_called_what_the_provider_says(echo, support_client):
    """The ``UNTITLED`` hook (HighLevel: "Contact …"), not a branch on the provider's name."""
    from tests.factories import ConversationFactory

    ConversationFactory(provider="echo", credential=echo, name="", participants=["@bo"], external_id="E-7")
    listing = support_client.get("/conversations/").content.decode()
    assert ">Echo with @bo</a>" in listing and ">E-7</a>" not in listing
