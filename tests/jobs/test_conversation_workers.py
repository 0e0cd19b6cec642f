"""Provider calls run by real workers against the sandbox: the database worker (SQLite, PostgreSQL) and Celery on
Redis. A worker killed mid-call leaves nothing created twice: the settle job looks the conversation up first."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.services import do_add_credential
from providers.sandbox import Sandbox
from tests.factories import UserFactory
from tests.jobs.conftest import manage, stop, wait_for
from tests.jobs.test_workers import celery, database_backend  # noqa: F401 - fixtures

pytestmark = pytest.mark.jobs


@pytest.fixture
def sandbox():
    with Sandbox(slow_seconds=3) as running:
        yield running


@pytest.fixture
def twilio(sandbox):
    user = UserFactory(username="qa-worker", role="Administrator")
    credential = do_add_credential(
        "twilio", "Sandbox Twilio (jobs)", sandbox.credentials()["twilio"], acting_user=user, replace=True
    )
    return credential, user


def at_sandbox(sandbox, unique_name: str) -> int:
    """How many conversations the sandbox made with this unique name."""
    store = sandbox.apis["twilio"].conversations.values()
    return sum(1 for c in store if c["unique_name"] == unique_name)


def body(name: str, identity: str = "qa-agent") -> dict:
    return {"FriendlyName": name, "UniqueName": name, "Participant": [{"identity": identity}]}


def test_the_database_worker_creates_what_the_page_queued(database_backend, sandbox, twilio):  # noqa: F811
    credential, user = twilio
    record = services.do_create_conversation(body("jobs-order-1"), credential=credential, acting_user=user)
    assert record.status == Status.PENDING
    worker = manage("jobs_worker", "--no-color", env=database_backend)
    try:
        done = wait_for(
            lambda: Conversation.objects.filter(pk=record.pk).exclude(status=Status.PENDING).first(),
            what="the create job",
        )
    finally:
        stop(worker)
    assert done.status == Status.CREATED and done.external_id.startswith("CH")
    assert at_sandbox(sandbox, "jobs-order-1") == 1


def test_a_worker_killed_mid_call_creates_nothing_twice(database_backend, sandbox, twilio):  # noqa: F811
    credential, user = twilio
    record = services.do_create_conversation(
        body("jobs-order-2", "slow"), credential=credential, acting_user=user
    )
    worker = manage("jobs_worker", "--no-color", env=database_backend)
    wait_for(lambda: Conversation.objects.get(pk=record.pk).attempts == 1, what="the worker to claim it")
    wait_for(lambda: at_sandbox(sandbox, "jobs-order-2") == 1, what="the provider to receive it")
    stop(worker, signal.SIGKILL)
    assert Conversation.objects.get(pk=record.pk).status == Status.PENDING
    # The lease runs out (here at once), and the settle job runs the record again: it looks it up first.
    Conversation.objects.filter(pk=record.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    settle = manage("settle_conversations", "--id", str(record.pk), env=database_backend)
    out = settle.communicate(timeout=60)[0]
    assert settle.returncode == 0, out
    settled = Conversation.objects.get(pk=record.pk)
    assert (settled.status, settled.attempts, settled.lookup["result"]) == (Status.CREATED, 2, "found")
    assert at_sandbox(sandbox, "jobs-order-2") == 1
    # The killed attempt's exchange died with its worker; the re-run only looked it up.
    assert list(settled.exchanges.values_list("purpose", flat=True)) == ["lookup", "lookup"]


def test_a_celery_worker_creates_what_the_page_queued(celery, sandbox, twilio):  # noqa: F811
    credential, user = twilio
    record = services.do_create_conversation(body("jobs-order-3"), credential=credential, acting_user=user)
    celery.start()
    done = wait_for(
        lambda: Conversation.objects.filter(pk=record.pk).exclude(status=Status.PENDING).first(),
        what="the create job on Celery",
    )
    assert done.status == Status.CREATED and at_sandbox(sandbox, "jobs-order-3") == 1
