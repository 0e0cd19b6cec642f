"""An export job run by a real database worker in its own process (``pytest -m jobs``)."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from convadmin.exports.models import Export, Status
from tests.factories import ConversationFactory, CredentialFactory, UserFactory
from tests.jobs.conftest import jobs_database, manage  # noqa: F401 (jobs_database is a fixture)

pytestmark = pytest.mark.jobs


def test_the_database_worker_writes_the_file_the_web_then_serves(settings, jobs_database, export_storage):  # noqa: F811
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    env = {
        **jobs_database[1],
        "EXPORT_ROOT": str(export_storage),
        "EXPORT_TMP_DIR": str(settings.EXPORT_TMP_DIR),
    }
    user = UserFactory(username="wendy-worker-export", role="Support")
    credential = CredentialFactory(label="worker export")
    names = [f"Worker row {n}" for n in range(5)]
    for name in names:
        ConversationFactory(credential=credential, created_by=user, name=name)
    client = Client()
    client.force_login(user)

    response = client.post(
        reverse("export_start", args=["conversations"]) + f"?credential={credential.pk}", {"format": "csv"}
    )
    export = Export.objects.get(created_by=user)
    assert response.status_code == 302 and export.status == Status.QUEUED
    assert DBTaskResult.objects.filter(task_path="convadmin.exports.tasks.run_export").exists()

    worker = manage("db_worker", "--batch", "--no-reload", "--no-startup-delay", env=env)
    out = worker.communicate(timeout=120)[0]
    assert worker.returncode == 0, out

    export.refresh_from_db()
    assert export.status == Status.DONE and export.rows_written == 5, export.error
    page = client.get(reverse("export_detail", args=[export.pk])).content.decode()
    assert "Download" in page and "hx-trigger" not in page
    download = client.get(reverse("export_download", args=[export.pk]))
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert sorted(row["name"] for row in rows) == names
    assert not any(settings.EXPORT_TMP_DIR.iterdir())
