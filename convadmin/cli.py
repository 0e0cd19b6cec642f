"""What every management command does with its input before anything is sent or saved.

:func:`read_json_file` reads a ``--file`` argument and refuses, with a clear message, whatever the commands
cannot take (missing or too large, not UTF-8, not JSON, nested too deep to parse safely, text that cannot be
stored, NaN/Infinity); :func:`database_problem` says why the database cannot be used (unreachable, a missing
SQLite file or directory, not migrated). Commands turn both into exit 2 (the command-line contract): commands that
need the database subclass :class:`DatabaseCommand`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from providers.base import storable_text, value_errors

INVALID = 2
#: The largest ``--file`` read (checked before reading): far above any provider's own limit (4 MB at most).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Deepest nesting parsed (checked before parsing, without recursion: Python's ``json`` recurses and fails
#: near 1,000 levels). Provider rules refuse anything deeper than ``providers.base.MAX_DEPTH`` (32) at its field.
MAX_FILE_DEPTH = 64
FILE = "file"
DATABASE = "database"

# A JSON string (skipped: brackets inside text do not nest) or one bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _too_deep(text: str, limit: int = MAX_FILE_DEPTH) -> tuple[int, int] | None:
    """Where ``text`` first nests deeper than ``limit`` (line, column), or None."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return _position(text, match.start())
        elif token in "]}":
            depth -= 1
    return None


def read_json_file(path: str) -> tuple[Any, dict[str, list[str]]]:
    """``(value, {})`` for a readable JSON file, else ``(None, errors)``.

    ``errors`` maps ``"file"`` (or, for a value that cannot be stored, its field path such as ``topic``) to
    messages that name the file and never quote its content. UTF-8 with or without a byte order mark.
    """

    def refused(message: str) -> tuple[None, dict[str, list[str]]]:
        return None, {FILE: [message]}

    file = Path(path)
    too_large = f"{path} is larger than {MAX_FILE_BYTES // 1048576} MB, the most a command reads."
    try:
        if file.is_dir():
            return refused(f"Cannot read {path}: it is a directory.")
        if file.stat().st_size > MAX_FILE_BYTES:
            return refused(too_large)
        with file.open("rb") as stream:  # a pipe (/dev/stdin) has no size: read at most one byte more
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return refused(f"Cannot read {path}: {exc.strerror or exc.__class__.__name__}.")
    if len(data) > MAX_FILE_BYTES:
        return refused(too_large)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return refused(f"{path} is not UTF-8 text (invalid byte at offset {exc.start}); save it as UTF-8.")
    deep = _too_deep(text)
    if deep:
        return refused(
            f"{path} is nested more than {MAX_FILE_DEPTH} levels deep (line {deep[0]}, column {deep[1]}); "
            "flatten it."
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the message never quotes the file's content.
        return refused(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4,300 digits
        return refused(f"{path} is not usable JSON: {storable_text(str(exc))}.")
    # Lone surrogates ("\ud800"), NUL and NaN/Infinity (also 1e400, which overflows to Infinity) are
    # accepted by ``json`` but cannot be sent or stored: refused here, at their field.
    errors: dict[str, list[str]] = {}
    for error in value_errors(value, max_depth=MAX_FILE_DEPTH):
        errors.setdefault(error.path, []).append(error.message)
    return (None, errors) if errors else (value, {})


def database_problem(using: str = DEFAULT_DB_ALIAS) -> str | None:
    """Why the database cannot be used (unreachable, missing, not migrated), or None when it can.

    Commands ask before they read or send anything, so a missing database is a clear exit 2, not a
    traceback after a provider call.
    """
    connection = connections[using]
    where = _describe(connection.settings_dict)
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        reason = storable_text(
            str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        )
        return (
            f"Cannot use the database {where}: {reason}. Check DATABASE_URL, that the database exists and "
            "is reachable, and run `python manage.py migrate`."
        )
    if plan:
        return (
            f"The database {where} is not migrated ({len(plan)} migration(s) not applied): "
            "run `python manage.py migrate` first."
        )
    return None


def _describe(database: dict[str, Any]) -> str:
    """The database's name and host, never its password."""
    name = str(database.get("NAME") or "")
    host = database.get("HOST")
    port = database.get("PORT")
    return f"{name!r} on {host}{f':{port}' if port else ''}" if host else repr(name)


class DatabaseCommand(BaseCommand):
    """A command that needs the database: when it cannot be used, exit 2 with the reason before anything is
    read or sent, and before the system checks (which connect, and would end in a traceback)."""

    def execute(self, *args: Any, **options: Any) -> Any:
        problem = database_problem(options.get("database") or DEFAULT_DB_ALIAS)
        if problem:
            if options.get("stdout"):
                self.stdout = OutputWrapper(options["stdout"])
            return self.database_refused(problem)
        return super().execute(*args, **options)

    def database_refused(self, problem: str) -> Any:
        """Say why (stderr, exit 2); commands whose output is JSON override this to print it there."""
        raise CommandError(problem, returncode=INVALID)


def json_file_or_exit(path: str) -> Any:
    """The value of a ``--file``, or :class:`CommandError` (exit 2) listing every problem on stderr."""
    value, errors = read_json_file(path)
    if errors:
        lines = [m if key == FILE else f"{key}: {m}" for key, messages in errors.items() for m in messages]
        prefix = "" if list(errors) == [FILE] else f"{path} holds values that cannot be stored:\n  "
        raise CommandError(prefix + "\n  ".join(lines), returncode=INVALID)
    return value
