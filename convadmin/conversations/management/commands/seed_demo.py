"""Seed a demo: an administrator, sandbox credentials for the four providers, and sample records.

Run by ``make demo`` against a running sandbox (``python -m providers.sandbox --credentials-out FILE``).
Idempotent: the user and credentials are updated in place, and the sample records are made only once.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from convadmin.accounts.roles import ADMINISTRATOR, AUDITOR, SUPPORT
from convadmin.accounts.services import do_change_password, do_change_user, do_create_user, system_user
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services import do_create_conversation
from convadmin.credentials.models import Credential
from convadmin.credentials.services import do_add_credential

User = get_user_model()
LABELS = {
    "mixin": "Sandbox Mixin",
    "twilio": "Sandbox Twilio",
    "highlevel": "Sandbox HighLevel",
    "msgraph": "Sandbox Microsoft Graph",
}
PEOPLE = ["Adele Vance", "Alex Wilber", "Diego Siciliani", "Grady Archie", "Isaiah Langer", "Lee Gu"]


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=0x1D2E3F40_0000_4000_8000_000000000000 + n))


def sample_bodies() -> list[tuple[str, dict[str, Any]]]:
    """A few dozen bodies: successes for each provider and the sandbox's failure triggers."""
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i in range(6):
        members = [{"user_id": _uuid(10 * i + k)} for k in range(1 + i % 4)]
        bodies.append(
            ("mixin", {"category": "GROUP", "name": f"Support squad {i + 1}", "participants": members})
        )
    bodies.append(("mixin", {"category": "CONTACT", "participants": [{"user_id": _uuid(99)}]}))
    bodies.append(
        (
            "mixin",
            {"category": "GROUP", "name": "fail-500 outage drill", "participants": [{"user_id": _uuid(98)}]},
        )
    )
    for i in range(6):
        participants = [{"identity": f"agent-{i}"}, {"identity": f"customer-{100 + i}"}]
        bodies.append(
            (
                "twilio",
                {
                    "FriendlyName": f"Order {1000 + i}",
                    "UniqueName": f"order-{1000 + i}",
                    "Participant": participants,
                },
            )
        )
    bodies.append(("twilio", {"FriendlyName": "Escalation", "Participant": [{"identity": "fail-500"}]}))
    bodies.append(
        ("twilio", {"FriendlyName": "Returns", "UniqueName": "duplicate-returns", "Participant": []})
    )
    for i in range(6):
        bodies.append(("highlevel", {"contactId": f"demoContact{i:02d}AAAAAAA"}))
    bodies.append(("highlevel", {"contactId": "duplicateAAAAAAAAAAA"}))
    bodies.append(("highlevel", {"contactId": "ratelimitAAAAAAAAAAA"}))
    for i in range(6):
        name = PEOPLE[i]
        address = name.lower().replace(" ", ".") + "@contoso.test"
        bodies.append(
            (
                "msgraph",
                {
                    "topic": f"Quarterly review {i + 1}",
                    "threads": [
                        {
                            "posts": [
                                {
                                    "body": {
                                        "contentType": "text",
                                        "content": f"Kick-off for review {i + 1}.",
                                    },
                                    "newParticipants": [{"emailAddress": {"name": name, "address": address}}],
                                }
                            ]
                        }
                    ],
                },
            )
        )
    bodies.append(
        (
            "msgraph",
            {
                "topic": "fail-500 rehearsal",
                "threads": [{"posts": [{"body": {"contentType": "text", "content": "Hi"}}]}],
            },
        )
    )
    return bodies


class Command(BaseCommand):
    help = "Create the demo administrator, sandbox credentials and sample records (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--credentials", required=True, help="JSON file written by the sandbox (--credentials-out)"
        )
        parser.add_argument("--password", help="password of the demo users (default: a new random one)")

    def handle(self, *args: Any, credentials: str, password: str | None, **options: Any) -> None:
        try:
            sandbox = json.loads(Path(credentials).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the sandbox credentials {credentials}: {exc}") from exc
        logging.getLogger("providers.http").setLevel(logging.WARNING)  # one line per record is enough here
        password = password or secrets.token_urlsafe(12)
        admin = self._user("demo", ADMINISTRATOR, password)
        self._user("demo-support", SUPPORT, password)
        self._user("demo-auditor", AUDITOR, password)
        stored = {}
        for provider, label in LABELS.items():
            stored[provider] = do_add_credential(
                provider, label, sandbox[provider], acting_user=admin, replace=True
            )
        if Conversation.objects.filter(credential__label__in=LABELS.values()).exists():
            self.stdout.write("Sample records exist already; none added.")
        else:
            self._samples(stored, admin)
        self.stdout.write(
            f"Demo users: demo (Administrator), demo-support, demo-auditor — password: {password}"
        )

    def _user(self, username: str, role: str, password: str):
        """Create the demo user, or reset its password, role and active flag: audited like any change."""
        actor = system_user()
        user = User.objects.filter(username=username).first()
        if user is None:
            return do_create_user(username, f"{username}@example.test", password, role, acting_user=actor)
        do_change_password(user, password, acting_user=actor)
        do_change_user(user, role=role, is_active=True, acting_user=actor)
        return user

    def _samples(self, credentials: dict[str, Credential], admin) -> None:
        support = User.objects.get(username="demo-support")
        made = 0
        for index, (provider, body) in enumerate(sample_bodies()):
            conversation = do_create_conversation(
                body, credential=credentials[provider], acting_user=support if index % 3 else admin, wait=True
            )
            made += 1
            self.stdout.write(f"  {conversation.provider:9} {conversation.status:8} {conversation}")
        # A record whose process died mid-call: the detail page offers "Check with provider".
        pending = Conversation.objects.create(
            provider="twilio",
            credential=credentials["twilio"],
            created_by=support,
            status=Status.PENDING,
            name="Order 1000",
            participants=["agent-0", "customer-100"],
            request_body={
                "FriendlyName": "Order 1000",
                "UniqueName": "order-1000",
                "Participant": [{"identity": "agent-0"}],
            },
        )
        # Backdated: a fresh pending record may still be in flight, and "Check with provider" waits for it.
        Conversation.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(hours=1))
        self.stdout.write(f"Added {made + 1} sample records.")
