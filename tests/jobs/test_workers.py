"""Jobs run by real workers in their own processes: the database worker, and Celery on Redis.

Slow (workers start, databases migrate), so marked `jobs`: `pytest -m jobs` (and .ci/run, on SQLite and
PostgreSQL) runs them.
"""

from __future__ import annotations

import signal
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
import redis
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from convadmin.jobs import tasks
from convadmin.jobs.models import Heartbeat
from tests.jobs import tasks as test_tasks
from tests.jobs.conftest import manage, spawn, stop, wait_for

pytestmark = pytest.mark.jobs

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def database_backend(settings, jobs_database):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    DBTaskResult.objects.all().delete()
    Heartbeat.objects.all().delete()
    return jobs_database[1]


def _old_finished_results(n: int) -> None:
    for _ in range(n):
        DBTaskResult.objects.create(
            args_kwargs={"args": [], "kwargs": {}},
            task_path="convadmin.jobs.tasks.heartbeat",
            backend_name="default",
            status=TaskResultStatus.SUCCESSFUL,
            finished_at=timezone.now() - timedelta(days=30),
        )


def test_the_database_worker_runs_jobs_the_clock_enqueued_and_stops_on_sigterm(database_backend):
    env = database_backend
    _old_finished_results(3)
    clock = manage("jobs_clock", "--once", env=env)
    assert "enqueued convadmin.jobs.tasks.prune_task_results" in clock.communicate(timeout=60)[0]

    worker = manage("jobs_worker", "--no-color", env=env)
    try:
        prune = wait_for(
            lambda: DBTaskResult.objects.filter(
                task_path="convadmin.jobs.tasks.prune_task_results", status=TaskResultStatus.SUCCESSFUL
            ).first(),
            what="the prune job to succeed",
        )
        assert prune.return_value == 3
        assert len(prune.worker_ids) == 1
        wait_for(lambda: Heartbeat.objects.filter(name="worker").exists(), what="the heartbeat")
        health = manage("jobs_health", env=env)
        assert "ok: a worker ran the heartbeat" in health.communicate(timeout=60)[0]
        assert health.returncode == 0

        # A job enqueued by this (web-like) process while the worker waits is picked up too.
        result = tasks.prune_task_results.enqueue(days=0)
        wait_for(lambda: (result.refresh(), result.is_finished)[1], what="a job enqueued while running")
        assert result.status == TaskResultStatus.SUCCESSFUL
    finally:
        out = stop(worker)
    assert worker.returncode == 0, out


def test_a_job_whose_database_worker_is_killed_stays_running_and_no_worker_takes_it_again(
    database_backend, tmp_path
):
    env = database_backend
    started = tmp_path / "started"
    result = test_tasks.hold.enqueue(str(started))
    worker = manage("db_worker", "--no-reload", "--no-startup-delay", "--interval=0.1", env=env)
    wait_for(started.exists, what="the job to start")
    stop(worker, signal.SIGKILL)

    row = DBTaskResult.objects.get(pk=result.id)
    assert row.status == TaskResultStatus.RUNNING
    assert row.started_at is not None and row.finished_at is None
    assert len(row.worker_ids) == 1

    again = manage("db_worker", "--batch", "--no-reload", "--no-startup-delay", env=env)
    again.communicate(timeout=60)
    assert again.returncode == 0
    row.refresh_from_db()
    assert row.status == TaskResultStatus.RUNNING and len(row.worker_ids) == 1


@pytest.fixture
def celery(settings, jobs_database):
    """Celery on its own queue in Redis db 15 (parallel runs never take each other's jobs): ``.start()`` starts a
    worker (that hands on a lost job after 2 s); every worker is stopped after."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379")
    from convadmin.celery import app

    queue = f"convadmin-test-{uuid.uuid4().hex[:8]}"
    saved = {key: app.conf[key] for key in ("broker_url", "result_backend", "task_default_queue")}
    app.conf.update(broker_url=REDIS_URL, result_backend=REDIS_URL, task_default_queue=queue)
    settings.TASKS = {
        "default": {
            "BACKEND": "django_tasks_celery.CeleryBackend",
            "OPTIONS": {"CELERY_APP": "convadmin.celery.app"},
        }
    }
    env = {
        **jobs_database[1],
        "TASKS_BACKEND": "celery",
        "CELERY_BROKER_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "tests.jobs.celery_settings",
    }
    workers = []

    def start():
        workers.append(
            spawn(
                *("-m", "celery", "-A", "convadmin.celery", "worker", "--pool=solo", "--queues", queue),
                *(
                    "--include",
                    "tests.jobs.tasks",
                    "--without-mingle",
                    "--without-gossip",
                    "--without-heartbeat",
                ),
                "--loglevel=INFO",
                env=env,
            )
        )
        return workers[-1]

    DBTaskResult.objects.all().delete()
    Heartbeat.objects.all().delete()
    try:
        yield SimpleNamespace(start=start)
    finally:
        outputs = [(w.returncode, stop(w)) for w in workers]
        app.conf.update(saved)
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(*client.keys(f"*{queue}*"), queue)
    for returncode, out in outputs:
        assert returncode in (None, 0, -signal.SIGKILL), out


def test_a_celery_worker_runs_the_jobs_enqueued_here_and_reports_their_results(celery):
    worker = celery.start()
    _old_finished_results(2)

    prune = tasks.prune_task_results.enqueue()
    beat = tasks.heartbeat.enqueue()

    for result in (prune, beat):
        wait_for(lambda r=result: (r.refresh(), r.is_finished)[1], what=f"{result.task.name} to finish")
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert prune.return_value == 2
    assert not DBTaskResult.objects.exists()
    assert Heartbeat.objects.get(name="worker").at.isoformat() == beat.return_value
    out = stop(worker)
    assert worker.returncode == 0, out


def test_a_job_whose_celery_worker_is_killed_is_delivered_again_to_the_next_worker(celery, tmp_path):
    started = tmp_path / "started"
    result = test_tasks.hold.enqueue(str(started))
    first = celery.start()
    wait_for(started.exists, what="the job to start")
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    stop(first, signal.SIGKILL)

    celery.start()
    wait_for(lambda: (result.refresh(), result.is_finished)[1], what="the job to run again")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "finished on a later attempt"
