from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
import respx
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import CommandError, call_command

from convadmin.accounts.services import SYSTEM_USERNAME
from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from tests.credentials.samples import MIXIN, SECRET, TWILIO, TWILIO_ACCOUNT, VALID, mock_check

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, content: object, name: str = "credential.json") -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def add(*args: str, **options: object) -> str:
    out = StringIO()
    call_command("add_credential", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def refused(*args: str, **options: object) -> str:
    with pytest.raises(CommandError) as caught:
        add(*args, **options)
    assert caught.value.returncode == 2
    return str(caught.value)


@pytest.mark.parametrize("provider", list(VALID))
def test_add_credential_stores_each_provider_and_prints_one_line(tmp_path, provider):
    out = add(provider, f"{provider} prod", file=write(tmp_path, VALID[provider]))
    credential = Credential.objects.get(label=f"{provider} prod")
    assert out == f"Stored credential '{provider} prod' ({provider}, {credential.secret_display}).\n"
    assert SECRET[provider] not in out
    event = AuditEvent.objects.get(event_type=EventType.CREDENTIAL_ADDED)
    assert event.actor_name == SYSTEM_USERNAME and credential.created_by.username == SYSTEM_USERNAME


def test_add_credential_reads_a_legacy_mixin_keystore(tmp_path):
    legacy = {
        "pin": "123456",
        "client_id": MIXIN["app_id"],
        "session_id": MIXIN["session_id"],
        "pin_token": "MaszezJeK0GzWLaxy7L_lzOwN7xUpi7jwQghlpB2Gns",
        "private_key": "hgjDlyx7YaDp7bHIvAUb1dLGKBjJ4zi863QTMGYRxyJ8NXLco3kGq1J4kH7YoAQwlXhmom2JqOCDQAgyKfqwJQ",
    }
    add("mixin", "legacy", file=write(tmp_path, legacy))
    assert Credential.objects.get(label="legacy").settings["app_id"] == MIXIN["app_id"]


def test_an_invalid_json_file_exits_2(tmp_path):
    message = refused("twilio", "x", file=write(tmp_path, '{"account_sid": "AC'))
    assert "is not valid JSON" in message and "line 1" in message


def test_an_unreadable_file_exits_2(tmp_path):
    assert "Cannot read" in refused("twilio", "x", file=str(tmp_path / "missing.json"))


def test_a_file_that_is_not_an_object_exits_2(tmp_path):
    assert "one JSON object" in refused("twilio", "x", file=write(tmp_path, ["account_sid"]))


def test_an_unknown_provider_exits_2(tmp_path):
    assert "Unknown provider 'telegram'" in refused("telegram", "x", file=write(tmp_path, TWILIO))


def test_a_missing_field_exits_2_naming_it(tmp_path):
    message = refused("twilio", "x", file=write(tmp_path, {"account_sid": TWILIO_ACCOUNT}))
    assert "auth_token: Give the Auth Token" in message
    assert not Credential.objects.exists()


def test_a_malformed_key_exits_2_without_echoing_it(tmp_path):
    short = MIXIN["session_private_key"][:62]
    message = refused("mixin", "x", file=write(tmp_path, {**MIXIN, "session_private_key": short}))
    assert "session_private_key: " in message and "64 hex" in message
    assert short not in message


def test_a_plain_http_base_url_on_a_public_host_exits_2(tmp_path):
    message = refused(
        "twilio", "x", file=write(tmp_path, {**TWILIO, "base_url": "http://twilio.example.com"})
    )
    assert "base_url: Use https://" in message


def test_a_loopback_http_base_url_is_accepted_as_sandbox(tmp_path):
    add("twilio", "sandbox", file=write(tmp_path, {**TWILIO, "base_url": "http://127.0.0.1:8765"}))
    assert Credential.objects.get(label="sandbox").sandbox


def test_an_existing_label_exits_2_unless_replace(tmp_path):
    add("twilio", "prod", file=write(tmp_path, TWILIO))
    new = {**TWILIO, "auth_token": "0123456789abcdef" * 2}
    assert "--replace" in refused("twilio", "prod", file=write(tmp_path, new, "new.json"))
    out = add("twilio", "prod", file=write(tmp_path, new, "new.json"), replace=True)
    assert out.startswith("Replaced credential 'prod' (twilio, …cdef · sha256:")
    assert Credential.objects.get(label="prod").get_secrets() == {"auth_token": new["auth_token"]}


def check(label: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("check_credential", label, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def test_check_credential_prints_ok_and_exits_0(tmp_path):
    add("twilio", "prod", file=write(tmp_path, TWILIO))
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, "twilio")
        code, out = check("prod")
    assert code == 0
    assert out.endswith("\n") and out.count("\n") == 1
    result = json.loads(out)
    assert result == {"ok": True, "message": result["message"]} and "reachable" in result["message"]
    assert Exchange.objects.get().purpose == "check"
    assert AuditEvent.objects.get(event_type=EventType.CREDENTIAL_CHECKED).actor_name == SYSTEM_USERNAME


def test_check_credential_refused_exits_1_with_the_providers_message(tmp_path):
    add("twilio", "prod", file=write(tmp_path, TWILIO))
    with respx.mock(assert_all_mocked=True) as router:
        mock_check(router, "twilio", ok=False)
        code, out = check("prod")
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False and result["message"].startswith("Authenticate")
    assert result["message"].endswith("(code 20003)")
    assert Exchange.objects.get().status == 401
    assert TWILIO["auth_token"] not in out


def test_check_credential_of_an_unknown_label_exits_1():
    code, out = check("nope")
    assert code == 1
    assert json.loads(out) == {"ok": False, "message": "No credential labelled 'nope'."}


# --- the real process: exit codes and streams exactly as scripts see them ----------------------------


class FakeTwilio(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {"account_sid": TWILIO_ACCOUNT, "default_chat_service_sid": "IS" + "1" * 32}
        ).encode()
        self.send_response(200 if self.path == "/v1/Configuration" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_commands_in_a_process_with_only_the_three_variables(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SECRET_KEY": "cli-test-" + "k" * 50,
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*manage, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    try:
        assert run("migrate", "-v0").returncode == 0
        good = write(tmp_path, {**TWILIO, "base_url": f"http://127.0.0.1:{server.server_port}"})
        stored = run("add_credential", "twilio", "Fake", "--file", good)
        assert (stored.returncode, stored.stderr) == (0, "")
        assert stored.stdout.startswith("Stored credential 'Fake' (twilio, …b1a0 · sha256:")
        again = run("add_credential", "twilio", "Fake", "--file", good)
        assert again.returncode == 2 and again.stdout == ""
        assert "already exists; pass --replace" in again.stderr
        bad = run("add_credential", "twilio", "Bad", "--file", write(tmp_path, "nope", "bad.json"))
        assert bad.returncode == 2 and "not valid JSON" in bad.stderr
        checked = run("check_credential", "Fake")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["ok"] is True
        missing = run("check_credential", "Missing")
        assert missing.returncode == 1
        assert json.loads(missing.stdout) == {"ok": False, "message": "No credential labelled 'Missing'."}
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "url", ["https://collector.attacker.example", "https://169.254.169.254", "http://127.0.0.1.nip.io"]
)
def test_a_base_url_off_the_providers_hosts_exits_2(tmp_path, url):
    message = refused("twilio", "x", file=write(tmp_path, {**TWILIO, "base_url": url}))
    assert "base_url: " in message
    assert not Credential.objects.exists()


def test_an_operator_listed_host_is_accepted(tmp_path, settings):
    settings.PROVIDER_EXTRA_HOSTS = ["twilio-proxy.corp.example"]
    add("twilio", "x", file=write(tmp_path, {**TWILIO, "base_url": "https://twilio-proxy.corp.example"}))
    assert Credential.objects.get(label="x").settings["base_url"] == "https://twilio-proxy.corp.example"
