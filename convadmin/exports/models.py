from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class Export(models.Model):
    """One export job: what was asked (list, format, gzip, the filters as submitted), how far it got, and the
    file it left in the EXPORT_STORAGE storage until ``expires_at``."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    list_name = models.CharField(max_length=40)
    format = models.CharField(max_length=10)
    gzip = models.BooleanField(default=False)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_written = models.BigIntegerField(default=0)
    rows_estimate = models.BigIntegerField(null=True, blank=True)
    #: The file's name in storage (empty until done and again once expired) and the one a download gets.
    file_name = models.CharField(max_length=255, blank=True)
    download_name = models.CharField(max_length=255)
    size = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    #: Last time the job reported rows: a running export without progress for long has lost its worker.
    progress_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"], name="export_status_expires")]

    def __str__(self) -> str:
        return f"Export #{self.pk} ({self.download_name})"

    @property
    def active(self) -> bool:
        return self.status in (Status.QUEUED, Status.RUNNING)

    @property
    def downloadable(self) -> bool:
        return (
            self.status == Status.DONE
            and bool(self.file_name)
            and self.expires_at is not None
            and self.expires_at > timezone.now()
        )

    @property
    def estimate(self) -> int | None:
        """The estimate of the rows to write, while it still looks right (a planner's guess may fall short)."""
        if self.rows_estimate and self.rows_estimate >= self.rows_written:
            return self.rows_estimate
        return None

    @property
    def rate(self) -> int | None:
        """Rows per second so far (or overall, once done)."""
        end = self.finished_at or self.progress_at
        if not (self.started_at and end and self.rows_written):
            return None
        seconds = (end - self.started_at).total_seconds()
        return round(self.rows_written / seconds) if seconds > 0 else None
