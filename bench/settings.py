"""Settings for `make bench`: the real settings (DEBUG off), plain static files, the test client's host."""

import json
import os

from convadmin.settings import *  # noqa: F403

STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# One log line per provider call would swamp the benchmark's output.
LOGGING["loggers"]["providers.http"]["level"] = "WARNING"  # noqa: F405
# The Django admin changelist is the benchmark's baseline; the app itself does not install the admin.
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.admin"]  # noqa: F405
ROOT_URLCONF = "bench.urls"
# bench/bulk_batch.py (BULK_LIMIT): its credential's bulk limits, {"label": [requests, seconds, concurrency]}.
BULK_LIMITS = json.loads(os.environ.get("BULK_BENCH_LIMITS") or "{}")
