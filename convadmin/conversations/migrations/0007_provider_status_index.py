"""PostgreSQL: an index on (provider, status, created_at, id), so the list filtered by a provider and a status
(e.g. "MS Graph, pending": a few hundred records in millions) reads its page straight from the index instead of
walking every record of the provider. The other filters each have their (filter, created_at, id) index
(migration 0001); the search has its trigram index (0002) and a bounded window (queries.conversation_page).

Built CONCURRENTLY (hence ``atomic = False``) so migrating a large, live table does not block writes.
"""

from django.db import migrations

INDEX = "conv_provider_status_created"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            "ON conversations_conversation (provider, status, created_at DESC, id DESC)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("conversations", "0006_conversation_batch")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
