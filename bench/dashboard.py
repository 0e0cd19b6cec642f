#!/usr/bin/env python
"""The dashboard page's time over ``bench/run.py``'s seeded records (its own database by default).

Seeds like ``make bench`` (BENCH_ROWS records by COPY, which sends no signal), counts the dashboard's rollup
from them (``rebuild_dashboard``, timed), adds a latency histogram per credential and day shaped like the
one the job keeps, then times the dashboard (median of BENCH_REPEAT) for the last 14, 30 and 90 seeded days,
filtered by provider and by credential. Prints a Markdown table.
Environment: as bench/run.py; BENCH_DB defaults to convadmin_dashboard_bench.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("BENCH_DB", "convadmin_dashboard_bench")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run

#: Columns the records gained after bench/run.py's COPY was written (NOT NULL, no database default).
LATER_COLUMNS = {
    "lookup": "{}",
    "existing_conversation_id": "",
    "action": "",
    "attempts": 1,
    "action_result": "{}",
}


def _with_later_columns() -> None:
    if "action_result" in run.COLUMNS:
        return
    rows = run._rows
    run.COLUMNS += ", " + ", ".join(LATER_COLUMNS)
    run._rows = lambda *args: (row + tuple(LATER_COLUMNS.values()) for row in rows(*args))


def main() -> int:
    _with_later_columns()
    run.ensure_database()
    run.setup_django()
    run.migrate()
    seeded = run.seed()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from convadmin.conversations.models import Conversation
    from convadmin.dashboard import rollup
    from convadmin.dashboard.models import LATENCY_BUCKETS, DailyLatency, DailyOutcome, HourlyOutcome

    started = time.perf_counter()
    if DailyOutcome.objects.exists() and os.environ.get("BENCH_RESEED") != "1":
        rows, counted = HourlyOutcome.objects.count(), "reused"
    else:
        rows = rollup.rebuild_outcomes()
        counted = f"counted in {time.perf_counter() - started:.1f} s"
    run.log(f"rollup: {rows:,} rows, {counted}")
    last = Conversation.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    days = sorted(set(DailyOutcome.objects.values_list("day", flat=True)))
    if not DailyLatency.objects.exists():
        credentials = list(DailyOutcome.objects.values_list("provider", "credential_id").distinct())
        DailyLatency.objects.bulk_create(
            [
                DailyLatency(day=day, provider=p, credential_id=c, le_ms=le, count=n)
                for day in days
                for p, c in credentials
                for le, n in zip(LATENCY_BUCKETS[2:8], (5, 20, 9, 3, 1, 1), strict=True)
            ],
            batch_size=5000,
        )
    for table in ("dashboard_dailyoutcome", "dashboard_hourlyoutcome", "dashboard_dailylatency"):
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    until = last.date().isoformat()
    credential = DailyOutcome.objects.values_list("credential_id", flat=True).first()
    pages = [
        ("(reference: conversation list, first page)", None),
        ("last 14 days", f"?until={until}&days=14"),
        ("last 30 days", f"?until={until}&days=30"),
        ("last 90 days", f"?until={until}&days=90"),
        ("90 days, one provider", f"?until={until}&days=90&provider=twilio"),
        ("90 days, one credential", f"?until={until}&days=90&credential={credential}"),
    ]
    repeat = int(os.environ.get("BENCH_REPEAT", "9"))
    lines = [
        f"Dashboard over {Conversation.objects.count():,} records ({seeded}); rollup: {rows:,} hourly and {DailyOutcome.objects.count():,} daily rows, "
        f"{counted}; latency rows: {DailyLatency.objects.count():,}.",
        "",
        "| page | p50 (ms) | max (ms) | queries |",
        "|---|---:|---:|---:|",
    ]
    for name, query in pages:
        url = f"/conversations/dashboard/{query}" if query is not None else "/conversations/"
        queries: list[str] = []

        def count(execute, sql, *args, seen=queries):
            seen.append(sql)
            return execute(sql, *args)

        with connection.execute_wrapper(count):
            assert client.get(url).status_code == 200
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.get(url)
            samples.append((time.perf_counter() - t) * 1000)
        lines.append(f"| {name} | {statistics.median(samples):.1f} | {max(samples):.1f} | {len(queries)} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
