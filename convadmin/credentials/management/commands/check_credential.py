"""``check_credential LABEL``: prints ``{"ok": …, "message": …}``; exit 0 accepted, 1 refused; the project README describes the command."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from convadmin.accounts.services import system_user
from convadmin.credentials import services
from convadmin.credentials.models import Credential


class Command(BaseCommand):
    help = (
        "Ask the provider whether a stored credential works (the call is recorded like any other). "
        'Prints {"ok": true|false, "message": "..."}; exit 0 when accepted, 1 when refused or unreachable.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="The credential's label.")

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
