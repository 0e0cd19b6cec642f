"""``settle_conversations [--id N]``: what the settle job does every minute, from the command line.

Runs the create of every pending record whose job died or never started (an earlier attempt is looked up
before anything is sent again), looks up every unknown outcome that is due, and releases actions whose job
was lost. Prints one JSON line per record it touched and a summary line; exits 0 when nothing is left
pending or waiting to be looked up again, 1 otherwise (e.g. a create still in flight, or a provider that
could not be reached).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from convadmin.conversations import services


class Command(BaseCommand):
    help = "Settle pending and unknown-outcome conversation records by looking them up at the provider."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", type=int, help="Only this record.")

    def handle(self, *args: Any, **options: Any) -> None:
        pk = options.get("id")
        for line in services.settle_conversations(pk):
            self.stdout.write(json.dumps(line, ensure_ascii=False))
        left = services.unsettled(pk)
        self.stdout.write(json.dumps({"summary": True, "unsettled": left}))
        if left:
            sys.exit(1)
