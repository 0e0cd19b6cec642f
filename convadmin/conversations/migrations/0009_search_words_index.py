"""PostgreSQL: a GIN index on the words of search_text (``string_to_array(search_text, ' ')``), so a search the
trigram index (0002) cannot answer quickly — a UUID, an e-mail address or a phone number is dozens of common
trigrams, ~0.3 s at ten million records — is still found when it is a whole word (queries.whole_word): one
posting list, whatever the size of the table.

Built CONCURRENTLY (hence ``atomic = False``) so migrating a large, live table does not block writes.
"""

from django.db import migrations

INDEX = "conv_search_words"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            "ON conversations_conversation USING gin (string_to_array(search_text, ' '))"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("conversations", "0008_retry_after")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
