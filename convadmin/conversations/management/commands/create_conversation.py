"""``create_conversation LABEL --file BODY.json [--user USERNAME] [--key KEY] [--no-wait]`` (the stable command-line contract in README "Command line").

The create runs the same job code as the web's worker, here in this process, and the command waits for the
outcome. ``--no-wait`` saves the record and queues its job for the worker instead, and prints
``{"id", "status": "pending"}`` with exit 0 (follow it with ``settle_conversations --id N`` or the web page).

``--key`` is a create key, as the web form's: running the command again with the same key and the
same body prints the first record again and sends nothing (a script that retries cannot create twice);
the same key with another body (or credential) is refused with exit 2, ``errors`` ``{"key": [...]}``
naming the record the key already made. Any text is a key; the same text is the same key.

Prints one JSON object ``{"id", "status", "external_id", "errors"}`` on stdout and exits
0 — created (``status`` "created", ``external_id`` the provider's id);
1 — the provider refused or could not be reached; the record is saved as failed and ``errors`` is
    ``{"provider": ["<the provider's own message>"]}`` plus ``"code": ["<its code>"]`` where there is
    one and ``"existing_id": ["<id>"]`` when the provider named a conversation that already exists;
2 — invalid input, nothing sent, nothing saved: ``id`` and ``external_id`` null, ``status``
    "invalid", ``errors`` maps field paths (``participants.3.user_id``, ``topic``) — or ``file``,
    ``database``, ``label``, ``credential``, ``user`` — to lists of messages (``convadmin.cli``).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandParser

from convadmin.accounts.services import system_user
from convadmin.cli import DatabaseCommand, read_json_file
from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential


class Command(DatabaseCommand):
    help = "Create a conversation with a stored credential from the provider's own JSON body."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="The credential's label.")
        parser.add_argument(
            "--file", required=True, help="The request body as JSON, in the provider's own format."
        )
        parser.add_argument("--user", help="The acting user for the audit trail (default: the system user).")
        parser.add_argument(
            "--key",
            help="A create key (any text, e.g. a UUID or order-1234): a repeat with the same body sends "
            "nothing and prints the first record; with another body it is refused.",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help='Queue the create for the worker and print {"id", "status": "pending"} at once.',
        )

    def database_refused(self, problem: str) -> None:
        self.stdout.write(json.dumps(invalid({"database": [problem]})[1], ensure_ascii=False))
        self.stdout.flush()
        sys.exit(2)

    def handle(self, *args: Any, **options: Any) -> None:
        code, output = self.run(
            options["label"], options["file"], options.get("user"), options.get("key"), not options["no_wait"]
        )
        self.stdout.write(json.dumps(output, ensure_ascii=False))
        if code:
            sys.exit(code)

    def run(
        self, label: str, path: str, username: str | None, key: str | None = None, wait: bool = True
    ) -> tuple[int, dict[str, Any]]:
        body, errors = read_json_file(path)
        if errors:
            return invalid(errors)
        credential = Credential.objects.filter(label=label).first()
        if credential is None:
            return invalid({"label": [f"No credential is labelled {label!r}."]})
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                return invalid({"user": [f"No user is called {username!r}."]})
        else:
            user = system_user()
        if key is not None and not key.strip():
            return invalid({"key": ["The create key is empty: give any text, e.g. a UUID."]})
        try:
            conversation = services.do_create_conversation(
                body, credential=credential, acting_user=user, idempotency_key=key_uuid(key), wait=wait
            )
        except services.KeyReused as exc:
            record = exc.existing
            return invalid(
                {
                    "key": [
                        f"The key {key!r} was already used for record {record.pk} ({record.status}), with "
                        "a different body or credential. Nothing was sent: use a new key to create another."
                    ]
                }
            )
        except services.ValidationFailed as exc:
            return invalid(exc.errors)
        return outcome(conversation)


#: Keys that are not UUIDs map to one by name, so ``--key order-1234`` is always the same key.
KEY_NAMESPACE = uuid.UUID("6f0c2a5e-4a8b-4d3c-9a57-1e2f3b4c5d6e")


def key_uuid(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(KEY_NAMESPACE, key))


def invalid(errors: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    return 2, {"id": None, "status": "invalid", "external_id": None, "errors": errors}


def outcome(conversation: Conversation) -> tuple[int, dict[str, Any]]:
    errors: dict[str, list[str]] = {}
    if conversation.status == Status.FAILED:
        errors["provider"] = [conversation.error_message or "The conversation was not created."]
        if conversation.error_code:
            errors["code"] = [conversation.error_code]
        if conversation.existing_conversation_id:
            errors["existing_id"] = [conversation.existing_conversation_id]
    output = {
        "id": conversation.pk,
        "status": conversation.status,
        "external_id": conversation.external_id or None,
        "errors": errors,
    }
    if conversation.status == Status.PENDING:  # --no-wait: queued for the worker
        return 0, {"id": conversation.pk, "status": "pending"}
    return (0 if conversation.status == Status.CREATED else 1), output
