"""Bad command-line input ends in exit 2 with a clear message, nothing sent, nothing saved (DESIGN.md §5).

Each input once escaped the contract (a traceback, exit 1, no JSON, or a request sent anyway).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from convadmin import cli
from convadmin.audit.models import AuditEvent
from convadmin.conversations.models import Conversation
from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from tests.create_support import graph_credential, mixin_credential, twilio_credential
from tests.credentials.samples import TWILIO

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
INVALID = {"id": None, "status": "invalid", "external_id": None}


def create(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("create_conversation", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, json.loads(out.getvalue())


@pytest.fixture
def write(tmp_path):
    def write(content: str | bytes, name: str = "body.json") -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return write


def refused(label: str, path: str) -> dict[str, list[str]]:
    """Run create_conversation; assert exit 2 in the contract's shape, nothing saved; the errors."""
    before = AuditEvent.objects.count()
    code, output = create(label, "--file", path)
    assert code == 2
    assert {k: output[k] for k in INVALID} == INVALID and set(output) == {*INVALID, "errors"}
    assert Conversation.objects.count() == 0 and Exchange.objects.count() == 0
    assert AuditEvent.objects.count() == before
    return output["errors"]


def deep(levels: int) -> str:
    return '{"FriendlyName": "x", "Attributes": ' + "[" * levels + "]" * levels + "}"


# --- create_conversation: every bad input of issue 12 ------------------------------------------------


def test_a_100k_deep_body_is_refused_without_a_recursion_error(write, respx_mock):
    twilio_credential(label="tw")
    errors = refused("tw", write(deep(100_000)))
    assert errors == {
        "file": [
            f"{write(deep(100_000))} is nested more than 64 levels deep (line 1, column 100); flatten it."
        ]
    }
    assert not respx_mock.calls


def test_a_body_nested_past_the_providers_limit_is_refused_at_its_field(write, respx_mock):
    twilio_credential(label="tw")
    errors = refused("tw", write(deep(50)))
    assert any("Nested more than 32 levels" in m for ms in errors.values() for m in ms), errors
    assert not respx_mock.calls


def test_a_lone_surrogate_is_refused_at_its_field(write, respx_mock):
    twilio_credential(label="tw")
    errors = refused("tw", write('{"FriendlyName": "caf\\ud800"}'))
    assert list(errors) == ["FriendlyName"]
    assert "lone surrogate (\\ud800)" in errors["FriendlyName"][0]
    assert not respx_mock.calls


@pytest.mark.parametrize(
    ("make", "body", "field"),
    [
        ("mixin", '{"category": "GROUP", "name": "a\\u0000b", "participants": []}', "name"),
        ("graph", '{"topic": "a\\u0000b", "threads": []}', "topic"),
        ("twilio", '{"Participant": [{"Identity": "al\\u0000ice"}]}', "Participant.0.Identity"),
    ],
)
def test_a_nul_in_a_name_topic_or_identity_is_refused(write, respx_mock, make, body, field):
    {"mixin": mixin_credential, "graph": graph_credential, "twilio": twilio_credential}[make](label="c")
    errors = refused("c", write(body))
    assert "NUL" in errors[field][0]
    assert not respx_mock.calls


def test_a_10_mb_graph_body_is_refused_not_sent(write, respx_mock):
    graph_credential(label="g")
    body = {
        "topic": "Big",
        "threads": [{"posts": [{"body": {"contentType": "text", "content": "x" * 10_000_000}}]}],
    }
    errors = refused("g", write(json.dumps(body)))
    assert "at most 4 MB" in errors["threads.0.posts.0.body.content"][0]
    assert not respx_mock.calls


def test_a_file_over_the_size_limit_is_refused_before_reading(write, monkeypatch, respx_mock):
    twilio_credential(label="tw")
    monkeypatch.setattr(cli, "MAX_FILE_BYTES", 2 * 1048576)
    path = write('{"FriendlyName": "' + "x" * 2 * 1048576 + '"}')
    assert refused("tw", path) == {"file": [f"{path} is larger than 2 MB, the most a command reads."]}


def test_a_pipe_is_read_up_to_the_size_limit(monkeypatch, respx_mock):
    monkeypatch.setattr(cli, "MAX_FILE_BYTES", 1048576)
    assert cli.read_json_file("/dev/zero") == (
        None,
        {"file": ["/dev/zero is larger than 1 MB, the most a command reads."]},
    )


@pytest.mark.parametrize(
    ("attributes", "path"),
    [
        ("NaN", "Attributes"),
        ("1e400", "Attributes"),
        ("-Infinity", "Attributes"),
        ('"{\\"a\\": NaN}"', "Attributes"),
        ('"{\\"a\\": 1e400}"', "Attributes"),
    ],
)
def test_nan_or_infinity_in_twilio_attributes_is_refused(write, respx_mock, attributes, path):
    twilio_credential(label="tw")
    errors = refused("tw", write('{"FriendlyName": "x", "Attributes": ' + attributes + "}"))
    assert path in errors, errors
    assert not respx_mock.calls


def test_a_byte_order_mark_is_accepted_as_by_add_credential(write, respx_mock):
    twilio_credential(label="tw")
    route = respx_mock.post("https://conversations.twilio.com/v1/ConversationWithParticipants").respond(
        201, json={"sid": "CH" + "0" * 32, "friendly_name": "x"}
    )
    code, output = create("tw", "--file", write(b'\xef\xbb\xbf{"FriendlyName": "x"}'))
    assert (code, output["status"]) == (0, "created")
    assert route.called


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"FriendlyName": "caf\xe9"}', "is not UTF-8 text (invalid byte at offset 21)"),
        (b'{"FriendlyName": "x",\n "State": }', "is not valid JSON: Expecting value at line 2, column 11."),
        (b"{" + b'"a":' * 0 + b'"n": ' + b"1" * 5000 + b"}", "is not usable JSON"),
    ],
)
def test_undecodable_or_broken_json_is_refused_with_where(write, respx_mock, content, message):
    twilio_credential(label="tw")
    errors = refused("tw", write(content))
    assert message in errors["file"][0]


def test_a_directory_or_missing_file_is_refused(tmp_path):
    twilio_credential(label="tw")
    assert refused("tw", str(tmp_path)) == {"file": [f"Cannot read {tmp_path}: it is a directory."]}
    missing = tmp_path / "missing.json"
    assert refused("tw", str(missing)) == {"file": [f"Cannot read {missing}: No such file or directory."]}


# --- add_credential, check_credential, export_conversations ------------------------------------------


def add(path: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("add_credential", "twilio", "tw", file=path, stdout=io.StringIO(), stderr=io.StringIO())
    assert caught.value.returncode == 2
    assert Credential.objects.count() == 0 and AuditEvent.objects.count() == 0
    return str(caught.value)


def test_add_credential_refuses_the_same_bad_files(write):
    sid = TWILIO["account_sid"]
    assert "nested more than 64 levels" in add(
        write('{"account_sid": ' + "[" * 100_000 + "]" * 100_000 + "}")
    )
    message = add(write('{"account_sid": "' + sid + '", "auth_token": "ab\\ud800"}'))
    assert "auth_token: Contains a lone surrogate (\\ud800)" in message
    assert "auth_token: Contains a NUL" in add(
        write('{"account_sid": "' + sid + '", "auth_token": "a\\u0000"}')
    )
    assert "NaN and Infinity" in add(write('{"account_sid": "' + sid + '", "x": NaN}'))
    assert "is not UTF-8 text" in add(write(b'{"account_sid": "\xff"}'))


def test_add_credential_still_reads_a_byte_order_mark(write):
    text = "\ufeff" + json.dumps(TWILIO)
    call_command("add_credential", "twilio", "tw", file=write(text), stdout=io.StringIO())
    assert Credential.objects.filter(label="tw").exists()


# --- a missing or unmigrated database ----------------------------------------------------------------


def manage(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    """A command with only the three documented variables set."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "cli-test-" + "k" * 50,
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("where", ["missing directory", "empty file"])
def test_every_command_exits_2_without_a_usable_database(tmp_path, where):
    body = tmp_path / "body.json"
    body.write_text('{"FriendlyName": "x"}')
    credential = tmp_path / "credential.json"
    credential.write_text(json.dumps(TWILIO))
    database = tmp_path / ("gone/db.sqlite3" if where == "missing directory" else "db.sqlite3")
    url = f"sqlite:///{database}"

    result = manage(tmp_path, url, "create_conversation", "tw", "--file", str(body))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    output = json.loads(result.stdout)
    assert {k: output[k] for k in INVALID} == INVALID and list(output["errors"]) == ["database"]
    reason = output["errors"]["database"][0]
    expected = "unable to open database file" if where == "missing directory" else "is not migrated"
    assert str(database) in reason and expected in reason and "manage.py migrate" in reason

    result = manage(tmp_path, url, "check_credential", "tw")
    assert result.returncode == 2 and json.loads(result.stdout) == {"ok": False, "message": reason}

    for args in (("add_credential", "twilio", "tw", "--file", str(credential)), ("export_conversations",)):
        result = manage(tmp_path, url, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert expected in result.stderr and result.stdout == ""
    assert not (tmp_path / "gone").exists()


def test_an_unreachable_postgresql_server_is_named_without_its_password(tmp_path):
    url = "postgres://someone:hunter2-secret@127.0.0.1:9/convadmin"
    result = manage(tmp_path, url, "export_conversations")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "Cannot use the database 'convadmin' on 127.0.0.1:9" in result.stderr
    assert "hunter2" not in result.stderr
