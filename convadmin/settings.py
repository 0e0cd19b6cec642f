"""convadmin settings: everything from the environment (django-environ), no secret in this file.

Each variable may also be read from a file named by ``NAME_FILE`` (e.g. ``SECRET_KEY_FILE``).
A ``.env`` file at the repository root is read when present (``make run`` writes one).
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()
if (BASE_DIR / ".env").is_file() and not os.environ.get("CONVADMIN_NO_DOTENV"):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
#: Development only: with DEBUG, a missing SECRET_KEY / ENCRYPTION_KEYS falls back to built-in keys.
INSECURE_DEV_KEYS = DEBUG and env.bool("INSECURE_DEV_KEYS", default=False)
#: Which built-in keys are in use (a system check says so at every start).
DEV_KEYS_IN_USE: list[str] = []


def _required(name: str, dev_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if INSECURE_DEV_KEYS:
        DEV_KEYS_IN_USE.append(name)
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Set {name} (or {name}_FILE) in the environment or in .env; "
        "`make run` writes a .env with fresh random values on first run. For a throwaway local run only, "
        "DEBUG=1 with INSECURE_DEV_KEYS=1 uses built-in keys that anyone can read."
    )


def _fernet_keys(value: str) -> list[str]:
    """The comma-separated ENCRYPTION_KEYS, each checked now: a bad key must stop start-up, not every save."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS is empty: set at least one Fernet key.")
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEYS entry {index} of {len(keys)} is not a Fernet key (32 url-safe "
                "base64-encoded bytes). Make one with: python -c "
                '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            ) from None
    return keys


SECRET_KEY = _required("SECRET_KEY", "insecure-development-key-only-for-debug")
#: Comma-separated Fernet keys; the first encrypts, all decrypt (see rotate_encryption_keys).
ENCRYPTION_KEYS = _fernet_keys(_required("ENCRYPTION_KEYS", "ZGV2ZWxvcG1lbnQta2V5LW9ubHktZm9yLWRlYnVnISE="))
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "convadmin.accounts",
    "convadmin.audit",
    "convadmin.exchanges",
    "convadmin.credentials",
    "convadmin.drafts",
    "convadmin.conversations",
    "convadmin.bulk",
    "convadmin.dashboard",
    "django_tasks_db",
    "convadmin.jobs",
    "convadmin.exports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "convadmin.accounts.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "convadmin.urls"
WSGI_APPLICATION = "convadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "convadmin.accounts.roles.roles_context",
            ],
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The file holds live sessions: create it owner-only (SQLite gives its -wal/-shm files the same mode).
    _db = Path(DATABASES["default"]["NAME"])
    if (
        str(_db) != ":memory:"
        and not str(_db).startswith("file:")
        and _db.parent.is_dir()
        and not _db.exists()
    ):
        os.close(os.open(_db, os.O_CREAT | os.O_WRONLY, 0o600))
    # WAL + a busy timeout keep the dev server and a CLI run from tripping over each other's locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 10, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): five failures for one username from one address lock it for 15 minutes.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Exports (README "Exports"): more than EXPORT_STREAM_MAX_ROWS rows (or gzip) run as a job that writes the file
# into the EXPORT_STORAGE storage (an alias of STORAGES): a local folder (owner-only), or an S3-compatible bucket
# through django-storages (`pip install '.[s3]'`) when EXPORT_S3_BUCKET is set; AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY come from the environment, read by boto3 itself.
EXPORT_ROOT = Path(env.str("EXPORT_ROOT", default=str(BASE_DIR / "var" / "exports")))
#: Where a job writes a file until it is complete (then moved into storage): local to the worker.
EXPORT_TMP_DIR = Path(env.str("EXPORT_TMP_DIR", default=str(EXPORT_ROOT / ".partial")))
STORAGES["exports"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": EXPORT_ROOT, "file_permissions_mode": 0o600, "directory_permissions_mode": 0o700},
}
if EXPORT_S3_BUCKET := env.str("EXPORT_S3_BUCKET", default=""):
    STORAGES["exports"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": EXPORT_S3_BUCKET,
            "endpoint_url": env.str("EXPORT_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("EXPORT_S3_REGION", default="") or None,
            "location": env.str("EXPORT_S3_PREFIX", default="exports"),
            "file_overwrite": False,
        },
    }
EXPORT_STORAGE = env.str("EXPORT_STORAGE", default="exports")
EXPORT_KEEP_HOURS = env.int("EXPORT_KEEP_HOURS", default=24)
EXPORT_STREAM_MAX_ROWS = env.int("EXPORT_STREAM_MAX_ROWS", default=50_000)
#: A running export without progress for this long has lost its worker: the sweep marks it failed.
EXPORT_STALL_MINUTES = env.int("EXPORT_STALL_MINUTES", default=10)

# Security: strict CSP with nonces (htmx's own indicator style is turned off; ours is in static/).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
CSRF_COOKIE_HTTPONLY = True
# Behind TLS in production; plain http on 127.0.0.1 for `make run`.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Outbound provider calls.
PROVIDER_TIMEOUT = env.float("PROVIDER_TIMEOUT", default=20.0)
PROVIDER_CONNECT_TIMEOUT = env.float("PROVIDER_CONNECT_TIMEOUT", default=5.0)
#: Wall-clock limit of one provider session (a create with its token refresh and read-back; a look-up gets its
#: own), whatever a slow or dripping provider does. A job holds a record for twice this plus a margin.
PROVIDER_DEADLINE = env.float("PROVIDER_DEADLINE", default=45.0)
#: How long after an unknown outcome the settle job looks the conversation up again (replication lag).
SETTLE_DELAY = env.int("SETTLE_DELAY", default=120)
#: Microsoft sign-in redirect base, e.g. https://convadmin.example.com (defaults to the request's host).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")
#: Hosts a credential's base_url / login_url may name besides each provider's own and loopback, e.g.
#: "proxy.corp.example,*.mirror.example,10.0.0.5" (listing a private address is the opt-in for it).
PROVIDER_EXTRA_HOSTS = env.list("PROVIDER_EXTRA_HOSTS", default=[])

# Background jobs (django.tasks): TASKS_BACKEND = database (default; the app's own database, `manage.py
# db_worker`) | celery (Celery on Redis, `celery -A convadmin.celery worker`) | immediate (in-process, at enqueue).
TASKS_BACKEND = env.str("TASKS_BACKEND", default="database")
_TASK_BACKENDS = {
    "database": {"BACKEND": "django_tasks_db.DatabaseBackend"},
    "celery": {
        "BACKEND": "django_tasks_celery.CeleryBackend",
        # Naming the app loads convadmin/celery.py only when this backend is chosen.
        "OPTIONS": {"CELERY_APP": "convadmin.celery.app"},
    },
    "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
}
if TASKS_BACKEND not in _TASK_BACKENDS:
    raise ImproperlyConfigured(
        f"TASKS_BACKEND must be one of {', '.join(_TASK_BACKENDS)}, not {TASKS_BACKEND!r}."
    )
TASKS = {"default": _TASK_BACKENDS[TASKS_BACKEND]}
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
# A job whose worker died is delivered again after this many seconds; it must exceed the longest job.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
#: Periodic jobs `manage.py jobs_clock` enqueues: task path -> every N seconds.
JOBS_SCHEDULE = {
    "convadmin.jobs.tasks.heartbeat": 60,
    "convadmin.conversations.tasks.settle_conversations": 60,
    "convadmin.jobs.tasks.prune_task_results": 24 * 3600,
    "convadmin.exports.tasks.sweep_exports": 300,
    "convadmin.dashboard.tasks.roll_up_latency": 60,
    "convadmin.dashboard.tasks.refresh_dashboard": 3600,
    "convadmin.bulk.tasks.resume_stalled_batches": 60,
}
#: The dashboard keeps its figures this many seconds per filter in each server process (the page says when
#: they were counted); 0: counted on every view.
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=60)
#: Finished task results older than this are deleted by the daily prune job (database backend).
JOBS_RESULT_RETENTION_DAYS = env.int("JOBS_RESULT_RETENTION_DAYS", default=14)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "providers.http": {"level": env.str("PROVIDER_LOG_LEVEL", default="INFO")},
        # httpx logs full, unmasked URLs at INFO: our own providers.http logger says it all, redacted.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "convadmin": {"level": "INFO"},
    },
}

if not DEBUG and not env.bool("SECURE_COOKIES", default=True):
    # Plain-http production-like runs (DEBUG=0 make run on 127.0.0.1) must say so explicitly.
    SILENCED_SYSTEM_CHECKS = ["security.W012", "security.W016"]
