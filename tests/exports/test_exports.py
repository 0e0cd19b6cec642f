"""Big exports run as jobs: the record, the job's file, the status page, the audited download, the sweep."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core.files.storage import storages
from django.db import connection
from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from convadmin.audit.models import AuditEvent, EventType
from convadmin.audit.services import record
from convadmin.conversations.export import CONVERSATIONS_EXPORT
from convadmin.exports.models import Export, Status
from convadmin.exports.tasks import run_export, sweep_exports
from convadmin.lists import export as lists_export
from convadmin.lists.export import encoded, write_chunks
from tests.factories import ConversationFactory, CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def records():
    credential = CredentialFactory(label="tw")
    sam = UserFactory(username="sam")
    return [
        ConversationFactory(
            credential=credential, created_by=sam, name="Alpha", participants=["+15558675310"]
        ),
        ConversationFactory(credential=credential, created_by=sam, name='=HYPERLINK("http://x.test")'),
        ConversationFactory(credential=credential, created_by=sam, name="Gamma", participants=["-2", "@bob"]),
    ]


@pytest.fixture
def logins(admin):
    for n in range(4):
        record(EventType.KEYS_ROTATED, actor=admin, ip=f"203.0.113.{n}", extra={"n": n})


def start(client, name, fmt="csv", *, compress=False, **filters):
    url = reverse("export_start", args=[name]) + (f"?{urlencode(filters)}" if filters else "")
    return client.post(url, {"format": fmt, **({"gzip": "1"} if compress else {})})


def run(client, capture, name, fmt="csv", *, compress=False, **filters) -> Export:
    """Start an export and let its job run (in-process, after the commit)."""
    with capture(execute=True):
        response = start(client, name, fmt, compress=compress, **filters)
    export = Export.objects.latest("pk")
    assert response.status_code == 302 and response["Location"] == reverse("export_detail", args=[export.pk])
    return export


def stored(export: Export) -> str:
    with storages["exports"].open(export.file_name, "rb") as f:
        data = f.read()
    return (gzip.decompress(data) if export.gzip else data).decode()


def streamed(client, url_name, fmt, settings, **filters) -> str:
    settings.EXPORT_STREAM_MAX_ROWS = 1000
    response = client.get(reverse(url_name), {"format": fmt, **filters})
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


# --- start: stream or job ---------------------------------------------------------------------------


def test_few_rows_still_download_at_once_without_a_job(support_client, records, settings):
    settings.EXPORT_STREAM_MAX_ROWS = 3
    response = start(support_client, "conversations", "jsonl")
    assert isinstance(response, StreamingHttpResponse)
    assert len(b"".join(response.streaming_content).decode().splitlines()) == 3
    assert not Export.objects.exists()
    event = AuditEvent.objects.get(event_type=EventType.CONVERSATIONS_EXPORTED)
    assert event.extra == {"format": "jsonl", "filters": {}, "via": "web"}


def test_more_rows_start_a_job_recorded_and_audited_with_the_filters(
    support, support_client, records, django_capture_on_commit_callbacks
):
    export = run(support_client, django_capture_on_commit_callbacks, "conversations", provider="twilio")
    assert (export.created_by, export.list_name, export.format, export.gzip) == (
        support,
        "conversations",
        "csv",
        False,
    )
    assert export.filters == {"provider": "twilio"}
    assert export.status == Status.DONE and export.rows_written == 3
    assert export.rows_estimate == 3 or connection.vendor == "postgresql"  # there: the planner's estimate
    assert export.size == storages["exports"].size(export.file_name)
    assert export.expires_at - export.finished_at == timedelta(hours=24)
    event = AuditEvent.objects.get(event_type=EventType.CONVERSATIONS_EXPORTED)
    assert event.actor == support
    assert event.extra == {
        "format": "csv",
        "filters": {"provider": "twilio"},
        "via": "web, as a job",
        "export": export.pk,
        "gzip": False,
    }


def test_gzip_always_runs_as_a_job(support_client, records, settings, django_capture_on_commit_callbacks):
    settings.EXPORT_STREAM_MAX_ROWS = 1000
    export = run(support_client, django_capture_on_commit_callbacks, "conversations", "jsonl", compress=True)
    assert export.download_name.endswith(".jsonl.gz")
    assert len(stored(export).splitlines()) == 3


def test_the_record_audit_row_and_job_commit_together(support_client, records, monkeypatch, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    from django_tasks_db.models import DBTaskResult

    response = start(support_client, "conversations")
    export = Export.objects.get()
    assert response.status_code == 302 and export.status == Status.QUEUED
    job = DBTaskResult.objects.get(task_path="convadmin.exports.tasks.run_export")
    assert job.args_kwargs["args"] == [export.pk]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("compress", [False, True])
def test_the_conversations_file_holds_what_the_stream_would(
    support_client, records, settings, fmt, compress, django_capture_on_commit_callbacks
):
    export = run(support_client, django_capture_on_commit_callbacks, "conversations", fmt, compress=compress)
    assert stored(export) == streamed(support_client, "conversation_export", fmt, settings)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("compress", [False, True])
def test_the_audit_file_holds_what_the_stream_would(
    auditor_client, logins, settings, fmt, compress, django_capture_on_commit_callbacks
):
    export = run(
        auditor_client,
        django_capture_on_commit_callbacks,
        "audit",
        fmt,
        compress=compress,
        event_type="keys_rotated",
    )
    text = stored(export)
    assert export.rows_written == 4 and export.download_name.startswith("audit-")
    assert text == streamed(auditor_client, "audit_export", fmt, settings, event_type="keys_rotated")
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [json.loads(r["extra"]) for r in rows] == [{"n": 3}, {"n": 2}, {"n": 1}, {"n": 0}]
    else:
        assert [json.loads(line)["ip"] for line in text.splitlines()] == [
            f"203.0.113.{n}" for n in (3, 2, 1, 0)
        ]


def test_csv_cells_a_spreadsheet_would_run_are_quoted(
    support_client, records, django_capture_on_commit_callbacks
):
    export = run(support_client, django_capture_on_commit_callbacks, "conversations")
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(stored(export)))}
    assert '\'=HYPERLINK("http://x.test")' in rows
    assert rows["Alpha"]["participants"] == "+15558675310"  # a phone number stays as it is
    assert rows["Gamma"]["participants"] == "'-2; @bob"  # joined, then quoted: no longer a plain number


def test_bad_format_or_filters_are_refused_and_nothing_starts(support_client, records):
    assert start(support_client, "conversations", "xlsx").status_code == 400
    assert start(support_client, "conversations", since="yesterday").status_code == 400
    assert start(support_client, "nothing").status_code == 404
    assert not Export.objects.exists()
    assert not AuditEvent.objects.filter(event_type=EventType.CONVERSATIONS_EXPORTED).exists()


def test_the_old_export_link_offers_a_job_rather_than_a_cut_stream(support_client, records):
    response = support_client.get(reverse("conversation_export"), {"format": "jsonl", "provider": "twilio"})
    body = response.content.decode()
    assert response.status_code == 200 and "more than 2 rows" in body
    assert f'action="{reverse("export_start", args=["conversations"])}?provider=twilio"' in body
    assert 'name="format" value="jsonl"' in body
    assert not AuditEvent.objects.filter(event_type=EventType.CONVERSATIONS_EXPORTED).exists()


# --- roles ------------------------------------------------------------------------------------------


@pytest.fixture
def audit_export(auditor_client, logins, django_capture_on_commit_callbacks):
    return run(auditor_client, django_capture_on_commit_callbacks, "audit", event_type="keys_rotated")


def test_only_the_roles_that_may_export_a_list_start_follow_or_download_it(
    client, support_client, outsider_client, admin_client, audit_export
):
    detail = reverse("export_detail", args=[audit_export.pk])
    download = reverse("export_download", args=[audit_export.pk])
    for other in (support_client, outsider_client):
        assert start(other, "audit").status_code == 403
        assert other.get(detail).status_code == 403
        assert other.get(download).status_code == 403
    assert client.get(detail).status_code == 302 and client.get(download).status_code == 302
    assert start(client, "audit").status_code == 302 and Export.objects.count() == 1
    assert admin_client.get(detail).status_code == 200
    assert admin_client.get(download).status_code == 200
    assert outsider_client.post(reverse("export_start", args=["conversations"])).status_code == 403


# --- status and download ----------------------------------------------------------------------------


def test_a_finished_export_shows_a_download_link_and_stops_polling(auditor_client, audit_export):
    page = auditor_client.get(reverse("export_detail", args=[audit_export.pk])).content.decode()
    assert "Done" in page and "4 rows" in page and "Event: Encryption keys rotated" in page
    assert f'href="{reverse("export_download", args=[audit_export.pk])}"' in page
    assert "hx-trigger" not in page


def test_a_running_export_polls_and_shows_rows_and_rate(auditor_client, audit_export):
    now = timezone.now()
    Export.objects.filter(pk=audit_export.pk).update(
        status=Status.RUNNING,
        rows_written=120_000,
        rows_estimate=1_000_000,
        started_at=now - timedelta(seconds=2),
        progress_at=now,
        finished_at=None,
    )
    fragment = auditor_client.get(
        reverse("export_detail", args=[audit_export.pk]), headers={"HX-Request": "true"}
    )
    body = fragment.content.decode()
    assert body.lstrip().startswith('<section id="export-status"') and "<html" not in body
    assert 'hx-trigger="every 1s"' in body
    assert '<progress aria-label="Export progress" max="1000000" value="120000">' in body
    assert "120,000 rows written of about 1,000,000 · 60,000 rows a second" in body
    assert "Download" not in body
    Export.objects.filter(pk=audit_export.pk).update(rows_estimate=100_000)  # an estimate that fell short
    body = auditor_client.get(reverse("export_detail", args=[audit_export.pk])).content.decode()
    assert "120,000 rows written ·" in body and '<progress aria-label="Export progress"></progress>' in body


def test_a_queued_export_says_it_waits_for_a_worker(auditor_client, audit_export):
    Export.objects.filter(pk=audit_export.pk).update(status=Status.QUEUED)
    body = auditor_client.get(reverse("export_detail", args=[audit_export.pk])).content.decode()
    assert "waiting for a worker" in body and 'hx-trigger="every 1s"' in body


def test_a_download_streams_the_file_from_storage_and_is_audited(auditor, auditor_client, audit_export):
    response = auditor_client.get(reverse("export_download", args=[audit_export.pk]))
    assert isinstance(response, FileResponse)
    assert response["Content-Disposition"] == f'attachment; filename="{audit_export.download_name}"'
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert b"".join(response.streaming_content).decode() == stored(audit_export)
    event = AuditEvent.objects.get(event_type=EventType.EXPORT_DOWNLOADED)
    assert (event.actor, event.target_type, event.target_id) == (auditor, "export", str(audit_export.pk))
    assert event.extra == {"list": "audit", "file": audit_export.download_name, "rows": 4}


# --- failures, expiry, lost workers -----------------------------------------------------------------


def test_a_failed_job_shows_a_clear_error_and_leaves_no_file(
    support_client, records, monkeypatch, export_storage, settings, django_capture_on_commit_callbacks
):
    def broken(qs, fmt):
        yield from list(CONVERSATIONS_EXPORT.rows(qs, fmt))[:2]
        raise ConnectionError("the database went away")

    python_only = replace(CONVERSATIONS_EXPORT, rows=broken, columns=None)  # PostgreSQL would not fail here
    monkeypatch.setitem(lists_export._LISTS, "conversations", python_only)
    export = run(support_client, django_capture_on_commit_callbacks, "conversations")
    assert export.status == Status.FAILED and export.file_name == ""
    assert "ConnectionError: the database went away" in export.error
    assert not export_storage.exists() or not any(export_storage.iterdir())
    assert not list(settings.EXPORT_TMP_DIR.iterdir())  # the partial file is gone too
    page = support_client.get(reverse("export_detail", args=[export.pk])).content.decode()
    assert re.search(
        r'class="error" role="alert"><strong>Failed</strong>: The export stopped with an error', page
    )
    assert support_client.get(reverse("export_download", args=[export.pk])).status_code == 404


def test_filters_that_no_longer_validate_fail_rather_than_export_more(support_client, records, settings):
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}  # the job waits in the queue
    start(support_client, "conversations", credential=records[0].credential_id)
    export = Export.objects.get()
    Export.objects.filter(pk=export.pk).update(filters={"credential": "999999"})
    run_export.call(
        *DBTaskResult.objects.get(task_path="convadmin.exports.tasks.run_export").args_kwargs["args"]
    )
    export.refresh_from_db()
    assert export.status == Status.FAILED and "no longer valid" in export.error


def test_the_sweep_deletes_expired_files_and_marks_their_exports(auditor_client, audit_export):
    name = audit_export.file_name
    assert sweep_exports.call() == {"stalled": 0, "expired": 0}
    Export.objects.filter(pk=audit_export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert sweep_exports.call() == {"stalled": 0, "expired": 1}
    audit_export.refresh_from_db()
    assert audit_export.status == Status.EXPIRED and not storages["exports"].exists(name)
    assert auditor_client.get(reverse("export_download", args=[audit_export.pk])).status_code == 404
    page = auditor_client.get(reverse("export_detail", args=[audit_export.pk])).content.decode()
    assert "Expired" in page and "Export again from the list" in page


def test_an_expired_file_is_not_offered_even_before_the_sweep(auditor_client, audit_export):
    Export.objects.filter(pk=audit_export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert auditor_client.get(reverse("export_download", args=[audit_export.pk])).status_code == 404


def test_a_running_export_whose_worker_was_lost_is_marked_failed(auditor_client, audit_export, settings):
    settings.EXPORT_STALL_MINUTES = 10
    now = timezone.now()
    Export.objects.filter(pk=audit_export.pk).update(
        status=Status.RUNNING, progress_at=now - timedelta(minutes=9)
    )
    assert sweep_exports.call()["stalled"] == 0
    Export.objects.filter(pk=audit_export.pk).update(progress_at=now - timedelta(minutes=11))
    assert sweep_exports.call()["stalled"] == 1
    page = auditor_client.get(reverse("export_detail", args=[audit_export.pk])).content.decode()
    assert "its worker was stopped or lost (no progress for 10 minutes)" in page
    assert "hx-trigger" not in page


def test_a_job_delivered_again_after_its_worker_was_lost_starts_over(auditor_client, audit_export):
    Export.objects.filter(pk=audit_export.pk).update(
        status=Status.RUNNING, rows_written=2, progress_at=timezone.now() - timedelta(hours=1)
    )
    assert run_export.call(audit_export.pk) == "done"
    audit_export.refresh_from_db()
    assert audit_export.status == Status.DONE and audit_export.rows_written == 4
    assert run_export.call(audit_export.pk) == "not queued"  # a finished export is not written twice


def test_progress_is_reported_while_writing():
    seen = []
    rows = ({"a": n} for n in range(10_000))
    out = io.BytesIO()
    assert write_chunks(encoded(rows, "csv", ["a"]), out, progress=seen.append, every=0) == 10_000
    assert seen and seen == sorted(seen) and seen[-1] <= 10_000
    assert out.getvalue().decode().splitlines()[:3] == ["a", "0", "1"]


def test_every_cell_a_spreadsheet_would_run_is_quoted_whatever_its_type():
    from convadmin.lists.export import csv_lines

    values = [
        "=1+1",
        "+cmd",
        "-cmd",
        "@SUM(A1)",
        "\tx",
        "\rx",
        ["=a", "b"],
        "+15558675310",
        "-2.5",
        7,
        None,
        True,
    ]
    header = [f"c{i}" for i in range(len(values))]
    line = list(
        csv.reader(io.StringIO("".join(csv_lines([dict(zip(header, values, strict=True))], header))))
    )[1]
    assert line == [
        "'=1+1",
        "'+cmd",
        "'-cmd",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "'=a; b",
        "+15558675310",
        "-2.5",
        "7",
        "",
        "True",
    ]


def test_the_default_local_storage_is_owner_only(
    settings, tmp_path, support_client, records, django_capture_on_commit_callbacks
):
    import convadmin.settings as project

    root = tmp_path / "var" / "exports"
    options = project.STORAGES["exports"]["OPTIONS"]
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {**project.STORAGES["exports"], "OPTIONS": {**options, "location": root}},
    }
    settings.EXPORT_TMP_DIR = root / ".partial"
    export = run(support_client, django_capture_on_commit_callbacks, "conversations")
    modes = {path: path.stat().st_mode & 0o777 for path in (tmp_path / "var", root, root / ".partial")}
    assert set(modes.values()) == {0o700}, modes
    assert (root / export.file_name).stat().st_mode & 0o777 == 0o600
