#!/usr/bin/env python
"""`make faults`: the fault matrix of issue 12, over real HTTP and the command line, on loopback only.

Starts the sandbox, a database (PostgreSQL ``convadmin_faults`` on ``FAULTS_PG``, dropped at the end, or SQLite
with ``FAULTS_DB=sqlite``), gunicorn (2 workers, the README's production flags) and two ``db_worker``\\ s; logs in
over HTTP (httpx, cookie jar, CSRF token) and, per provider, through the web form and ``create_conversation``:

provider 5xx, 429, timeout (``slow`` past ``PROVIDER_DEADLINE``), a byte-dripping reply, invalid JSON, the
connection reset before / after the provider processed the create, a job worker (web) or the command (CLI)
killed with SIGKILL mid-call, every database connection terminated mid-call (PostgreSQL), two concurrent Retry
POSTs (web), and a double submit (same create key, twice at once).

Then it waits for the leases of killed calls to run out, runs ``manage.py settle_conversations`` (twice,
``SETTLE_DELAY`` apart), and counts, per case: the records, the conversations the sandbox holds for the case's
tag (``GET /__sandbox__/state``), the creates it received, duplicates, records still pending, and lost
outcomes (created at the sandbox, no record ``created``). Prints a Markdown table; exits 1 when a target
(0 duplicates, 0 pending, 0 lost) is missed.

Environment: FAULTS_DB (postgres | sqlite), FAULTS_DB_NAME (convadmin_faults), FAULTS_PG (postgres://postgres@127.0.0.1:5432/), FAULTS_QUICK=1
(Twilio only, the key cases), FAULTS_PROVIDERS and
FAULTS_CASES (comma-separated subsets), FAULTS_DEADLINE (3 s), FAULTS_SLOW (8 s),
FAULTS_OUT (also write the table to this file), FAULTS_KEEP=1 (keep the database).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
QUICK = os.environ.get("FAULTS_QUICK") == "1"
DB_KIND = os.environ.get("FAULTS_DB", "postgres")
PG = os.environ.get("FAULTS_PG", "postgres://postgres@127.0.0.1:5432/")
DB_NAME = os.environ.get("FAULTS_DB_NAME", "convadmin_faults")
DEADLINE = float(os.environ.get("FAULTS_DEADLINE", "3"))
SLOW = float(os.environ.get("FAULTS_SLOW", "8"))
SETTLE_DELAY = 2
ALL = ("mixin", "twilio", "highlevel", "msgraph")
PROVIDERS = tuple(
    p for p in os.environ.get("FAULTS_PROVIDERS", "twilio" if QUICK else ",".join(ALL)).split(",") if p
)
LABELS = {p: f"Faults {p}" for p in ALL}
PASSWORD = secrets.token_urlsafe(12)
USER = "faults-support"

#: case -> (trigger word in the body, channels). "kill" and "dbkill" use ``slow`` and act mid-call.
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "5xx": ("fail-500", ("web", "cli")),
    "429": ("rate-limit", ("web", "cli")),
    "timeout": ("slow", ("web", "cli")),
    "drip": ("drip", ("web", "cli")),
    "invalid-json": ("invalid-json", ("web", "cli")),
    "reset-before": ("reset-before", ("web", "cli")),
    "reset-after": ("reset-after", ("web", "cli")),
    "kill -9": ("slow", ("web", "cli")),
    "db killed": ("slow", ("web", "cli")),
    "double retry": ("fail-once", ("web",)),
    "double submit": ("", ("web", "cli")),
}
#: Misses already reported and owned elsewhere: (case, column) -> why. Shown in the table, not failing the run;
#: delete an entry when its fix lands, so the case guards it from then on.
KNOWN: dict[tuple[str, str], str] = {}
QUICK_CASES = ("timeout", "reset-after", "kill -9", "db killed", "double retry", "double submit")


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the stack -------------------------------------------------------------------------------------


class Stack:
    """Sandbox, database, gunicorn and job workers as child processes; everything stopped in ``close``."""

    def __init__(self, tmp: Path, *, db_name: str = DB_NAME, deadline: float = DEADLINE, workers: int = 2):
        self.tmp = tmp
        self.db_name = db_name
        self.worker_count = workers
        self.procs: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        if DB_KIND == "sqlite":
            url = f"sqlite:///{tmp / 'faults.sqlite3'}"
        else:
            url = f"{PG}{db_name}?conn_max_age=600&conn_health_checks=true"
        from cryptography.fernet import Fernet

        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "CONVADMIN_NO_DOTENV": "1",
            "DEBUG": "0",
            "SECURE_COOKIES": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": url,
            "TASKS_BACKEND": "database",
            "PROVIDER_DEADLINE": str(deadline),
            "SETTLE_DELAY": str(SETTLE_DELAY),
            "PROVIDER_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        out = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def manage(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
            )
        return result

    def start(self, slow_seconds: float = SLOW) -> None:
        creds = self.tmp / "sandbox.json"
        sandbox = subprocess.Popen(
            [
                *(PY, "-m", "providers.sandbox", "--quiet", "--slow-seconds", str(slow_seconds)),
                *("--drip-seconds", "1", "--credentials-out", str(creds)),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=open(self.tmp / "sandbox.log", "ab"),  # noqa: SIM115
            text=True,
        )
        self.procs.append(sandbox)
        self.urls = dict(sandbox.stdout.readline().split() for _ in ALL)
        self.credentials = json.loads(creds.read_text())
        if DB_KIND != "sqlite":
            self.psql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
            self.psql(f"CREATE DATABASE {self.db_name}")
        log("migrating")
        self.manage("migrate", "--noinput")
        self.setup_django()
        self.seed()
        self.web = self.spawn(
            "gunicorn",
            [
                *(str(Path(PY).parent / "gunicorn"), "convadmin.wsgi", "--bind", f"127.0.0.1:{self.port}"),
                *("--workers", "2", "--timeout", "60", "--graceful-timeout", "30", "--access-logfile", "-"),
            ],
        )
        for _ in range(self.worker_count):
            self.start_worker()
        for _ in range(100):
            try:
                httpx.get(f"{self.base}/accounts/login/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        log(f"gunicorn on {self.base}, sandbox on {', '.join(self.urls.values())}, database {DB_KIND}")

    def psql(self, sql: str) -> str:
        import psycopg

        with psycopg.connect(PG + "postgres", autocommit=True) as conn:
            cursor = conn.execute(sql)
            return repr(cursor.fetchall() if cursor.description else [])

    def start_worker(self) -> str:
        worker_id = f"faults-{secrets.token_hex(3)}"
        self.workers[worker_id] = self.spawn(
            f"worker-{worker_id}",
            [
                *(PY, "manage.py", "db_worker", "--queue-name", "*", "--no-reload", "--interval", "0.2"),
                *("--no-startup-delay", "--worker-id", worker_id),
            ],
        )
        return worker_id

    def setup_django(self) -> None:
        os.environ.update(self.env)
        import django

        django.setup()

    def seed(self) -> None:
        from convadmin.accounts.roles import SUPPORT
        from convadmin.accounts.services import do_create_user, system_user
        from convadmin.credentials.services import do_add_credential

        actor = system_user()
        do_create_user(USER, "faults@example.test", PASSWORD, SUPPORT, acting_user=actor)
        self.credential_ids = {}
        for provider in ALL:
            data = {**self.credentials[provider]}
            self.credential_ids[provider] = do_add_credential(
                provider, LABELS[provider], data, acting_user=actor, replace=True
            ).pk

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if "django" in sys.modules and os.environ.get("DJANGO_SETTINGS_MODULE"):
            from django.db import connections

            connections.close_all()
        if DB_KIND != "sqlite" and os.environ.get("FAULTS_KEEP") != "1":
            self.psql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")


# --- the web client --------------------------------------------------------------------------------


class Web:
    """A logged-in browser-like client: cookie jar, CSRF token from the csrftoken cookie."""

    def __init__(self, base: str):
        self.client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
        self.client.get("/accounts/login/")
        reply = self.client.post(
            "/accounts/login/",
            data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": self.csrf},
        )
        if reply.status_code != 302:
            raise RuntimeError(f"login failed: HTTP {reply.status_code}")

    @property
    def csrf(self) -> str:
        return self.client.cookies.get("csrftoken", "")

    def post(self, url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(url, data={**data, "csrfmiddlewaretoken": self.csrf}, headers=headers)

    def create(self, form: dict[str, str]) -> int | None:
        reply = self.post("/conversations/new/", form)
        match = re.fullmatch(r"/conversations/(\d+)/", reply.headers.get("location", ""))
        if not match:
            log(f"create answered HTTP {reply.status_code} without a record: {reply.text[:300]!r}")
            return None
        return int(match.group(1))


# --- bodies ----------------------------------------------------------------------------------------


def contact_id(trigger: str, tag: str) -> str:
    return (trigger.replace("-", "") + tag).ljust(16, "A")[:32]


def cli_body(provider: str, trigger: str, tag: str) -> dict[str, Any]:
    name = f"{trigger} {tag}".strip()
    if provider == "mixin":
        return {"category": "GROUP", "name": name, "participants": [{"user_id": str(uuid.uuid4())}]}
    if provider == "twilio":
        return {"FriendlyName": name, "Participant": [{"identity": f"agent-{tag}"}]}
    if provider == "highlevel":
        return {"contactId": contact_id(trigger, tag)}
    return {
        "topic": name,
        "threads": [
            {
                "posts": [
                    {
                        "body": {"contentType": "text", "content": "Fault matrix"},
                        "newParticipants": [{"emailAddress": {"address": f"{tag}@example.test"}}],
                    }
                ]
            }
        ],
    }


def web_form(stack: Stack, provider: str, trigger: str, tag: str) -> dict[str, str]:
    name = f"{trigger} {tag}".strip()
    form = {
        "provider": provider,
        "credential": str(stack.credential_ids[provider]),
        "idempotency_key": str(uuid.uuid4()),
        "participants-TOTAL_FORMS": "1",
        "participants-INITIAL_FORMS": "0",
    }
    if provider == "mixin":
        form |= {"category": "GROUP", "name": name, "participants-0-user_id": str(uuid.uuid4())}
        form["participants-0-role"] = ""
    elif provider == "twilio":
        form |= {"FriendlyName": name, "participants-0-identity": f"agent-{tag}"}
    elif provider == "highlevel":
        form |= {"contactId": contact_id(trigger, tag), "participants-TOTAL_FORMS": "0"}
    else:
        form |= {
            "topic": name,
            "threads.0.posts.0.body.contentType": "text",
            "threads.0.posts.0.body.content": "Fault matrix",
            "participants-0-emailAddress.address": f"{tag}@example.test",
        }
    return form


# --- the cases ---------------------------------------------------------------------------------------


@dataclass
class Run:
    case: str
    provider: str
    channel: str
    tag: str
    notes: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


def records(tag: str) -> list[Any]:
    from django.db import connection

    from convadmin.conversations.models import Conversation

    connection.close()  # a terminated backend, or a stale view of the database: always a fresh connection
    rows = Conversation.objects.filter(request_body__icontains=tag).order_by("pk")
    return [c for c in rows if tag in json.dumps(c.request_body)]


def wait_settled(tags: list[str], timeout: float = 45.0) -> None:
    """Until every record of ``tags`` left pending and no action holds it (or ``timeout``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = [r for tag in tags for r in records(tag)]
        if rows and all(r.status != "pending" and not r.action for r in rows):
            return
        time.sleep(0.3)


def wait_claimed(tag: str, timeout: float = 20.0) -> Any:
    """The record of ``tag`` once a job claimed it (its provider call is then under way)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = records(tag)
        if rows and rows[0].attempts >= 1 and rows[0].status == "pending":
            return rows[0]
        time.sleep(0.05)
    return None


def cli_create(stack: Stack, provider: str, body: dict[str, Any], key: str | None = None) -> subprocess.Popen:
    path = stack.tmp / f"body-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(body))
    args = [PY, "manage.py", "create_conversation", LABELS[provider], "--file", str(path), "--user", USER]
    if key:
        args += ["--key", key]
    return subprocess.Popen(
        args, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def running_worker(stack: Stack, pk: int) -> str | None:
    from django.db import connection
    from django_tasks_db.models import DBTaskResult

    connection.close()
    for result in DBTaskResult.objects.filter(status="RUNNING"):
        if (result.args_kwargs.get("args") or [None])[0] == pk and result.worker_ids:
            return result.worker_ids[-1]
    return None


def run_case(stack: Stack, web: Web, case: str, provider: str, channel: str) -> Run:
    trigger = CASES[case][0]
    run = Run(case, provider, channel, f"t{secrets.token_hex(5)}")
    if case == "double submit":
        run_double_submit(stack, web, run)
    elif case == "double retry":
        run_double_retry(stack, web, run, trigger)
    elif case in ("kill -9", "db killed"):
        run_mid_call(stack, web, run, trigger)
    elif channel == "web":
        pk = web.create(web_form(stack, provider, trigger, run.tag))
        run.notes.append(f"record {pk}")
        wait_settled([run.tag])
    else:
        proc = cli_create(stack, provider, cli_body(provider, trigger, run.tag))
        _, err = proc.communicate(timeout=120)
        run.notes.append(f"exit {proc.returncode}")
        if proc.returncode not in (0, 1):
            run.notes.append(f"stderr {err[-300:]!r}")
    return run


def run_double_submit(stack: Stack, web: Web, run: Run) -> None:
    if run.channel == "web":
        form = web_form(stack, run.provider, "", run.tag)
        pks: list[int | None] = []
        threads = [threading.Thread(target=lambda: pks.append(web.create(form))) for _ in range(2)]
    else:
        body, key = cli_body(run.provider, "", run.tag), str(uuid.uuid4())
        procs = [cli_create(stack, run.provider, body, key) for _ in range(2)]
        outs = [json.loads(p.communicate(timeout=120)[0] or "{}") for p in procs]
        run.notes.append("ids " + ", ".join(str(o.get("id")) for o in outs))
        return
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.notes.append("both answered record " + " and ".join(map(str, pks)))
    wait_settled([run.tag])


def run_double_retry(stack: Stack, web: Web, run: Run, trigger: str) -> None:
    pk = web.create(web_form(stack, run.provider, trigger, run.tag))
    wait_settled([run.tag])
    first = records(run.tag)[0]
    run.notes.append(f"first attempt {pk} {first.status}/{first.error_code}")
    codes: list[int] = []

    def retry() -> None:
        codes.append(web.post(f"/conversations/{pk}/retry/", {}).status_code)

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)
    wait_settled([run.tag])
    run.notes.append(f"Retry POSTs answered {codes}")


def run_mid_call(stack: Stack, web: Web, run: Run, trigger: str) -> None:
    proc = None
    if run.channel == "web":
        pk = web.create(web_form(stack, run.provider, trigger, run.tag))
    else:
        proc = cli_create(stack, run.provider, cli_body(run.provider, trigger, run.tag))
        pk = None
    claimed = wait_claimed(run.tag)
    if claimed is None:
        run.notes.append("never claimed")
        return
    time.sleep(min(0.5, DEADLINE / 4))
    if run.case == "kill -9":
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            run.notes.append(f"create_conversation killed on record {claimed.pk}")
        else:
            worker = running_worker(stack, claimed.pk)
            if worker is None:
                run.notes.append(f"no worker held record {pk}")
                return
            stack.workers.pop(worker).send_signal(signal.SIGKILL)
            stack.start_worker()
            run.notes.append(f"worker killed on record {pk}; a new one started")
    else:
        if DB_KIND == "sqlite":
            run.notes.append("skipped (SQLite)")
            return
        killed = stack.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own database name
            f"WHERE datname='{stack.db_name}' AND pid <> pg_backend_pid()"
        )
        run.notes.append(f"{killed.count('True')} connections terminated on record {claimed.pk}")
        if proc is not None:
            proc.communicate(timeout=120)
            run.notes.append(f"exit {proc.returncode}")
        wait_settled([run.tag])


# --- counting ----------------------------------------------------------------------------------------


def count(stack: Stack, run: Run, state: dict[str, Any]) -> None:
    rows = records(run.tag)
    at_sandbox = [c for c in state["conversations"][run.provider] if run.tag in json.dumps(c)]
    sent = [r for r in state["received"] if run.tag in r["body"]]
    created = [r for r in rows if r.status == "created"]
    pending = [r for r in rows if r.status == "pending"]
    run.result = {
        "records": len(rows),
        "sent": len(sent),
        "at_sandbox": len(at_sandbox),
        "created": len(created),
        "duplicates": max(0, len(at_sandbox) - 1),
        # one conversation, several records saying "created" (e.g. an original and its retry)
        "extra_created": max(0, len(created) - max(1, len(at_sandbox))),
        "pending": len(pending),
        "lost": int(bool(at_sandbox) and not created),
        "unknown": sum(1 for r in rows if r.status == "failed" and r.outcome_unknown),
        "statuses": ", ".join(
            f"{r.pk}:{r.status}" + (f"/{r.error_code}" if r.error_code else "") for r in rows
        ),
    }


def table(runs: list[Run]) -> str:
    head = (
        "| case | provider | via | records | creates sent | at sandbox | duplicates | extra created records "
        "| pending after settle | lost | unknown | records (id:status/code) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in runs:
        x = r.result
        mark = lambda v: f"**{v}**" if v else "0"  # noqa: E731
        lines.append(
            f"| {r.case} | {r.provider} | {r.channel} | {x['records']} | {x['sent']} | {x['at_sandbox']} "
            f"| {mark(x['duplicates'])} | {mark(x['extra_created'])} | {mark(x['pending'])} | {mark(x['lost'])} | {x['unknown']} "
            f"| {x['statuses']} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    stack = Stack(tmp)
    runs: list[Run] = []
    failed = True
    try:
        stack.start()
        web = Web(stack.base)
        cases = QUICK_CASES if QUICK else tuple(CASES)
        if os.environ.get("FAULTS_CASES"):
            cases = tuple(c for c in os.environ["FAULTS_CASES"].split(",") if c in CASES)
        for case in cases:
            if case == "db killed" and DB_KIND == "sqlite":
                continue
            for provider in PROVIDERS:
                for channel in CASES[case][1]:
                    log(f"{case} / {provider} / {channel}")
                    runs.append(run_case(stack, web, case, provider, channel))
        # Killed calls hold their record until the lease runs out; then the settle job takes them over.
        from django.db import connection

        from convadmin.conversations.models import Conversation

        connection.close()
        leases = [c.lease_until for c in Conversation.objects.filter(status="pending") if c.lease_until]
        if leases:
            wait = (max(leases) - datetime.now(UTC)).total_seconds() + 1
            log(f"waiting {wait:.0f} s for the leases of killed calls to run out")
            time.sleep(max(0, wait))
        settles = []
        for attempt in range(2):
            result = stack.manage("settle_conversations", check=False)
            settles.append(result.returncode)
            log(f"settle_conversations exited {result.returncode}: {result.stdout.strip().splitlines()[-1:]}")
            if attempt == 0:
                time.sleep(SETTLE_DELAY + 1)
        state = httpx.get(stack.urls["mixin"] + "/__sandbox__/state", timeout=10).json()
        for run in runs:
            count(stack, run, state)
        targets = ("duplicates", "extra_created", "pending", "lost")
        misses = [r for r in runs if any(r.result[k] and (r.case, k) not in KNOWN for k in targets)]
        known = sorted({(r.case, k) for r in runs for k in targets if r.result[k] and (r.case, k) in KNOWN})
        report = (
            f"{len(runs)} runs, {len(misses)} missing a target; database {DB_KIND}; PROVIDER_DEADLINE "
            f"{DEADLINE:g} s, slow {SLOW:g} s; settle_conversations exited {settles}; "
            f"{time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f}\n\n"
            + table(runs)
            + "\nNotes:\n\n"
            + "\n".join(
                f"- {r.case} / {r.provider} / {r.channel}: {'; '.join(r.notes)}" for r in runs if r.notes
            )
            + "\n"
            + "".join(f"\nKnown, not failing the run: {case} / {k}: {KNOWN[case, k]}.\n" for case, k in known)
        )
        print(report)
        if os.environ.get("FAULTS_OUT"):
            Path(os.environ["FAULTS_OUT"]).write_text(report)
        failed = bool(misses)
        if misses:
            log("MISSED: " + "; ".join(f"{r.case}/{r.provider}/{r.channel} {r.result}" for r in misses))
    finally:
        stack.close()
        if failed:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
