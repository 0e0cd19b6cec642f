"""SQLite for the test suite: the app's own backend, but a flush may empty the append-only audit table.

Transactional tests (live server, browser) end with a flush, which on SQLite is ``DELETE FROM`` each table,
and the audit table's triggers refuse that. Here the flush lifts those triggers and puts them back in the
same transaction; production has no such path. (PostgreSQL flushes with TRUNCATE, which its trigger
leaves alone, so it needs nothing like this.)
"""

from __future__ import annotations

from django.db.backends.sqlite3 import base, operations

AUDIT_TABLE = "audit_auditevent"


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, **kwargs):
        sql = super().sql_flush(style, tables, **kwargs)
        if AUDIT_TABLE not in tables:
            return sql
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [AUDIT_TABLE]
            )
            triggers = cursor.fetchall()
        return [
            *(f'DROP TRIGGER "{name}"' for name, _ in triggers),
            *sql,
            *(create for _, create in triggers),
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
