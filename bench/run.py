#!/usr/bin/env python
"""`make bench`: convadmin's inspect pages at a million records, side by side with the Django admin.

1. Creates (once) the PostgreSQL database ``convadmin_bench`` on ``BENCH_PG`` (default
   ``postgres://postgres@127.0.0.1:5432/``), migrates it, and seeds ``BENCH_ROWS`` (default 1,000,000)
   conversation records with users, credentials and participants by COPY, secondary indexes dropped
   during the load and rebuilt after. A database already holding the rows is not seeded again.
2. Times, with the Django test client and a logged-in superuser, our list page (first page, pages
   followed 20 deep, a cursor 500,000 rows deep, the last page, a filtered page, two searches) and the
   admin changelist for the same rows and filters (COUNT(*) + OFFSET), with the queries per page.
3. Creates 200 conversations through ``do_create_conversation`` against the sandbox (Twilio, on
   loopback, in its own process) and reports the service's wall time minus the provider round trips
   its Exchange rows measured: our overhead per create.
4. Runs ``export_conversations`` (JSONL and CSV) over every row in a subprocess: rows/s and peak RSS.
5. Prints a table and writes it to bench/results.md with the machine and the date.

Environment: BENCH_PG, BENCH_DB (convadmin_bench), BENCH_ROWS, BENCH_REPEAT (timed runs per page, 9),
BENCH_CREATES (200), BENCH_RESEED=1 to drop and seed again.
"""

from __future__ import annotations

import html
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432/")
DB = os.environ.get("BENCH_DB", "convadmin_bench")
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "9"))
CREATES = int(os.environ.get("BENCH_CREATES", "200"))
PAGE = 100  # the admin's list_per_page; our list shows the same number of rows
USERS, CREDENTIALS_PER_PROVIDER = 200, 10
PROVIDERS = ("mixin", "twilio", "highlevel", "msgraph")
START = datetime(2024, 1, 1, tzinfo=UTC)
COMMON = "vip-customer"  # a participant in about 1 % of the records
TABLE = "conversations_conversation"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- database -------------------------------------------------------------------------------------


def ensure_database() -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(SERVER + "postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone()
        if exists and os.environ.get("BENCH_RESEED") == "1":
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DB)))
            exists = None
        if not exists:
            log(f"creating database {DB}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))


def setup_django() -> None:
    from cryptography.fernet import Fernet

    os.environ["DATABASE_URL"] = SERVER + DB
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["DEBUG"] = "0"
    os.environ["SECURE_COOKIES"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + Fernet.generate_key().decode())
    # A fresh key each run: the seeded secrets are never read; the sandbox credential is re-stored below.
    os.environ["ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    import django

    warnings.filterwarnings("ignore", "No directory at")  # whitenoise: no collectstatic for the bench
    django.setup()  # no setup_test_environment(): its instrumented template rendering would skew the timings


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- seeding --------------------------------------------------------------------------------------


def _participants(rng: random.Random, provider: str, i: int) -> list[str]:
    people = []
    for _ in range(1 if provider == "highlevel" else rng.randint(1, 5)):
        h = f"{rng.getrandbits(128):032x}"
        if provider == "highlevel":
            people.append(h[:20])  # a contact id
        elif provider == "mixin":
            people.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}")
        elif provider == "twilio":
            people.append(f"+1555{int(h[:8], 16) % 10**7:07d}" if h[8] < "8" else f"agent-{int(h[:6], 16)}")
        else:
            people.append(f"user{int(h[:6], 16)}@contoso.example")
    if i % 100 == 7:
        people.append(COMMON)
    return people


def _external_id(rng: random.Random, provider: str) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return {
        "mixin": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}",
        "twilio": f"CH{h}",
        "highlevel": h[:20],
        "msgraph": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
    }[provider]


def _rows(credentials: dict[str, list[int]], users: list[int]):
    rng = random.Random(20260301)
    step = timedelta(seconds=60)
    when = START
    for i in range(ROWS):
        if i % 7:  # every 7th record shares the previous one's timestamp: ties on created_at
            when += step + timedelta(microseconds=rng.randrange(10**6))
        provider = PROVIDERS[rng.randrange(4)]
        roll = rng.random()
        status = "created" if roll < 0.85 else "failed" if roll < 0.97 else "pending"
        people = _participants(rng, provider, i)
        name = "" if provider == "highlevel" else f"Order {i} follow-up"
        external_id = _external_id(rng, provider) if status == "created" else ""
        failed = status == "failed"
        yield (
            provider,
            credentials[provider][rng.randrange(CREDENTIALS_PER_PROVIDER)],
            users[rng.randrange(len(users))],
            status,
            name,
            json.dumps(people),
            len(people),
            " ".join([name, external_id, *people]).lower(),
            json.dumps({"name": name, "participants": people}),
            "{}",
            "[]",
            external_id,
            "Participant address is invalid" if failed else "",
            "50407" if failed else "",
            400 if failed else None,
            False,
            when,
            when + timedelta(milliseconds=250) if status != "pending" else None,
        )


COLUMNS = (
    "provider, credential_id, created_by_id, status, name, participants, participant_count, search_text, "
    "request_body, response_body, provider_participants, external_id, error_message, error_code, "
    "error_status, outcome_unknown, created_at, completed_at"
)


def seed() -> str:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from convadmin.credentials.models import Credential

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")  # noqa: S608 - a constant
        have = cursor.fetchone()[0]
    if have >= ROWS:
        return f"already seeded ({have:,} rows)"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE} RESTART IDENTITY CASCADE")
    User = get_user_model()
    User.objects.bulk_create(
        [User(username=f"bench-user-{i}", password="!", is_active=True) for i in range(USERS)],
        ignore_conflicts=True,
    )
    users = list(User.objects.filter(username__startswith="bench-user-").values_list("id", flat=True))
    credentials: dict[str, list[int]] = {}
    for provider in PROVIDERS:
        for i in range(CREDENTIALS_PER_PROVIDER):
            credential = Credential.objects.filter(label=f"bench {provider} {i}").first()
            if credential is None:
                credential = Credential(provider=provider, label=f"bench {provider} {i}", settings={})
                credential.set_secrets({"secret": f"bench-secret-{provider}-{i}-0123456789"})
                credential.save()
            credentials.setdefault(provider, []).append(credential.pk)

    raw = connection.connection  # psycopg 3
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
            [TABLE, TABLE],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        raw.commit()
        log(f"seeding {ROWS:,} rows by COPY ({len(indexes)} secondary indexes dropped during the load)")
        with cursor.copy(f"COPY {TABLE} ({COLUMNS}) FROM STDIN") as copy:
            for n, row in enumerate(_rows(credentials, users), 1):
                copy.write_row(row)
                if n % 200_000 == 0:
                    log(f"  {n:,} rows")
        raw.commit()
        loaded = time.perf_counter()
        log(f"  loaded in {loaded - started:.0f} s; rebuilding indexes")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SET max_parallel_maintenance_workers = 2")
        for name, definition in indexes:
            cursor.execute(definition)
            raw.commit()
            log(f"  {name}")
        cursor.execute(f"VACUUM (ANALYZE) {TABLE}")
        raw.commit()
    return f"seeded {ROWS:,} rows in {time.perf_counter() - started:.0f} s"


# --- measuring pages ------------------------------------------------------------------------------


def _queries(client, url: str) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    return {"queries": len(queries), "count": "COUNT(" in sql, "offset": "OFFSET" in sql, "url": url}


def timed(client, ours: str, admin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Median ms of each page, the two timed in turns so that other load on the machine hits both alike."""
    results = (_queries(client, ours), _queries(client, admin))  # also warms caches and plans
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEAT):
        for url, samples in zip((ours, admin), times, strict=True):
            t = time.perf_counter()
            client.get(url)
            samples.append((time.perf_counter() - t) * 1000)
    for result, samples in zip(results, times, strict=True):
        result["ms"] = statistics.median(samples)
    return results


def measure_pages() -> list[tuple[str, dict | None, dict | None]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from convadmin.lists.keyset import encode_cursor

    admin_user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin_user)

    def cursor_at(offset: int) -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT created_at, id FROM {TABLE} ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",  # noqa: S608
                [offset],
            )
            return encode_cursor(*cursor.fetchone())

    with connection.cursor() as cursor:  # a participant of one record half-way down: a needle in the haystack
        cursor.execute(
            f"SELECT participants->>0 FROM {TABLE} ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",  # noqa: S608
            [ROWS // 2],
        )
        rare = quote(cursor.fetchone()[0])
    ours = f"/conversations/?size={PAGE}"
    admin = "/admin/conversations/conversation/"
    followed = ours
    for _ in range(19):  # click "Older" 19 times: page 20
        page = client.get(followed).content.decode()
        followed = html.unescape(re.search(r'<a href="([^"]+)"[^>]*rel="next"', page).group(1))
    deep, last = ROWS // 2, ROWS - PAGE + 1
    pages = [
        ("first page", ours, admin),
        ("page 20 (Older x19)", followed, f"{admin}?p=20"),
        (f"{deep:,} rows deep", f"{ours}&after={cursor_at(deep - 1)}", f"{admin}?p={deep // PAGE + 1}"),
        ("last page", f"{ours}&after={cursor_at(last - 1)}", f"{admin}?p={ROWS // PAGE}"),
        (
            "filter: Twilio + failed",
            f"{ours}&provider=twilio&status=failed",
            f"{admin}?provider__exact=twilio&status__exact=failed",
        ),
        ("search: one participant", f"{ours}&q={rare}", f"{admin}?q={rare}"),
        ("search: 1 % of records", f"{ours}&q={COMMON}", f"{admin}?q={COMMON}"),
        ("search: external id prefix", f"{ours}&q=ch0a1b", f"{admin}?q=ch0a1b"),
    ]
    for _ in range(10):  # warm up the process and the database before the first timed page
        client.get(ours)
        client.get(admin)
    return [(label, *timed(client, our_url, admin_url)) for label, our_url, admin_url in pages]


# --- create overhead ------------------------------------------------------------------------------


def measure_creates() -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from convadmin.conversations.models import Conversation
    from convadmin.conversations.services import do_create_conversation
    from convadmin.credentials.services import do_add_credential

    user = get_user_model().objects.get(username="bench-admin")
    with tempfile.TemporaryDirectory() as tmp:
        creds_file = Path(tmp) / "creds.json"
        sandbox = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "providers.sandbox",
                "--seed",
                "bench",
                "--quiet",
                "--credentials-out",
                str(creds_file),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(4):  # one "name url" line per emulated API, once listening
                sandbox.stdout.readline()
            data = json.loads(creds_file.read_text())["twilio"]
            credential = do_add_credential(
                "twilio", "bench sandbox twilio", data, acting_user=user, replace=True
            )
            overheads, walls, rounds = [], [], []
            for i in range(CREATES + 10):
                body = {"FriendlyName": f"Bench {i}", "Participant": [{"identity": f"bench-agent-{i}"}]}
                t = time.perf_counter()
                conversation = do_create_conversation(
                    body, credential=credential, acting_user=user, wait=True
                )
                wall = (time.perf_counter() - t) * 1000
                assert conversation.status == "created", conversation.error_message
                durations = list(conversation.exchanges.values_list("duration_ms", flat=True))
                provider_ms, exchanges = sum(durations), len(durations)
                if i >= 10:  # the first ones warm connections and caches
                    walls.append(wall)
                    rounds.append(provider_ms)
                    overheads.append(wall - provider_ms)
            # Keep the data set at exactly ROWS records for the next run (the audit rows stay: append-only).
            Conversation.objects.filter(credential=credential).delete()
        finally:
            sandbox.terminate()
            sandbox.wait()

    def pct(values: list[float], p: float) -> float:
        return (
            statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]
        )

    return {
        "n": len(overheads),
        "exchanges": exchanges,
        "overhead_p50": statistics.median(overheads),
        "overhead_p95": pct(overheads, 95),
        "wall_p50": statistics.median(walls),
        "provider_p50": statistics.median(rounds),
    }


# --- export ---------------------------------------------------------------------------------------


def measure_export(fmt: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "export_conversations", "--format", fmt],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    lines = size = 0
    while chunk := proc.stdout.read(1 << 20):
        lines += chunk.count(b"\n")
        size += len(chunk)
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over every child so far).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t
    assert proc.returncode == 0, proc.returncode
    rows = lines - (1 if fmt == "csv" else 0)
    return {
        "fmt": fmt,
        "rows": rows,
        "seconds": seconds,
        "rows_s": rows / seconds,
        "rss_mb": usage.ru_maxrss / 1024,
        "mb": size / 1e6,
    }


# --- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    mem = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import django

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{os.cpu_count()} x {cpu}",
        "memory": f"{mem / 1024 / 1024:.1f} GiB",
        "postgresql": pg,
        "python": platform.python_version(),
        "django": django.get_version(),
    }


def _q(m: dict) -> str:
    flags = [f for f, on in (("COUNT", m["count"]), ("OFFSET", m["offset"])) if on]
    return f"{m['queries']}" + (f" ({', '.join(flags)})" if flags else "")


def report(seeded: str, pages, creates, exports) -> str:
    info = machine()
    first_ms = pages[0][1]["ms"]
    deepest = max(m["ms"] for _, m, _ in pages[:4])
    speedups = [a["ms"] / o["ms"] for _, o, a in pages]
    out = [
        "# convadmin benchmark",
        "",
        f"`make bench` ({'; '.join(f'{k}: {v}' for k, v in info.items())}). Data: {seeded}; {ROWS:,} conversation",
        f"records, {USERS} users, {len(PROVIDERS) * CREDENTIALS_PER_PROVIDER} credentials, 1-5 participants each. Pages: median of "
        f"{REPEAT} runs, ours and the admin's taken in turns, through the Django test client (full middleware and",
        f"templates, no network), {PAGE} rows a page on both sides, logged in as a superuser. COUNT / OFFSET: the",
        "page's SQL uses them.",
        "",
        "## List page vs the Django admin changelist",
        "",
        "| page | ours (ms) | queries | admin (ms) | queries | admin ÷ ours |",
        "|---|---:|---|---:|---|---:|",
    ]
    for (label, o, a), speedup in zip(pages, speedups, strict=True):
        out.append(f"| {label} | {o['ms']:.1f} | {_q(o)} | {a['ms']:.1f} | {_q(a)} | {speedup:.1f}x |")
    out += [
        "",
        "## Create path overhead (provider faked on loopback)",
        "",
        f"{creates['n']} creates through `do_create_conversation` against the sandbox's Twilio API (its own process on",
        f"127.0.0.1), {creates['exchanges']} HTTP exchanges each (create, read back, participants). Overhead = the service's wall",
        "time minus the provider round trips its Exchange rows recorded (validation, two transactions, audit rows,",
        "encryption, redaction, storing exchanges).",
        "",
        "| | p50 (ms) | p95 (ms) |",
        "|---|---:|---:|",
        f"| our overhead per create | {creates['overhead_p50']:.1f} | {creates['overhead_p95']:.1f} |",
        f"| whole create (wall) | {creates['wall_p50']:.1f} | |",
        f"| provider round trips | {creates['provider_p50']:.1f} | |",
        "",
        "## Streaming export (`manage.py export_conversations`, every row, in a subprocess)",
        "",
        "| format | rows | seconds | rows/s | output | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in exports:
        out.append(
            f"| {e['fmt']} | {e['rows']:,} | {e['seconds']:.1f} | {e['rows_s']:,.0f} | {e['mb']:.0f} MB | {e['rss_mb']:.0f} MB |"
        )
    verdicts = [
        (
            "list ≥ 10x faster than the admin changelist",
            min(speedups) >= 10,
            f"{min(speedups):.1f}x at worst, {statistics.median(speedups):.0f}x median",
        ),
        (
            "deep pages as fast as page 1",
            deepest <= 2 * first_ms,
            f"page 1 {first_ms:.1f} ms, deepest {deepest:.1f} ms",
        ),
        ("create overhead ≤ 15 ms p50", creates["overhead_p50"] <= 15, f"{creates['overhead_p50']:.1f} ms"),
        (
            "export RSS flat (< 150 MB)",
            all(e["rss_mb"] < 150 for e in exports),
            ", ".join(f"{e['fmt']} {e['rss_mb']:.0f} MB" for e in exports),
        ),
    ]
    out += ["", "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    out += [f"| {name} | {'yes' if ok else '**no**'} | {text} |" for name, ok, text in verdicts]
    return "\n".join(out) + "\n"


def main() -> int:
    ensure_database()
    setup_django()
    migrate()
    seeded = seed()
    log(seeded)
    log("timing pages")
    pages = measure_pages()
    log("timing creates")
    creates = measure_creates()
    log("timing exports")
    exports = [measure_export("jsonl"), measure_export("csv")]
    text = report(seeded, pages, creates, exports)
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():
        text += "\n" + notes.read_text()
    (ROOT / "bench" / "results.md").write_text(text)
    print(text)
    log(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
