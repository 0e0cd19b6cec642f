"""``bulk_create LABEL --file ROWS.csv [--dry-run] [--no-wait] [--user USERNAME] [--template NAME_OR_ID]``
(README "Bulk create").

Reads a CSV or XLSX file in the provider's template format (README "Bulk create"), judges every row with the
provider's own rules and prints one JSON line per row — ``{"row", "id", "status", "external_id", "errors"}``
(``row`` is the line in the file) — then one summary line ``{"summary": {...}, "batch", "errors"}``.
``--template``: a saved template (one the acting user may use, of the credential's provider) whose values fill
the cells a row leaves blank. Exits
0 — every row was created (``--dry-run``: every row is ready; ``--no-wait``: the batch is queued);
1 — at least one row failed at the provider (its record is saved as failed, with the provider's message);
2 — the file is invalid: a file-level problem, or any row invalid or a duplicate; nothing is sent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from django.contrib.auth import get_user_model
from django.core.management.base import CommandParser
from django.db.models import Q

from convadmin.accounts.services import system_user
from convadmin.bulk import rows as bulk_rows
from convadmin.bulk import services
from convadmin.bulk.models import BatchRow, RowStatus
from convadmin.cli import DatabaseCommand
from convadmin.conversations.management.commands.create_conversation import outcome
from convadmin.credentials.models import Credential
from convadmin.drafts.models import ConversationTemplate
from convadmin.drafts.services import usable_templates


class Command(DatabaseCommand):
    help = "Create one conversation per row of a CSV or XLSX file (the provider's bulk template)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="The credential's label.")
        parser.add_argument("--file", required=True, help="The rows: a .csv (UTF-8) or .xlsx file.")
        parser.add_argument("--dry-run", action="store_true", help="Judge every row; send nothing.")
        parser.add_argument(
            "--no-wait", action="store_true", help="Queue the batch for the worker and return at once."
        )
        parser.add_argument("--user", help="The acting user for the audit trail (default: the system user).")
        parser.add_argument(
            "--template",
            help="A saved template (name or id) whose values fill the cells a row leaves blank.",
        )

    def database_refused(self, problem: str) -> None:
        self.print({"summary": {"rows": 0}, "batch": None, "errors": {"database": [problem]}})
        sys.exit(2)

    def print(self, value: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(value, ensure_ascii=False))

    def refuse(self, key: str, message: str) -> NoReturn:
        self.print({"summary": {"rows": 0}, "batch": None, "errors": {key: [message]}})
        sys.exit(2)

    def handle(self, *args: Any, **options: Any) -> None:
        credential = Credential.objects.filter(label=options["label"]).first()
        if credential is None:
            self.refuse("label", f"No credential is labelled {options['label']!r}.")
        user = system_user()
        if options.get("user"):
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                self.refuse("user", f"No user is called {options['user']!r}.")
        template, defaults = None, None
        if options.get("template"):
            template = self.template(options["template"], user)
            try:
                defaults = bulk_rows.template_defaults(template, credential.provider)
            except bulk_rows.FileRefused as exc:
                self.refuse("template", str(exc))
        path = Path(options["file"])
        try:
            if path.is_file() and path.stat().st_size > bulk_rows.MAX_BYTES:
                raise bulk_rows.FileRefused(
                    f"{path} is larger than {bulk_rows.MAX_BYTES // 1048576} MB, the most a bulk create takes."
                )
            data = path.read_bytes()
            report = bulk_rows.validate_file(path.name, data, credential, defaults)
        except OSError as exc:
            self.refuse("file", f"Cannot read {path}: {exc.strerror or exc.__class__.__name__}.")
        except bulk_rows.FileRefused as exc:
            self.refuse("file", str(exc))
        summary = {
            "rows": len(report.rows),
            "ready": len(report.ready),
            "invalid": report.count("invalid"),
            "duplicate": report.count("duplicate"),
            "blank": report.blank_rows,
        }
        if options["dry_run"] or len(report.ready) < len(report.rows):
            for row in report.rows:
                self.print(row_line(row.number, None, row.status, None, row_errors(row.errors)))
            self.print({"summary": summary, "batch": None, "errors": {}})
            sys.exit(0 if len(report.ready) == len(report.rows) else 2)
        batch = services.do_upload_batch(
            report, credential=credential, file_name=path.name, acting_user=user, template=template
        )
        if options["no_wait"]:
            batch = services.do_start_batch(batch, acting_user=user)
            for row in report.rows:
                self.print(row_line(row.number, None, "queued", None, {}))
            self.print({"summary": {**summary, "queued": summary["ready"]}, "batch": batch.pk, "errors": {}})
            return
        batch = services.do_start_batch(batch, acting_user=user, wait=True)
        failed = False
        for row in BatchRow.objects.filter(batch=batch).select_related("conversation").order_by("number"):
            if row.conversation is None:
                failed = failed or row.status != RowStatus.CREATED
                self.print(row_line(row.number, None, row.status, None, row_errors(row.errors)))
                continue
            code, output = outcome(row.conversation)
            failed = failed or code != 0
            self.print(
                row_line(
                    row.number,
                    output["id"],
                    output["status"],
                    output.get("external_id"),
                    output.get("errors", {}),
                )
            )
        counts = services.counts(batch)
        summary.update(created=counts[RowStatus.CREATED], failed=counts[RowStatus.FAILED])
        self.print({"summary": summary, "batch": batch.pk, "errors": {}})
        if failed:
            sys.exit(1)

    def template(self, value: str, user: Any) -> ConversationTemplate:
        """The template named (or numbered) ``value`` among those ``user`` may use: their own first."""
        usable = usable_templates(user)
        by_id = Q(pk=int(value)) if value.isascii() and value.isdigit() and len(value) < 10 else Q()
        found = list(usable.filter(Q(name=value) | by_id))
        own = [t for t in found if t.owner_id == user.pk]
        if len(found) == 1 or len(own) == 1:
            return (own or found)[0]
        if found:
            ids = ", ".join(str(t.pk) for t in found)
            self.refuse("template", f"Several templates are called {value!r}: give one's id ({ids}).")
        self.refuse("template", f"No template {value!r} that this user may use (their own or a shared one).")


def row_line(number: int, pk: int | None, status: str, external_id: str | None, errors: dict) -> dict:
    return {"row": number, "id": pk, "status": status, "external_id": external_id, "errors": errors}


def row_errors(errors: list[dict[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for error in errors:
        out.setdefault(error["column"], []).append(error["message"])
    return out
