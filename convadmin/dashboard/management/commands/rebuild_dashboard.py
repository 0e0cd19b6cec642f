from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from convadmin.dashboard import rollup


class Command(BaseCommand):
    help = "Count the dashboard's figures again from the records (all of them, or the last --days)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, help="only records created in the last DAYS days")

    def handle(self, *args: Any, days: int | None = None, **options: Any) -> None:
        start = timezone.now() - timedelta(days=days) if days else None
        rows = rollup.rebuild_outcomes(start)
        calls = rollup.rebuild_latency() if not days else rollup.roll_up_latency()
        self.stdout.write(f"{rows} outcome rows, {calls} create calls counted.")
