"""``check_credential LABEL``: prints ``{"ok": …, "message": …}``; exit 0 accepted, 1 refused, 2 no usable
database (the project README describes the command)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import CommandParser

from convadmin.accounts.services import system_user
from convadmin.cli import INVALID, DatabaseCommand
from convadmin.credentials import services
from convadmin.credentials.models import Credential


class Command(DatabaseCommand):
    help = (
        "Ask the provider whether a stored credential works (the call is recorded like any other). "
        'Prints {"ok": true|false, "message": "..."}; exit 0 when accepted, 1 when refused or unreachable, 2 when the database cannot be used.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="The credential's label.")

    def database_refused(self, problem: str) -> None:
        self.stdout.write(json.dumps({"ok": False, "message": problem}))
        self.stdout.flush()
        sys.exit(INVALID)

    def handle(self, *args: Any, label: str, **options: Any) -> None:
        credential = Credential.objects.filter(label=label).first()
        if credential is None:
            ok, message = False, f"No credential labelled {label!r}."
        else:
            ok, message = services.do_check_credential(credential, acting_user=system_user())
        self.stdout.write(json.dumps({"ok": ok, "message": message}))
        if not ok:
            self.stdout.flush()
            sys.exit(1)
