"""Start-up configuration, checked in a fresh interpreter with only the variables each case sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
KEY = Fernet.generate_key().decode()


def _load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    # CONVADMIN_NO_DOTENV: a developer's .env at the repository root must not fill in what the case leaves out.
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import convadmin.settings as s;"
        "print(s.SECRET_KEY == 'from-file-' + 'x' * 40, s.ENCRYPTION_KEYS)"
    )
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True
    )


def test_a_missing_secret_key_stops_start_up_with_a_clear_message(tmp_path):
    result = _load_settings(tmp_path, ENCRYPTION_KEYS=KEY, CONVADMIN_NO_DOTENV="1")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_missing_encryption_keys_stop_start_up_with_a_clear_message(tmp_path):
    result = _load_settings(tmp_path, SECRET_KEY="k" * 50, CONVADMIN_NO_DOTENV="1")
    assert result.returncode != 0
    assert "ENCRYPTION_KEYS is not set" in result.stderr


def test_secrets_may_be_read_from_files(tmp_path):
    (tmp_path / "secret_key").write_text("from-file-" + "x" * 40)
    (tmp_path / "keys").write_text(KEY)
    result = _load_settings(
        tmp_path,
        SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        ENCRYPTION_KEYS_FILE=str(tmp_path / "keys"),
        CONVADMIN_NO_DOTENV="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"True ['{KEY}']"


def test_debug_alone_no_longer_falls_back_to_built_in_keys(tmp_path):
    result = _load_settings(tmp_path, DEBUG="1", CONVADMIN_NO_DOTENV="1")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "INSECURE_DEV_KEYS=1" in result.stderr  # the message names the way out for local runs


def test_the_development_flag_needs_debug(tmp_path):
    result = _load_settings(tmp_path, INSECURE_DEV_KEYS="1", CONVADMIN_NO_DOTENV="1")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_the_development_flag_uses_built_in_keys_and_every_start_says_so(tmp_path):
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {**clean, "DEBUG": "1", "INSECURE_DEV_KEYS": "1", "CONVADMIN_NO_DOTENV": "1"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "convadmin.W001" in result.stderr
    assert "SECRET_KEY and ENCRYPTION_KEYS: built-in development keys in use" in result.stderr


def test_a_malformed_encryption_key_stops_start_up_with_a_clear_message(tmp_path):
    result = _load_settings(
        tmp_path, SECRET_KEY="k" * 50, ENCRYPTION_KEYS=f"{KEY},not-a-key-secretvalue", CONVADMIN_NO_DOTENV="1"
    )
    assert result.returncode != 0
    assert "ENCRYPTION_KEYS entry 2 of 2 is not a Fernet key" in result.stderr
    assert "not-a-key-secretvalue" not in result.stderr  # the (bad) key itself is never printed
    assert result.stderr.count("Traceback") == 1


def test_the_sqlite_database_is_created_readable_by_its_owner_only(tmp_path):
    db = tmp_path / "new.sqlite3"
    result = _load_settings(
        tmp_path,
        SECRET_KEY="k" * 50,
        ENCRYPTION_KEYS=KEY,
        DATABASE_URL=f"sqlite:///{db}",
        CONVADMIN_NO_DOTENV="1",
    )
    assert result.returncode == 0, result.stderr
    assert db.stat().st_mode & 0o777 == 0o600
