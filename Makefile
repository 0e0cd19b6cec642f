# convadmin — `make run` serves the app, `make test` runs the whole suite. Both bootstrap .venv themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A Python >= 3.12: $(PYTHON) if given, else the first suitable one on PATH, else pyenv's installed versions.
PYTHON ?= $(shell for p in python3.13 python3.12 python3 python; do \
	  c=$$(command -v $$p 2>/dev/null) && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$c; exit 0; }; \
	done; \
	root=$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv); \
	for c in $$(ls -d $$root/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$c; exit 0; }; \
	done)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Production-like settings for `check --deploy` (values are throwaway; nothing is stored).
DEPLOY_ENV := DEBUG=0 SECRET_KEY=check-deploy-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	ENCRYPTION_KEYS=$$($(PY) -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())') \
	SECURE_SSL_REDIRECT=1 SECURE_HSTS_SECONDS=31536000 SECURE_HSTS_INCLUDE_SUBDOMAINS=1 SECURE_HSTS_PRELOAD=1 \
	ALLOWED_HOSTS=convadmin.example.com DATABASE_URL=sqlite:///:memory:

.PHONY: help venv run test pytest lint format check deploy-check browser demo bench faults bench-http bench-bulk screenshots clean

help:
	@echo "make run    - create .venv, install, write .env (first run), migrate, serve http://$(HOST):$(PORT)"
	@echo "make test   - the whole suite: ruff, manage.py check (+ --deploy), pytest"
	@echo "make browser - Playwright journeys in Debian's chromium; make demo / bench / screenshots"
	@echo "make faults - the fault matrix over real HTTP and the CLI (FAULTS_QUICK=1: the short one); make bench-http"
	@echo "make bench-bulk - a 1,000-row bulk batch against the sandbox with a worker killed mid-call"

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "error: no Python >= 3.12 found on PATH or under pyenv; install one or run make PYTHON=/path/to/python3.12" >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || { echo "error: $(PYTHON) is older than 3.12" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

.env: | $(VENV)/.installed
	@echo "Writing .env with a fresh SECRET_KEY and ENCRYPTION_KEYS (keep it; losing the key loses stored secrets)"
	@umask 077; { \
	  echo "SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	  echo "ENCRYPTION_KEYS=$$($(PY) -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"; \
	} > .env

run: venv .env
	umask 077; $(PY) manage.py migrate --noinput  # db.sqlite3 holds sessions: owner-only
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "convadmin on http://$(HOST):$(PORT)/ with a job worker and the clock (Procfile; Ctrl-C stops all)"
	SECURE_COOKIES=$${SECURE_COOKIES:-0} DEBUG=$${DEBUG:-1} HOST=$(HOST) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(VENV)/bin/honcho start --port $(PORT)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: venv
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check --fail-level WARNING
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

deploy-check: venv
	env -u DJANGO_SETTINGS_MODULE $(DEPLOY_ENV) $(PY) manage.py check --deploy --fail-level WARNING

pytest: venv
	$(VENV)/bin/pytest

test: lint check deploy-check pytest

browser: venv
	$(VENV)/bin/pytest -m browser -p no:randomly tests/browser

# Regenerates the README's images in docs/screenshots/ (committed) from `make demo`'s data, in Debian's chromium.
screenshots: venv
	$(VENV)/bin/pytest -m browser -p no:randomly tests/browser/screenshots.py

SANDBOX_PORT ?= 8401

# The sandbox (four emulated APIs on ports SANDBOX_PORT..+3) and the app (web, worker, clock), seeded with demo users,
# sandbox credentials and sample records. Idempotent; Ctrl-C stops both.
demo: venv .env
	umask 077; $(PY) manage.py migrate --noinput  # db.sqlite3 holds sessions: owner-only
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@mkdir -p .demo; rm -f .demo/sandbox-credentials.json; \
	$(PY) -m providers.sandbox --port $(SANDBOX_PORT) --seed demo --quiet \
	  --credentials-out .demo/sandbox-credentials.json > .demo/sandbox.log 2>&1 & sandbox=$$!; \
	trap 'kill $$sandbox 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 50); do [ -s .demo/sandbox-credentials.json ] && break; sleep 0.1; done; \
	[ -s .demo/sandbox-credentials.json ] || { echo "the sandbox did not start: see .demo/sandbox.log" >&2; exit 1; }; \
	PROVIDER_TIMEOUT=5 $(PY) manage.py seed_demo --credentials .demo/sandbox-credentials.json && \
	echo "convadmin demo on http://$(HOST):$(PORT)/  (sandbox on 127.0.0.1:$(SANDBOX_PORT)-$$(($(SANDBOX_PORT)+3)); Ctrl-C stops)" && \
	SECURE_COOKIES=$${SECURE_COOKIES:-0} DEBUG=$${DEBUG:-1} HOST=$(HOST) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(VENV)/bin/honcho start --port $(PORT)

# Seeds 1,000,000 records into PostgreSQL database convadmin_bench once (BENCH_ROWS=1000000,10000000: 10M too, in
# convadmin_bench10m; unset, 10M is measured once that database is seeded; see bench/run.py), then times over HTTP
# (gunicorn; granian too when it installs) list vs default admin vs tuned admin, the dashboard, create overhead
# and export; writes bench/results.md. Not part of `make test`.
bench: venv
	@$(PY) -c 'import gunicorn' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,production]'
	@$(PY) -c 'import granian' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check granian \
	  || echo "granian did not install: the bench times gunicorn only"
	$(PY) bench/run.py

# The fault matrix (bench/faults.py): sandbox, PostgreSQL convadmin_faults (dropped after; FAULTS_DB=sqlite for
# SQLite), gunicorn and db_workers on loopback; every provider through the web and the CLI. FAULTS_QUICK=1: Twilio,
# the key cases, under 2 minutes (CI runs it). Exits 1 when a case leaves a duplicate, a pending record or a lost outcome.
faults: venv
	@$(PY) -c 'import gunicorn' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,production]'
	$(PY) bench/faults.py

# Over real HTTP (gunicorn, PostgreSQL convadmin_http, 10,000 seeded records): create overhead, and the list page while
# 20 creates wait on a 25 s provider (bench/responsiveness.py). Not part of `make test`.
bench-http: venv
	@$(PY) -c 'import gunicorn' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,production]'
	$(PY) bench/responsiveness.py

# A 1,000-row bulk batch against the sandbox, two db_workers, one killed mid-call (bench/bulk_batch.py): every row
# created or failed, 0 duplicates, the page's progress = the database; PostgreSQL convadmin_bulkbench (dropped
# after; BULK_DB=sqlite for SQLite). Writes its section of bench/results.md. Not part of `make test`.
bench-bulk: venv
	@$(PY) -c 'import gunicorn' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,production]'
	$(PY) bench/bulk_batch.py

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
