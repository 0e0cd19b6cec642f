"""Test settings: the real settings with throwaway keys, a fast password hasher and plain static storage."""

import os

from cryptography.fernet import Fernet

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "x" * 40)
os.environ.setdefault("ENCRYPTION_KEYS", Fernet.generate_key().decode())
# Jobs run in-process when enqueued (after commit), so unit tests see their outcome at once and in order;
# tests/jobs runs the real workers (`pytest -m jobs`).
os.environ.setdefault("TASKS_BACKEND", "immediate")

from convadmin.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
DASHBOARD_CACHE_SECONDS = (
    0  # every view counts afresh (tests/dashboard turns the cache on where it is tested)
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["ENGINE"] = "tests.sqlite_backend"  # noqa: F405  (a flush may empty the audit table)

# A fifth provider only the tests know: adding one is one module (providers/README.md, "Adding a provider").
import providers  # noqa: E402

providers.register("echo", "Echo (tests)", "tests.echo_provider")

# The real-worker bulk test (tests/jobs/test_bulk_workers.py): its credential sends 2 rows at once, 20 a second.
BULK_LIMITS = {"Sandbox Twilio (bulk jobs)": (20, 1, 2)}
