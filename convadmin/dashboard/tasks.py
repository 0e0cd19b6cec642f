"""The dashboard's periodic jobs (JOBS_SCHEDULE)."""

from __future__ import annotations

from datetime import timedelta

from django.tasks import task
from django.utils import timezone

from convadmin.dashboard import rollup
from convadmin.dashboard.models import HourlyOutcome


@task
def roll_up_latency() -> int:
    return rollup.roll_up_latency()


@task
def refresh_dashboard(hours: int = 48) -> int:
    """Count the last ``hours`` of records again: heals what no signal saw (``.update()``, ``bulk_create``).
    The first run after the app is installed counts every record."""
    now = timezone.now()
    if not HourlyOutcome.objects.exists():  # first run after install: count every record once
        return rollup.rebuild_outcomes()
    return rollup.rebuild_outcomes(now - timedelta(hours=hours))
