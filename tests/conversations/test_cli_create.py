"""``create_conversation LABEL --file BODY.json [--user USERNAME]``: its exact contract (exit codes, output)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from convadmin.audit.models import AuditEvent, EventType
from convadmin.conversations.models import Conversation, Status
from tests.create_support import (
    HIGHLEVEL,
    HL_CONTACT,
    HL_CONVERSATION,
    MIXIN,
    MIXIN_CONTACT_ID,
    MIXIN_USER,
    TWILIO,
    assert_no_secret,
    highlevel_credential,
    mixin_conversation,
    mixin_credential,
    twilio_conversation,
    twilio_credential,
    twilio_error,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
KEYS = ("id", "status", "external_id", "errors")


def run(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("create_conversation", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    text = out.getvalue()
    assert text.count("\n") <= 1  # one JSON object, one line
    return code, json.loads(text)


@pytest.fixture
def body_file(tmp_path):
    def write(body) -> str:
        path = tmp_path / "body.json"
        path.write_text(body if isinstance(body, str) else json.dumps(body))
        return str(path)

    return write


def test_exit_0_when_created(body_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(201, json=twilio_conversation())
    code, output = run("tw", "--file", body_file({"FriendlyName": "Order 123"}))
    conversation = Conversation.objects.get()
    assert code == 0
    assert output == {
        "id": conversation.pk,
        "status": "created",
        "external_id": conversation.external_id,
        "errors": {},
    }
    assert tuple(output) == KEYS
    assert conversation.created_by.username == "system"


def test_exit_0_for_mixin_with_the_acting_user(body_file, respx_mock):
    mixin_credential(label="mx")
    UserFactory(username="qa", role="Support")
    respx_mock.post(f"{MIXIN}/conversations").respond(200, json=mixin_conversation())
    code, output = run(
        "mx",
        "--file",
        body_file({"category": "CONTACT", "participants": [{"user_id": MIXIN_USER}]}),
        "--user",
        "qa",
    )
    assert code == 0
    assert output["external_id"] == MIXIN_CONTACT_ID
    assert AuditEvent.objects.get(event_type=EventType.CONVERSATION_CREATED).actor_name == "qa"


def test_exit_1_when_the_provider_refuses_with_its_message_and_code(body_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(
        return_value=twilio_error(50353, "Conversation with provided unique name already exists", 409)
    )
    code, output = run("tw", "--file", body_file({"UniqueName": "order-123"}))
    conversation = Conversation.objects.get()
    assert code == 1
    assert conversation.status == Status.FAILED
    assert output["id"] == conversation.pk and output["status"] == "failed" and output["external_id"] is None
    assert output["errors"]["provider"] == [conversation.error_message]
    assert output["errors"]["provider"][0].startswith("Conversation with provided unique name already exists")
    assert output["errors"]["code"] == ["50353"]
    assert set(output["errors"]) == {"provider", "code"}


def test_exit_1_when_the_provider_cannot_be_reached(body_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(
        side_effect=httpx.ConnectError("refused")
    )
    code, output = run("tw", "--file", body_file({"FriendlyName": "x"}))
    assert code == 1
    assert "Could not connect to conversations.twilio.com" in output["errors"]["provider"][0]
    assert output["errors"]["code"] == ["connect_error"]


def test_exit_1_for_a_highlevel_duplicate_names_the_existing_conversation(body_file, respx_mock, monkeypatch):
    from providers import highlevel

    monkeypatch.setattr(highlevel, "sleep", lambda seconds: None)
    highlevel_credential(label="hl")
    respx_mock.post(f"{HIGHLEVEL}/conversations/").respond(
        400, json={"message": "Conversation already exists!"}
    )
    respx_mock.get(f"{HIGHLEVEL}/conversations/search").respond(
        200, json={"conversations": [{"id": HL_CONVERSATION, "contactId": HL_CONTACT}]}
    )
    code, output = run("hl", "--file", body_file({"contactId": HL_CONTACT}))
    assert code == 1
    assert output["errors"] == {
        "provider": ["Conversation already exists!"],
        "code": ["duplicate_contact"],
        "existing_id": [HL_CONVERSATION],
    }


def test_exit_2_when_invalid_with_paths_and_nothing_saved_or_sent(body_file, respx_mock):
    mixin_credential(label="mx")
    body = {"category": "GROUP", "participants": [{"user_id": MIXIN_USER}, {"user_id": "bob"}]}
    code, output = run("mx", "--file", body_file(body))
    assert code == 2
    assert output == {
        "id": None,
        "status": "invalid",
        "external_id": None,
        "errors": {
            "participants.1.user_id": ["User id must be a UUID such as 965e5c6e-434c-3fa9-b780-c50f43cd955c."]
        },
    }
    assert Conversation.objects.count() == 0 and AuditEvent.objects.count() == 0
    assert not respx_mock.calls


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON"), (None, "Cannot read")],
)
def test_exit_2_for_an_unreadable_file(body_file, tmp_path, content, message):
    twilio_credential(label="tw")
    path = body_file(content) if content else str(tmp_path / "missing.json")
    code, output = run("tw", "--file", path)
    assert code == 2
    assert output["status"] == "invalid" and output["id"] is None
    assert message in output["errors"]["file"][0]


def test_exit_2_for_an_unknown_label_a_disabled_credential_or_an_unknown_user(body_file):
    path = body_file({"FriendlyName": "x"})
    assert run("nope", "--file", path) == (
        2,
        {
            "id": None,
            "status": "invalid",
            "external_id": None,
            "errors": {"label": ["No credential is labelled 'nope'."]},
        },
    )
    twilio_credential(label="off", disabled=True)
    code, output = run("off", "--file", path)
    assert code == 2 and "disabled" in output["errors"]["credential"][0]
    twilio_credential(label="tw")
    code, output = run("tw", "--file", path, "--user", "ghost")
    assert code == 2 and output["errors"] == {"user": ["No user is called 'ghost'."]}
    assert Conversation.objects.count() == 0


def test_output_never_holds_a_secret(body_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").mock(
        return_value=twilio_error(20003, "Authenticate", 401)
    )
    code, output = run("tw", "--file", body_file({"FriendlyName": "x"}))
    assert code == 1
    assert_no_secret(json.dumps(output))


def test_it_runs_with_only_the_three_environment_variables(tmp_path):
    """DATABASE_URL, SECRET_KEY and ENCRYPTION_KEYS only; DEBUG unset; no network needed for exit 2."""
    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SECRET_KEY": "cli-test-" + "k" * 50,
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    body = tmp_path / "body.json"
    body.write_text('{"FriendlyName": "x"}')
    manage = [sys.executable, str(root / "manage.py")]
    migrate = subprocess.run(
        [*manage, "migrate", "-v", "0"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    result = subprocess.run(
        [*manage, "create_conversation", "nobody", "--file", str(body)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout) == {
        "id": None,
        "status": "invalid",
        "external_id": None,
        "errors": {"label": ["No credential is labelled 'nobody'."]},
    }


def test_a_repeated_key_with_the_same_body_prints_the_first_record_and_sends_nothing(body_file, respx_mock):
    twilio_credential(label="tw")
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    path = body_file({"FriendlyName": "Order 123"})
    first = run("tw", "--file", path, "--key", "order-123")
    again = run("tw", "--file", path, "--key", "order-123")
    assert first == again and first[0] == 0
    assert route.call_count == 1
    assert Conversation.objects.count() == 1


def test_a_repeated_key_with_another_body_is_refused_naming_the_record(body_file, respx_mock):
    twilio_credential(label="tw")
    route = respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(
        201, json=twilio_conversation()
    )
    code, output = run("tw", "--file", body_file({"FriendlyName": "A"}), "--key", "batch-7")
    first = Conversation.objects.get()
    assert code == 0
    code, output = run("tw", "--file", body_file({"FriendlyName": "B"}), "--key", "batch-7")
    assert code == 2
    assert output["id"] is None and output["status"] == "invalid"
    assert list(output["errors"]) == ["key"]
    assert f"already used for record {first.pk} (created)" in output["errors"]["key"][0]
    assert route.call_count == 1
    assert Conversation.objects.count() == 1


def test_a_uuid_key_is_stored_as_given_and_an_empty_key_is_refused(body_file, respx_mock):
    twilio_credential(label="tw")
    respx_mock.post(f"{TWILIO}/v1/ConversationWithParticipants").respond(201, json=twilio_conversation())
    key = "6b0d6f2e-0a51-4c8e-9b7a-2f1e3d4c5b6a"
    assert run("tw", "--file", body_file({"FriendlyName": "A"}), "--key", key)[0] == 0
    assert str(Conversation.objects.get().idempotency_key) == key
    code, output = run("tw", "--file", body_file({"FriendlyName": "A"}), "--key", " ")
    assert code == 2 and "key" in output["errors"]
