from __future__ import annotations

import logging
import signal
import sys
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from convadmin.jobs.clock import load_schedule, tick

logger = logging.getLogger("convadmin.jobs")


class Command(BaseCommand):
    help = "Enqueue the periodic jobs of JOBS_SCHEDULE when they are due (run one per deployment; more are safe)."

    def add_arguments(self, parser):
        parser.add_argument("--tick", type=float, default=5.0, help="Seconds between looks at the schedule.")
        parser.add_argument("--once", action="store_true", help="Enqueue what is due now, then exit.")

    def handle(self, *, tick: float, once: bool, **options):
        schedule = load_schedule()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if not once:
            self.stdout.write(f"clock: {len(schedule)} periodic job(s), looking every {tick:g} s")
        try:
            while True:
                for path in self._tick(schedule):
                    self.stdout.write(f"clock: enqueued {path}")
                if once:
                    return
                time.sleep(tick)
                # Like a request's end: drop a connection the database closed or that outlived CONN_MAX_AGE.
                close_old_connections()
        except KeyboardInterrupt:
            return

    def _tick(self, schedule):
        try:
            return tick(schedule)
        except Exception:
            # A broker or database outage must not stop the clock: the run stays due and is retried.
            logger.exception("clock: enqueueing periodic jobs failed; retrying on the next tick")
            return []
