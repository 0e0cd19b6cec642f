"""export_conversations [--format jsonl|csv] [--provider P] [--status S] [--since YYYY-MM-DD]

Streams one row per conversation to stdout, newest first, no secrets: JSONL by default, CSV with a header
row. Bad arguments, or a database that cannot be used, exit 2 with the reason on stderr. The export is
audited (actor: the system user).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import Any

from django.db import transaction

import providers
from convadmin.accounts.services import system_user
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.cli import DatabaseCommand
from convadmin.conversations import export
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.queries import filter_conversations
from convadmin.lists import export as lists_export
from convadmin.lists.filters import describe_filters


def _since(value: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


class Command(DatabaseCommand):
    help = "Stream every conversation record (filtered) to stdout as JSONL (default) or CSV; no secrets."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--format", choices=lists_export.FORMATS, default="jsonl", help="jsonl (default) or csv"
        )
        parser.add_argument("--provider", choices=list(providers.NAMES), help="only this provider's records")
        parser.add_argument("--status", choices=Status.values, help="only records with this status")
        parser.add_argument(
            "--since", type=_since, help="only records created on or after this day (YYYY-MM-DD)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fmt = options["format"]
        filters = {k: options[k] for k in ("provider", "status", "since") if options.get(k)}
        with transaction.atomic(durable=True):
            record(
                EventType.CONVERSATIONS_EXPORTED,
                actor=system_user(),
                extra={"format": fmt, "filters": describe_filters(filters), "via": "command line"},
            )
        rows = export.conversation_rows(filter_conversations(Conversation.objects.all(), filters))
        out = self.stdout
        try:
            for chunk in lists_export.chunked(lists_export.lines(rows, fmt, export.CONVERSATION_FIELDS)):
                out.write(chunk, ending="")
            out.flush()
        except BrokenPipeError:
            # `| head`: the reader has gone. Stop quietly, like other Unix tools (and keep Python's
            # exit-time flush of stdout from complaining about the closed pipe).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
