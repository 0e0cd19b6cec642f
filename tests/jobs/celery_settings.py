"""Test settings for Celery workers that must hand on a lost job within seconds, not an hour."""

from tests.settings import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 2,
    # Kombu looks for lost jobs every interval * throttle seconds (100 s by default).
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
