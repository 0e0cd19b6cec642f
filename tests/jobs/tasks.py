"""A job that holds its worker until killed: it says it started by creating a file, then waits."""

from __future__ import annotations

import time
from pathlib import Path

from django.tasks import task


@task
def hold(started_file: str, seconds: float = 60) -> str:
    Path(started_file).write_text("started")
    time.sleep(seconds)
    return "finished"
