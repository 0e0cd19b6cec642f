from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential
from providers.sandbox import Sandbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox_file(tmp_path):
    with Sandbox(seed="demo-test") as sandbox:
        path = tmp_path / "sandbox.json"
        path.write_text(json.dumps(sandbox.credentials()))
        yield path


def test_demo_seeds_users_credentials_and_records_of_every_status_once(sandbox_file, capsys):
    call_command("seed_demo", credentials=str(sandbox_file), password="demo password 1")
    first = capsys.readouterr().out
    assert "password: demo password 1" in first
    assert set(Credential.objects.values_list("provider", flat=True)) == {
        "mixin",
        "twilio",
        "highlevel",
        "msgraph",
    }
    assert all(c.sandbox for c in Credential.objects.all())
    statuses = set(Conversation.objects.values_list("status", flat=True))
    assert statuses == set(Status.values)  # every status the model has: a new one needs a demo record too
    for provider in ("mixin", "twilio", "highlevel", "msgraph"):
        assert Conversation.objects.filter(provider=provider, status=Status.CREATED).exists()
    count = Conversation.objects.count()
    assert count >= 24

    call_command("seed_demo", credentials=str(sandbox_file), password="demo password 2")
    assert "none added" in capsys.readouterr().out
    assert Conversation.objects.count() == count
    assert Credential.objects.count() == 4


def test_demo_users_and_their_password_resets_are_audited(sandbox_file):
    from convadmin.audit.models import AuditEvent, EventType

    call_command("seed_demo", credentials=str(sandbox_file), password="demo password 1", stdout=io.StringIO())
    created = AuditEvent.objects.filter(event_type=EventType.USER_CREATED)
    assert sorted(created.values_list("target_label", flat=True)) == ["demo", "demo-auditor", "demo-support"]
    call_command("seed_demo", credentials=str(sandbox_file), password="demo password 2", stdout=io.StringIO())
    resets = AuditEvent.objects.filter(event_type=EventType.PASSWORD_CHANGED)
    assert resets.count() == 3 and {e.actor_name for e in resets} == {"system"}
    assert "demo password" not in str(list(AuditEvent.objects.values_list("extra", flat=True)))


def test_demo_refuses_an_unreadable_credentials_file(tmp_path):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="Cannot read the sandbox credentials"):
        call_command("seed_demo", credentials=str(tmp_path / "missing.json"))
