"""A bulk batch sent by two real database workers against the sandbox, with concurrency 2: the worker holding a
row mid-call is killed with SIGKILL, the other one goes on and, once the killed row's lease has run out, settles
it by look-up. Every row ends created, and the sandbox holds each conversation once and received each create once."""

from __future__ import annotations

import re
import signal
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from convadmin.bulk import services
from convadmin.bulk.models import Batch, BatchRow, RowStatus, State
from convadmin.bulk.rows import validate_file
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.services import do_add_credential
from providers.sandbox import Sandbox
from tests.factories import UserFactory
from tests.jobs.conftest import manage, stop, wait_for
from tests.jobs.test_workers import database_backend  # noqa: F401 - fixture

pytestmark = pytest.mark.jobs
LABEL = "Sandbox Twilio (bulk jobs)"  # tests/settings.py BULK_LIMITS: 20 a second, 2 at once


@pytest.fixture
def sandbox():
    with Sandbox(slow_seconds=3) as running:
        yield running


def worker(name: str, env: dict):
    return manage(
        *("db_worker", "--queue-name", "*", "--no-reload", "--no-startup-delay", "--interval", "0.1"),
        *("--worker-id", name),
        env=env,
    )


def test_two_workers_send_a_batch_and_one_killed_mid_call_creates_nothing_twice(
    database_backend,  # noqa: F811
    sandbox,
):
    user = UserFactory(username="qa-bulk", role="Administrator")
    credential = do_add_credential(
        "twilio", LABEL, sandbox.credentials()["twilio"], acting_user=user, replace=True
    )
    names = [f"bulk-jobs-{n}" for n in range(1, 9)]
    lines = ["FriendlyName,UniqueName,participant1.identity"]
    lines += [
        f"{'slow ' if n == 3 else ''}Order {n},{name},agent-{n}" for n, name in enumerate(names, start=1)
    ]
    report = validate_file("rows.csv", "\n".join(lines).encode(), credential)
    batch = services.do_upload_batch(report, credential=credential, file_name="rows.csv", acting_user=user)
    batch = services.do_start_batch(batch, acting_user=user)
    assert batch.concurrency == 2 and DBTaskResult.objects.count() == 2

    workers = {name: worker(name, database_backend) for name in ("bulk-a", "bulk-b")}
    try:
        slow = BatchRow.objects.get(batch=batch, number=4)  # "slow Order 3": the reply is held 3 s
        wait_for(
            lambda: (
                Conversation.objects.filter(idempotency_key=slow.key, attempts=1).exists()
                and sum(c["unique_name"] == names[2] for c in sandbox.state()["conversations"]["twilio"])
            ),
            what="the slow row to reach the provider",
        )
        holder = BatchRow.objects.get(pk=slow.pk).claimed_by.removeprefix("job ")
        killed = DBTaskResult.objects.get(pk=holder).worker_ids[-1]
        stop(workers.pop(killed), signal.SIGKILL)
        assert Conversation.objects.get(idempotency_key=slow.key).status == Status.PENDING

        # The other worker sends every other row, then waits for the killed one's row; its leases run out (here
        # at once), and it takes the row over: the create job looks it up before any re-send.
        wait_for(
            lambda: (
                not BatchRow.objects.filter(batch=batch, status=RowStatus.READY).exclude(pk=slow.pk).exists()
            ),
            what="the other rows",
        )
        BatchRow.objects.filter(pk=slow.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
        Conversation.objects.filter(idempotency_key=slow.key).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        wait_for(lambda: Batch.objects.get(pk=batch.pk).status == State.DONE, what="the batch to finish")
    finally:
        outputs = [stop(w) for w in workers.values()]
    rows = BatchRow.objects.filter(batch=batch).select_related("conversation")
    assert {row.status for row in rows} == {RowStatus.CREATED}, outputs
    settled = Conversation.objects.get(idempotency_key=slow.key)
    assert (settled.attempts, settled.lookup["result"]) == (2, "found")
    state = sandbox.state()
    held = [c["unique_name"] for c in state["conversations"]["twilio"]]
    sent = Counter(
        re.search(r"UniqueName=([^&]+)", r["body"]).group(1)
        for r in state["received"]
        if r["path"].endswith("/ConversationWithParticipants")
    )
    assert sorted(held) == sorted(names)  # each conversation once
    assert sent == dict.fromkeys(names, 1)  # each create received once: the killed row was only looked up
    assert Conversation.objects.filter(batch=batch).count() == 8
