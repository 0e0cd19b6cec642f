"""Issue 12: a big export runs as a job. An auditor filters the list, exports, watches the job's progress on its
page, downloads the file when it is done, and finds the download in the audit log."""

from __future__ import annotations

import csv
import gzip
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from convadmin.exports.models import Export, Status
from convadmin.exports.tasks import run_export
from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot


@pytest.fixture
def jobs_wait(settings, tmp_path):
    """Jobs wait to be run by hand (as if for a worker); export files go to this test's own folder; more than
    5 rows make a job."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "store"},
        },
    }
    settings.EXPORT_TMP_DIR = tmp_path / "partial"
    settings.EXPORT_STREAM_MAX_ROWS = 5


def test_a_big_export_runs_as_a_job_with_progress_then_a_download(page, demo, jobs_wait):
    log_in(page, "demo-auditor", DEMO_PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    page.get_by_label("Provider").select_option("twilio")
    expect(page).to_have_url(re.compile(r"provider=twilio"))
    rows = page.locator("table.conversations tbody tr")
    expect(rows).to_have_count(9)

    export_form = page.get_by_role("form", name="Export")
    export_form.get_by_label("gzip").check()
    export_form.get_by_role("button", name="CSV").click()

    # The job's page: queued until a worker takes it, polling by itself.
    expect(page.get_by_role("heading", name="Conversations export")).to_be_visible()
    status = page.get_by_role("status", name="Export status")
    expect(status).to_contain_text("Queued: waiting for a worker to start it.")
    expect(page.locator(".export-facts")).to_contain_text("Provider: Twilio Conversations")
    export = Export.objects.get()
    assert (export.format, export.gzip, export.filters) == ("csv", True, {"provider": "twilio"})

    # A worker reports progress: the bar and the counts follow without a reload.
    now = timezone.now()
    Export.objects.filter(pk=export.pk).update(
        status=Status.RUNNING,
        rows_written=4,
        rows_estimate=9,
        started_at=now - timedelta(seconds=2),
        progress_at=now,
    )
    expect(status).to_contain_text("Running: 4 rows written of about 9 · 2 rows a second.")
    progress = status.locator("progress")
    expect(progress).to_have_attribute("value", "4")
    expect(progress).to_have_attribute("max", "9")
    screenshot(page, "export-running")

    # It finishes: a download link replaces the bar, and the polling stops.
    Export.objects.filter(pk=export.pk).update(status=Status.QUEUED)
    assert run_export.call(export.pk) == "done"
    download_link = status.get_by_role("link", name=re.compile(r"Download conversations-.*\.csv\.gz"))
    expect(download_link).to_be_visible()
    expect(status).to_contain_text("Done: 9 rows")
    expect(status).not_to_have_attribute("hx-trigger", re.compile(".*"))
    screenshot(page, "export-done")

    with page.expect_download() as download:
        download_link.click()
    assert download.value.suggested_filename.endswith(".csv.gz")
    text = gzip.decompress(Path(download.value.path()).read_bytes()).decode()
    records = list(csv.DictReader(text.splitlines()))
    assert len(records) == 9 and {r["provider"] for r in records} == {"twilio"}
    assert demo.credentials()["twilio"]["auth_token"] not in text

    # The download is in the audit log, next to the export it came from.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_role("combobox", name="Event").select_option("export_downloaded")
    events = page.locator("table.events tbody tr")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("demo-auditor")
    assert page.console_errors == []
