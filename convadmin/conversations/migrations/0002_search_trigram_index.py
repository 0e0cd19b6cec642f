"""PostgreSQL: a pg_trgm GIN index on search_text, so the list's search box (LIKE '%text%') stays fast
at millions of rows. Other databases keep a plain scan, which is fine at their sizes.

Built CONCURRENTLY (hence ``atomic = False``) so migrating a large, live table does not block writes.
"""

import logging

from django.db import DatabaseError, migrations

logger = logging.getLogger("convadmin")

INDEX = "conv_search_trgm"


def create_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            logger.warning(
                "pg_trgm is not available (%s); the conversation search will scan the table. "
                "Ask a superuser to run CREATE EXTENSION pg_trgm, then migrate conversations 0001 and 0002 again.",
                exc,
            )
            return
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            "ON conversations_conversation USING gin (search_text gin_trgm_ops)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("conversations", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
