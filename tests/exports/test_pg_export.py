"""On PostgreSQL an export job has the database write the lines (convadmin.lists.pg_export): the file must be
byte for byte what the Python path writes, whatever the values."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import JSONField, Value

from convadmin.audit.models import AuditEvent, EventType
from convadmin.audit.views import AUDIT_EXPORT
from convadmin.conversations.export import CONVERSATIONS_EXPORT
from convadmin.conversations.models import Conversation
from convadmin.lists import pg_export
from convadmin.lists.export import dict_rows, encoded, write_chunks
from tests.factories import ConversationFactory, CredentialFactory, UserFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL writes the lines only there"),
]

NASTY = [
    "",
    " ",
    "plain",
    'say "hi"',
    "a,b",
    "line\nbreak",
    "cr\rlf\r\n",
    "tab\there",
    "back\\slash",
    "\\",
    '\\"',
    "é ü 中文 😀 e\u0301",
    "\u2028\u2029\ufeff",
    "\x01\x1f\x7f",
    "'quoted",
    '"',
    '""',
    ",",
    "; ",
    '", "',
    "[x]",
    "null",
    "50%",
    "%s %(x)s",
    # What a spreadsheet would run, and the plain signed numbers it would not.
    "=1+1",
    "+cmd",
    "-cmd",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "=",
    "+",
    "-",
    "@",
    "+ ",
    "+15558675310",
    "-2.5",
    "+ 1 2",
    "+.5",
    "-.",
    "+1.2.3",
    "+1e5",
    "--1",
    "+1\n",
    "+²",
    "-\u0663.\u0665",  # Arabic-Indic digits: str.isdigit() says digits
    "+½",
    '=HYPERLINK("http://x.test", "a,b")',
    "-1\r\n2",
]

#: Participants PostgreSQL writes (lists of strings), and what it leaves to Python (anything else, and
#: strings its shortcut cannot split).
PARTICIPANTS = [
    [],
    [""],
    ["a"],
    ["a", "b", "c"],
    ["+15558675310"],
    ["+15558675310", "-2"],
    ["-2", "@bob"],
    ["=x", "y"],
    ["a, b", "c"],
    ['a", "b'],
    ['a", ', "b"],
    ["a\\", "b"],
    ['\\"'],
    ["[", "]"],
    ["😀", "é"],
    ["line\nbreak"],
    ["\x01"],
    [1, 2],
    ["a", None],
    [True],
    [["a"]],
    [{"k": "v"}],
    {"k": "v"},
    "text",
    7,
    None,
]


@pytest.fixture(autouse=True)
def _small_hand_outs(monkeypatch):
    """Lines handed out three at a time within a batch (and held back after one left to Python)."""
    monkeypatch.setattr(pg_export, "_HAND_OUT", 3)


def both_ways(spec, qs, fmt: str, batch: int) -> tuple[bytes, bytes]:
    python = b"".join(data for data, _ in encoded(spec.rows(qs, fmt), fmt, spec.header))
    postgres = b"".join(data for data, _ in pg_export.chunks(spec, qs, fmt, batch=batch))
    return python, postgres


@pytest.fixture
def nasty_conversations():
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    users = [UserFactory(username=name) for name in ("=cmd", 'q"uote,comma', "ünï")]
    credentials = [CredentialFactory(label=label) for label in ("+cmd", "a\nb", "plain")]
    made = []
    for i, text in enumerate(NASTY):
        made.append(
            ConversationFactory(
                credential=credentials[i % 3],
                created_by=users[i % 3],
                provider=["twilio", "mixin", "=x,y"][i % 3],
                status=["created", "failed", "+1"][i % 3],
                name=text,
                external_id=text,
                error_message=text * 3,
                error_code=text[:64],
                error_status=[None, 0, 400, 32767][i % 4],
                outcome_unknown=bool(i % 2),
                participants=[text, "x"] if i % 2 else [text],
                retry_of=made[-1] if i % 5 == 1 else None,
            )
        )
    for i, participants in enumerate(PARTICIPANTS):
        made.append(ConversationFactory(credential=credentials[0], created_by=users[0], participants="-"))
        stored = Value(None, JSONField()) if participants is None else participants  # JSON null
        Conversation.objects.filter(pk=made[-1].pk).update(participants=stored)
    times = [
        start,  # no microseconds
        start + timedelta(microseconds=1),
        start + timedelta(microseconds=120_000),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    for i, conversation in enumerate(made):
        # Every third record shares the time of the one before: ties that the keyset order breaks by id.
        when = times[i % len(times)] if i % 3 else times[(i - 1) % len(times)]
        completed = [None, when, start + timedelta(seconds=1, microseconds=5)][i % 3]
        Conversation.objects.filter(pk=conversation.pk).update(created_at=when, completed_at=completed)
    return made


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("batch", [1, 7, pg_export.COPY_BATCH])
def test_postgresql_writes_the_same_bytes_as_python(nasty_conversations, fmt, batch):
    qs = CONVERSATIONS_EXPORT.queryset({})
    python, postgres = both_ways(CONVERSATIONS_EXPORT, qs, fmt, batch)
    assert len(python.splitlines()) >= len(nasty_conversations)
    assert postgres == python


def test_progress_is_reported_between_statements_while_the_lines_are_written(nasty_conversations):
    seen = []

    def progress(count):  # as the job does: a query, which needs the connection free
        seen.append((count, Conversation.objects.count()))

    qs = CONVERSATIONS_EXPORT.queryset({})
    out = io.BytesIO()
    chunks = pg_export.chunks(CONVERSATIONS_EXPORT, qs, "jsonl", batch=7)
    total = write_chunks(chunks, out, progress=progress, every=0)
    assert total == qs.count() == len(out.getvalue().splitlines())
    counts = [count for count, _ in seen]
    assert counts == sorted(counts) and counts[-1] == total and len(counts) >= total // 7


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("filters", [{"provider": "twilio"}, {"q": "50%"}, {"status": "+1", "q": "%s"}])
def test_the_same_bytes_with_filters(nasty_conversations, fmt, filters):
    qs = CONVERSATIONS_EXPORT.queryset(filters)
    assert qs.exists()
    python, postgres = both_ways(CONVERSATIONS_EXPORT, qs, fmt, 3)
    assert postgres == python


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_same_bytes_for_another_list_with_nulls_and_json_objects(admin, fmt):
    """A list of other columns, in another order: a text that may be NULL (no actor), and a JSON column
    holding objects (left to Python) or lists of strings."""
    columns = {
        "event_time": "event_time",
        "id": "id",
        "event_type": "event_type",
        "actor": "actor__username",
        "target_label": "target_label",
        "extra": "extra",
    }
    header = ("id", "actor", "event_time", "extra", "target_label", "event_type")
    spec = replace(
        AUDIT_EXPORT,
        rows=lambda qs, fmt: dict_rows(qs, columns, header, field="event_time", batch=2),
        header=header,
        columns=columns,
        field="event_time",
    )
    for i, text in enumerate(NASTY[:20]):
        AuditEvent.objects.create(
            event_type=EventType.KEYS_ROTATED,
            actor=admin if i % 2 else None,
            target_label=text,
            extra=[text, "b"] if i % 3 else {"old": text, "new": i},
        )
    python, postgres = both_ways(spec, AuditEvent.objects.all(), fmt, 4)
    assert python.count(b"null" if fmt == "jsonl" else b",,") >= 1
    assert postgres == python


def test_a_column_postgresql_cannot_write_as_python_does_is_refused():
    with pytest.raises(ValueError, match="'ip'"):
        pg_export.Statement.of(
            AuditEvent, {"event_time": "event_time", "id": "id", "ip": "ip"}, ["ip"], "csv"
        )


def test_an_empty_export_is_left_to_python():
    assert pg_export.usable(CONVERSATIONS_EXPORT, CONVERSATIONS_EXPORT.queryset({}))
    assert not pg_export.usable(CONVERSATIONS_EXPORT, Conversation.objects.none())
    assert not pg_export.usable(AUDIT_EXPORT, AuditEvent.objects.all())  # its rows are not dict_rows
