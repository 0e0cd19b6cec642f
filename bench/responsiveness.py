#!/usr/bin/env python
"""`make bench-http`: the site over real HTTP (gunicorn, 2 workers, PostgreSQL) while provider calls are slow.

Uses the stack of ``bench/faults.py`` (sandbox, database ``convadmin_http`` dropped at the end, gunicorn with
the README's production flags, ``db_worker``\\ s), a logged-in httpx client (cookie jar + CSRF token), and a
table of ``HTTP_ROWS`` (10,000) seeded records.

1. Create overhead: with no job worker running, ``HTTP_CREATES`` (200) POSTs of the create form (as htmx
   sends it) — each saves the pending record, enqueues its job and answers the page — timed end to end;
   then two workers start and every record must settle as created (the time it took is reported).
2. Responsiveness: the list page's latency alone, then while 20 creates wait on a provider that answers
   after 25 s (the sandbox's ``slow`` trigger, ``--slow-seconds 25``) — two workers run them, the rest queue.

Prints a Markdown section with the load average; ``HTTP_OUT`` also writes it to a file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.faults import DB_KIND, USER, Stack, Web, log, records, web_form

ROWS = int(os.environ.get("HTTP_ROWS", "10000"))
CREATES = int(os.environ.get("HTTP_CREATES", "200"))
SLOW_CREATES = 20
#: Job workers while the slow creates run: 20, so that all 20 wait on the provider at once (each holds one).
SLOW_WORKERS = int(os.environ.get("HTTP_SLOW_WORKERS", "20"))
LIST_SECONDS = float(os.environ.get("HTTP_LIST_SECONDS", "40"))
PROVIDER = "twilio"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def seed(stack: Stack, rows: int) -> None:
    from django.contrib.auth import get_user_model

    from convadmin.conversations.models import Conversation
    from convadmin.credentials.models import Credential

    user = get_user_model().objects.get(username=USER)
    credentials = {c.provider: c for c in Credential.objects.all()}
    providers = sorted(credentials)
    batch = []
    for i in range(rows):
        provider = providers[i % len(providers)]
        name = f"Seeded conversation {i}"
        participants = [f"agent-{i % 97}", f"customer-{i}"]
        batch.append(
            Conversation(
                provider=provider,
                credential=credentials[provider],
                created_by=user,
                status="created" if i % 10 else "failed",
                name=name,
                participants=participants,
                participant_count=2,
                search_text=f"{name} {' '.join(participants)}".lower(),
                request_body={"FriendlyName": name},
                external_id=f"CH{uuid.uuid4().hex}",
                idempotency_key=uuid.uuid4(),
            )
        )
    Conversation.objects.bulk_create(batch, batch_size=2000)


def time_service(stack: Stack, tag: str, count: int = 100) -> list[float]:
    """``do_create_conversation`` timed in this process (no HTTP, no page): the enqueue alone."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from bench.faults import cli_body
    from convadmin.conversations.services import do_create_conversation
    from convadmin.credentials.models import Credential

    connection.close()
    user = get_user_model().objects.get(username=USER)
    credential = Credential.objects.get(pk=stack.credential_ids[PROVIDER])
    times = []
    for i in range(count):
        body = cli_body(PROVIDER, "", f"{tag}y{i}")
        start = time.perf_counter()
        do_create_conversation(
            body, credential=credential, acting_user=user, idempotency_key=str(uuid.uuid4())
        )
        times.append(time.perf_counter() - start)
    return times


def time_list(web: Web, seconds: float) -> list[float]:
    """GET the list page (first page, 100 rows) back to back for ``seconds``; each wall time."""
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        reply = web.client.get("/conversations/")
        times.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"list page answered HTTP {reply.status_code}")
    return times


def main() -> int:
    if DB_KIND == "sqlite":
        print("bench-http measures PostgreSQL only", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    stack = Stack(tmp, db_name="convadmin_http", deadline=45.0, workers=0)
    lines = []
    try:
        stack.start(slow_seconds=25.0)
        log(f"seeding {ROWS} records")
        seed(stack, ROWS)
        web = Web(stack.base)
        htmx = {"HX-Request": "true", "HX-Current-URL": f"{stack.base}/conversations/new/"}
        web.client.get("/conversations/")  # warm both gunicorn workers' first request
        web.client.get("/conversations/")

        # 1. Create overhead: no worker runs, so the POST is the enqueue and the page only.
        log(f"{CREATES} creates with no worker running")
        tag = f"c{secrets.token_hex(4)}"
        times = []
        for i in range(CREATES):
            form = web_form(stack, PROVIDER, "", f"{tag}x{i}")
            start = time.perf_counter()
            reply = web.post("/conversations/new/", form, headers=htmx)
            times.append(time.perf_counter() - start)
            if reply.status_code != 200:
                raise RuntimeError(f"create answered HTTP {reply.status_code}")
        load_creates = os.getloadavg()
        service = time_service(stack, tag)
        pending = sum(1 for r in records(tag) if r.status == "pending")
        started = time.monotonic()
        for _ in range(2):
            stack.start_worker()
        while time.monotonic() - started < 600:
            rows = records(tag)
            if all(r.status != "pending" for r in rows):
                break
            time.sleep(1)
        settle_s = time.monotonic() - started
        statuses = {s: sum(1 for r in rows if r.status == s) for s in {r.status for r in rows}}
        lines += [
            f"**Create overhead** ({CREATES} POSTs of the create form as htmx sends it, one after another, "
            "no worker running): "
            f"p50 {ms(statistics.median(times))} ms, p95 {ms(pct(times, 0.95))} ms, max {ms(max(times))} ms "
            f"(target p50 ≤ 15 ms). Of that, the service alone (`do_create_conversation`: validate, prepare, "
            f"the pending record + audit row + job row in one transaction; {len(service)} calls in this process, "
            f"no HTTP, no page): p50 {ms(statistics.median(service))} ms, p95 {ms(pct(service, 0.95))} ms. "
            f"{pending} records pending with their jobs queued. Then 2 workers started: "
            f"all {len(rows)} settled in {settle_s:.1f} s ({statuses}). Load average during the creates: "
            f"{load_creates[0]:.2f} / {load_creates[1]:.2f} / {load_creates[2]:.2f}.",
            "",
        ]

        # 2. Responsiveness: the list page alone, then with 20 creates waiting on a 25 s provider.
        log("list page alone")
        quiet = time_list(web, LIST_SECONDS / 2)
        load_quiet = os.getloadavg()
        for _ in range(SLOW_WORKERS - len(stack.workers)):
            stack.start_worker()
        time.sleep(15)  # let the new workers finish starting (2 cores)
        log(f"{SLOW_CREATES} creates on a provider that answers after 25 s, {len(stack.workers)} job workers")
        tag = f"s{secrets.token_hex(4)}"
        submits: list[float] = []

        def submit(i: int) -> None:
            start = time.perf_counter()
            web.post("/conversations/new/", web_form(stack, PROVIDER, "slow", f"{tag}x{i}"), headers=htmx)
            submits.append(time.perf_counter() - start)

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(SLOW_CREATES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        end = time.monotonic() + 15
        while time.monotonic() < end and sum(r.attempts > 0 for r in records(tag)) < min(
            SLOW_CREATES, SLOW_WORKERS
        ):
            time.sleep(0.2)
        in_flight = sum(r.attempts > 0 and r.status == "pending" for r in records(tag))
        busy = time_list(web, min(LIST_SECONDS, 18))
        load_busy = os.getloadavg()
        rows = records(tag)
        waiting = sum(1 for r in rows if r.status == "pending")
        lines += [
            "| list page (first page, 100 rows) | requests | p50 ms | p95 ms | max ms | load average (1 min) |",
            "|---|---|---|---|---|---|",
            f"| alone | {len(quiet)} | {ms(statistics.median(quiet))} | {ms(pct(quiet, 0.95))} "
            f"| {ms(max(quiet))} | {load_quiet[0]:.2f} |",
            f"| {in_flight} creates waiting on a 25 s provider | {len(busy)} | {ms(statistics.median(busy))} "
            f"| {ms(pct(busy, 0.95))} | {ms(max(busy))} | {load_busy[0]:.2f} |",
            "",
            f"The 20 slow creates were submitted at once (20 concurrent POSTs): each answered in "
            f"{ms(statistics.median(submits))} ms p50, {ms(max(submits))} ms max (2 gunicorn workers, 20 requests at "
            f"once: they queue). {len(stack.workers)} job workers; {in_flight} creates had been claimed and were "
            f"waiting on the provider when the list timing started, {waiting} were still pending when it ended "
            f"(the provider answers after 25 s; the client's read timeout is 20 s). Records in the table: "
            f"{ROWS + CREATES + SLOW_CREATES} ({ROWS} seeded).",
        ]
        report = "\n".join(lines) + "\n"
        print(report)
        if os.environ.get("HTTP_OUT"):
            Path(os.environ["HTTP_OUT"]).write_text(report)
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
