"""A job that holds its worker until killed: it says it started by creating a file, then waits.

Run again (a second delivery), it finds the file and finishes at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.tasks import task


@task
def hold(started_file: str, seconds: float = 60) -> str:
    started = Path(started_file)
    if started.exists():
        return "finished on a later attempt"
    started.write_text("started")
    time.sleep(seconds)
    return "finished"
