#!/usr/bin/env python
"""`make bench-bulk`: a 1,000-row bulk batch against the sandbox, with one job worker killed mid-call (issue 13).

Starts the stack of ``bench/faults.py`` (the sandbox, PostgreSQL ``convadmin_bulkbench`` — dropped at the end — or
SQLite with ``BULK_DB=sqlite``, gunicorn and two ``db_worker``\\ s), logs in over HTTP as a Support user, uploads a
Twilio file of ``BULK_ROWS`` rows (1,000) through the Bulk create page and sends it. Some rows carry the sandbox's
``fail-500`` (every 100th) and ``rate-limit`` (3 rows) triggers; the middle row carries ``slow`` (its reply is
held past ``PROVIDER_DEADLINE``). While that row's call is in flight, the worker holding it is killed with
SIGKILL; the other worker goes on alone and, once the killed row's claim has run out, settles it by look-up.
The batch page's progress fragment is polled over HTTP the whole time (the most rows seen in flight).

Then it checks: every row ends created or failed; the sandbox holds each conversation at most once and received
each plain row's create exactly once (0 duplicates); the page's created / failed / pending equal the database's.
Prints a Markdown section and writes it to bench/results.md ("## Bulk batch", replaced on each run); exits 1 when
a check fails. Environment: BULK_ROWS, BULK_DB (postgres | sqlite), BULK_LIMIT (e.g. ``10,1,2``: the bench
credential's requests, seconds and concurrency; default the Twilio defaults), BULK_OUT (another results file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FAULTS_DB", os.environ.get("BULK_DB", "postgres"))

from bench import faults  # noqa: E402 - after FAULTS_DB
from bench.faults import Stack, Web, log  # noqa: E402

ROWS = int(os.environ.get("BULK_ROWS", "1000"))
LIMIT = os.environ.get("BULK_LIMIT", "")
LABEL = faults.LABELS["twilio"]
DEADLINE, SLOW = 5.0, 8.0
HEADING = "## Bulk batch"
RESULTS = Path(os.environ.get("BULK_OUT", ROOT / "bench" / "results.md"))


def trigger(n: int) -> str:
    if n == ROWS // 2:
        return "slow"
    if n % 100 == 50:
        return "fail-500"
    if n in (ROWS // 4 + 10, ROWS // 2 + 100, 3 * ROWS // 4 + 10):
        return "rate-limit"
    return ""


def rows_file(tag: str) -> bytes:
    lines = ["FriendlyName,UniqueName,participant1.identity"]
    for n in range(1, ROWS + 1):
        lines.append(f"{trigger(n)} Order {n}".strip() + f",{tag}-{n},agent-{n}")
    return ("\n".join(lines) + "\n").encode()


def progress(web: Web, pk: int) -> dict[str, int]:
    """The numbers the batch page's progress fragment shows (what a person sees)."""
    html = web.client.get(f"/bulk/{pk}/", headers={"HX-Request": "true"}).text
    numbers = {
        k.lower(): int(v) for k, v in re.findall(r"(Created|Failed|Pending): <strong>(\d+)</strong>", html)
    }
    flight = re.search(r"In flight: (\d+) of (\d+)", html)
    numbers["in_flight"] = int(flight.group(1)) if flight else 0
    numbers["status"] = re.search(r'id="batch-status">([^<]+)<', html).group(1)
    return numbers


def main() -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bulkbench-"))
    stack = Stack(tmp, db_name="convadmin_bulkbench", deadline=DEADLINE, workers=2)
    if LIMIT:
        stack.env["BULK_BENCH_LIMITS"] = json.dumps({LABEL: [float(x) for x in LIMIT.split(",")]})
    failed = True
    try:
        stack.start(slow_seconds=SLOW)
        from django.db import connection
        from django_tasks_db.models import DBTaskResult

        from convadmin.bulk.models import Batch, BatchRow
        from convadmin.conversations.models import Conversation

        web = Web(stack.base)
        tag = f"bb{os.getpid()}"
        upload = web.client.post(
            "/bulk/",
            data={"credential": str(stack.credential_ids["twilio"]), "csrfmiddlewaretoken": web.csrf},
            files={"file": ("bench.csv", rows_file(tag), "text/csv")},
        )
        pk = int(re.fullmatch(r"/bulk/(\d+)/", upload.headers["location"]).group(1))
        web.post(f"/bulk/{pk}/start/", {})
        sent_at = time.monotonic()
        batch = Batch.objects.get(pk=pk)
        log(
            f"batch {pk}: {ROWS} rows, {batch.rate_requests} per {batch.rate_seconds:g} s, {batch.concurrency} at once"
        )

        slow = BatchRow.objects.get(batch_id=pk, number=ROWS // 2 + 1)
        killed_at = killed_row = None
        most_in_flight, samples = 0, 0
        while True:
            connection.close()
            shown = progress(web, pk)
            samples += 1
            most_in_flight = max(most_in_flight, shown["in_flight"])
            if killed_at is None:
                record = Conversation.objects.filter(
                    idempotency_key=slow.key, status="pending", attempts=1
                ).first()
                holder = BatchRow.objects.get(pk=slow.pk).claimed_by.removeprefix("job ")
                if record is not None and holder:
                    worker = DBTaskResult.objects.get(pk=holder).worker_ids[-1]
                    stack.workers.pop(worker).send_signal(signal.SIGKILL)
                    killed_at, killed_row = time.monotonic(), slow.number
                    done = shown["created"] + shown["failed"]
                    log(f"killed worker {worker} mid-call on row {killed_row} ({done} rows settled)")
            if shown["status"] != "Running":
                break
            if time.monotonic() - sent_at > 1800:
                raise RuntimeError("the batch did not finish in 30 minutes")
            time.sleep(0.5)
        elapsed = time.monotonic() - sent_at

        connection.close()
        batch = Batch.objects.get(pk=pk)
        statuses = Counter(BatchRow.objects.filter(batch=batch).values_list("status", flat=True))
        page = progress(web, pk)
        truth = {
            "created": statuses["created"],
            "failed": statuses["failed"],
            "pending": statuses["ready"] + statuses["pending"],
        }
        settled_slow = Conversation.objects.get(idempotency_key=slow.key)
        settled = dict(BatchRow.objects.filter(batch=batch).values_list("number", "settled_at"))
        slow_done = (settled.pop(slow.number) - batch.started_at).total_seconds()
        others = (max(settled.values()) - batch.started_at).total_seconds()
        state = web.client.get(stack.urls["twilio"] + "/__sandbox__/state").json()
        held = Counter(
            c["unique_name"] for c in state["conversations"]["twilio"] if c["unique_name"].startswith(tag)
        )
        posts = Counter(
            m.group(1)
            for r in state["received"]
            if r["path"].endswith("/ConversationWithParticipants")
            and (m := re.search(rf"UniqueName=({tag}-\d+)", r["body"]))
        )
        plain = [f"{tag}-{n}" for n in range(1, ROWS + 1) if trigger(n) in ("", "slow")]
        duplicates = sum(n - 1 for n in held.values() if n > 1)
        resent = sum(1 for key in plain if posts[key] != 1)
        page_right = {k: page[k] for k in truth} == truth
        checks = {
            "every row created or failed": set(statuses) <= {"created", "failed"},
            "0 conversations twice at the sandbox": duplicates == 0,
            "each plain row's create received once": resent == 0,
            "the page's numbers equal the database's": page_right,
            "the killed row settled by look-up": killed_at is not None
            and (settled_slow.status, settled_slow.lookup.get("result")) == ("created", "found"),
            "the batch is done": batch.status == "done",
        }
        rate = sum(statuses.values()) / elapsed
        load = os.getloadavg()[0]
        report = (
            f"{HEADING}: {ROWS:,} rows against the sandbox, a worker killed mid-call (issue 13, `make bench-bulk`)\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; database {faults.DB_KIND}; 2 `db_worker`s, one "
            f"killed with SIGKILL while the row it held was in flight; PROVIDER_DEADLINE {DEADLINE:g} s (the "
            f"`slow` reply is held {SLOW:g} s); load average {load:.2f} at the end (2 cores, shared).\n\n"
            "| rows | pace (credential) | concurrency (senders; rows in flight at most) | time | rows/s | created "
            "| failed | pending | duplicates at the sandbox | plain rows sent twice | page = database |\n"
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
            f"| {ROWS:,} | {batch.rate_requests} per {batch.rate_seconds:g} s | {batch.concurrency}; "
            f"{most_in_flight} | {elapsed:.0f} s | {rate:.1f} | {truth['created']} | {truth['failed']} "
            f"| {truth['pending']} | {duplicates} | {resent} | "
            f"{'yes' if page_right else '**no**'} |\n\n"
            f"Triggers: {sum(1 for n in range(1, ROWS + 1) if trigger(n) == 'fail-500')} rows `fail-500` (HTTP 500: "
            "looked up, not found, failed with the outcome marked unknown), "
            f"{sum(1 for n in range(1, ROWS + 1) if trigger(n) == 'rate-limit')} rows `rate-limit` (429 + "
            "`Retry-After: 2` every time: the credential waits 2 s, 6 attempts, then failed), row "
            f"{killed_row} `slow`, whose worker was killed {(killed_at or sent_at) - sent_at:.0f} s into the run. "
            "The other worker went on alone (every other row settled by "
            f"{others:.0f} s); it took the killed row over once that row's claim ran out (the record's lease, "
            f"2 x PROVIDER_DEADLINE + 30 s, + 5 s) and settled it by look-up at {slow_done:.0f} s: "
            f"{settled_slow.status}, {settled_slow.attempts} attempts, look-up "
            f"{settled_slow.lookup.get('result', '-')}. Progress polled {samples} times over HTTP. What limits "
            "the rate: the credential's pace, each `rate-limit` row (it holds the whole credential 2 s five "
            "times), the machine (every create writes its record, exchanges and audit rows), and after the kill a "
            "single worker (a sender is one job: the batch's other senders wait in the queue behind it). Checks: "
            + "; ".join(f"{name} — {'met' if ok else '**missed**'}" for name, ok in checks.items())
            + ".\n"
        )
        print(report)
        write(report)
        failed = not all(checks.values())
        log(f"{'FAILED' if failed else 'ok'} in {time.monotonic() - started:.0f} s")
    finally:
        stack.close()
        if failed:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def write(section: str) -> None:
    """Replace this bench's section of results.md (or add it at the end, where bench/run.py keeps it)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(HEADING)
    if start < 0:
        RESULTS.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + len(HEADING))
    RESULTS.write_text(text[:start] + section + (text[end:] if end >= 0 else ""))


if __name__ == "__main__":
    sys.exit(main())
