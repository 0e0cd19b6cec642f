"""The jobs foundation in-process: the clock, the prune and heartbeat jobs, enqueue-on-commit, health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import transaction
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from convadmin.jobs import tasks
from convadmin.jobs.clock import load_schedule, tick
from convadmin.jobs.enqueue import enqueue_in_transaction
from convadmin.jobs.models import Heartbeat, ScheduledJob

DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
DAY = timedelta(days=1)


@pytest.fixture
def database_backend(settings):
    settings.TASKS = DATABASE_TASKS


def _finished_result(age: timedelta, status=TaskResultStatus.SUCCESSFUL) -> DBTaskResult:
    row = DBTaskResult.objects.create(
        args_kwargs={"args": [], "kwargs": {}},
        task_path="convadmin.jobs.tasks.heartbeat",
        backend_name="default",
    )
    DBTaskResult.objects.filter(pk=row.pk).update(status=status, finished_at=timezone.now() - age)
    return row


def test_the_prune_job_deletes_finished_results_past_the_retention_and_keeps_the_rest(db, settings):
    settings.JOBS_RESULT_RETENTION_DAYS = 14
    old_ok, old_failed = _finished_result(15 * DAY), _finished_result(20 * DAY, TaskResultStatus.FAILED)
    recent = _finished_result(13 * DAY)
    waiting = DBTaskResult.objects.create(
        args_kwargs={"args": [], "kwargs": {}},
        task_path="convadmin.jobs.tasks.heartbeat",
        backend_name="default",
    )

    result = tasks.prune_task_results.enqueue()

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2
    left = set(DBTaskResult.objects.values_list("pk", flat=True))
    assert left == {recent.pk, waiting.pk}
    assert old_ok.pk not in left and old_failed.pk not in left


def test_the_heartbeat_job_records_when_a_worker_ran_it(db):
    tasks.heartbeat.enqueue()
    assert timezone.now() - Heartbeat.objects.get(name="worker").at < timedelta(seconds=5)


def test_the_clock_enqueues_each_job_when_due_and_only_once_per_interval(db, database_backend):
    schedule = load_schedule()
    now = timezone.now()

    assert tick(schedule, now) == list(schedule)  # new entries are due at once
    assert tick(schedule, now + timedelta(seconds=59)) == []
    every_minute = [path for path, (_, every) in schedule.items() if every == timedelta(seconds=60)]
    assert "convadmin.jobs.tasks.heartbeat" in every_minute
    assert tick(schedule, now + timedelta(seconds=60)) == every_minute
    assert tick(schedule, now + DAY) == list(schedule)

    paths = list(DBTaskResult.objects.order_by("enqueued_at").values_list("task_path", flat=True))
    assert paths.count("convadmin.jobs.tasks.heartbeat") == 3
    assert paths.count("convadmin.jobs.tasks.prune_task_results") == 2


def test_a_second_clock_running_at_the_same_time_enqueues_nothing_twice(db, database_backend):
    first, second = load_schedule(), load_schedule()
    now = timezone.now()
    assert tick(first, now) and tick(second, now) == []
    assert DBTaskResult.objects.count() == len(first)


def test_a_failed_enqueue_leaves_the_run_due_for_the_next_tick(db, database_backend, monkeypatch):
    schedule = load_schedule()
    task, every = schedule["convadmin.jobs.tasks.heartbeat"]
    monkeypatch.setattr(
        type(task.get_backend()), "enqueue", lambda *a: (_ for _ in ()).throw(OSError("down"))
    )
    with pytest.raises(OSError):
        tick({"convadmin.jobs.tasks.heartbeat": (task, every)})
    monkeypatch.undo()
    assert not ScheduledJob.objects.exists()
    assert tick({"convadmin.jobs.tasks.heartbeat": (task, every)}) == ["convadmin.jobs.tasks.heartbeat"]


def test_the_schedule_refuses_a_path_that_is_not_a_task(settings):
    settings.JOBS_SCHEDULE = {"convadmin.jobs.clock.tick": 60}
    with pytest.raises(ImproperlyConfigured, match="must name a @task"):
        load_schedule()


def test_the_clock_command_enqueues_what_is_due_once(db, database_backend, capsys, settings):
    call_command("jobs_clock", "--once")
    assert "enqueued convadmin.jobs.tasks.prune_task_results" in capsys.readouterr().out
    assert DBTaskResult.objects.filter(status=TaskResultStatus.READY).count() == len(settings.JOBS_SCHEDULE)


def test_on_the_database_backend_a_job_is_written_in_the_callers_transaction(db, database_backend):
    with transaction.atomic():
        send = enqueue_in_transaction(tasks.heartbeat)
        assert DBTaskResult.objects.filter(task_path="convadmin.jobs.tasks.heartbeat").exists()
        transaction.set_rollback(True)
    send()  # nothing left to send: the job was part of the transaction
    assert not DBTaskResult.objects.exists()


def test_on_other_backends_a_job_is_sent_only_once_the_transaction_is_over(db):
    with transaction.atomic():
        send = enqueue_in_transaction(tasks.heartbeat)
        assert not Heartbeat.objects.exists()
    send()
    assert Heartbeat.objects.exists()


def test_health_says_when_no_worker_has_run_the_heartbeat(db, database_backend):
    with pytest.raises(CommandError, match="no heartbeat yet"):
        call_command("jobs_health")
    Heartbeat.objects.create(name="worker", at=timezone.now() - timedelta(minutes=10))
    with pytest.raises(CommandError, match="stale"):
        call_command("jobs_health")


def test_health_is_ok_after_a_recent_heartbeat_and_shows_the_queue(db, database_backend, capsys):
    Heartbeat.objects.create(name="worker", at=timezone.now())
    tasks.heartbeat.enqueue()
    call_command("jobs_health")
    out = capsys.readouterr().out
    assert "queue: 1 waiting" in out and "ok: a worker ran the heartbeat" in out


def test_the_worker_command_says_an_in_process_backend_needs_no_worker():
    with pytest.raises(CommandError, match="no worker is needed"):
        call_command("jobs_worker")
