from __future__ import annotations

from django.db import models


class ScheduledJob(models.Model):
    """When the clock last enqueued one periodic task; a conditional update claims each run exactly once."""

    task_path = models.CharField(max_length=200, primary_key=True)
    last_enqueued_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.task_path


class Heartbeat(models.Model):
    """The last time a worker ran the heartbeat job (enqueued by the clock): proof that both are alive."""

    name = models.CharField(max_length=50, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
