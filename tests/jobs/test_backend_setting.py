"""TASKS_BACKEND picks the task backend, checked in a fresh interpreter with only the variables each case sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tasks_setting(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; import convadmin.settings as s;"
        "print(s.TASKS['default']['BACKEND'], s.CELERY_BROKER_URL, 'celery' in sys.modules)"
    )
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DEBUG": "1", "INSECURE_DEV_KEYS": "1", "CONVADMIN_NO_DOTENV": "1", **env},
        capture_output=True,
        text=True,
    )


def test_jobs_go_to_the_database_unless_told_otherwise_and_celery_is_not_loaded():
    result = _tasks_setting()
    assert result.stdout.split() == ["django_tasks_db.DatabaseBackend", "redis://127.0.0.1:6379/0", "False"]


def test_celery_on_redis_is_chosen_by_environment():
    result = _tasks_setting(TASKS_BACKEND="celery", CELERY_BROKER_URL="redis://queue.internal:6379/2")
    assert result.stdout.split()[:2] == ["django_tasks_celery.CeleryBackend", "redis://queue.internal:6379/2"]


def test_an_unknown_backend_stops_start_up_with_the_choices():
    result = _tasks_setting(TASKS_BACKEND="rq")
    assert result.returncode != 0
    assert "TASKS_BACKEND must be one of database, celery, immediate, not 'rq'" in result.stderr
