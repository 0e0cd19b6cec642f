"""Real workers in subprocesses, on a throwaway database of the session's engine (SQLite file or PostgreSQL).

The test process is pointed at the same database (its default connection, for the duration of a module), so it
enqueues and reads results exactly as the web process would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import environ
import pytest
from django.db import connections

ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str, env: dict) -> subprocess.Popen:
    """``python *args`` at the repository root, in its own process group, output captured."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def manage(*args: str, env: dict) -> subprocess.Popen:
    return spawn("manage.py", *args, env=env)


def stop(process: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> str:
    """Signal the process group, wait for it, return its output."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return out


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def jobs_database(tmp_path_factory, django_db_blocker):
    """A migrated database the workers and this process share: (its DATABASE_URL, the env for subprocesses)."""
    session_url = os.environ.get("DATABASE_URL", "")
    pg = session_url.startswith(("postgres://", "postgresql://"))
    if pg:
        import psycopg

        config = environ.Env.db_url_config(session_url)
        name = f"convadmin_jobs_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin_url = f"host={config['HOST'] or '127.0.0.1'} port={config['PORT'] or 5432} user={config['USER']} dbname=postgres"
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = session_url.rsplit("/", 1)[0] + "/" + name
    else:
        name = str(tmp_path_factory.mktemp("jobs") / "jobs.sqlite3")
        url = f"sqlite:///{name}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        "TASKS_BACKEND": "database",
        "CONVADMIN_NO_DOTENV": "1",
        "PYTHONUNBUFFERED": "1",
    }
    migrate = manage("migrate", "--noinput", env=env)
    out = migrate.communicate(timeout=120)[0]
    assert migrate.returncode == 0, out

    with django_db_blocker.unblock():
        connection = connections["default"]
        saved = connection.settings_dict["NAME"]
        connection.close()
        connection.settings_dict["NAME"] = name
        try:
            yield url, env
        finally:
            connection.close()
            connection.settings_dict["NAME"] = saved
    if pg:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
