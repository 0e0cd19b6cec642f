"""PostgreSQL writes an export's lines itself — byte for byte what :mod:`convadmin.lists.export` writes in
Python (the same cells, ISO dates, CSV quoting and formula guard, JSON escaping and key order, line endings) —
two to three times as fast, the worker mostly idle: no row is decoded by Django and encoded again in Python.

Rows come in keyset batches like the Python path's: one ``COPY (SELECT …) TO STDOUT`` per batch, each a short
statement on the job's usual connection, in PostgreSQL's binary COPY format, so that each row arrives as its
key (time, id) for the next batch, then its finished line, untouched. A JSON column is written by PostgreSQL
when it holds a list of strings (what a list exports); a row holding anything else there comes back without
a line and is written by the Python path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Model, QuerySet, TextField
from django.db.models.functions import Cast

from convadmin.lists.export import ExportList, csv_lines, lines
from convadmin.lists.keyset import _older_than

#: Rows per COPY statement (progress is reported between statements), and lines handed out at once.
COPY_BATCH = 20_000
_HAND_OUT = 1000

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_SIGNATURE = 19  # binary COPY's file header, before the first row
_LINE = 30  # a row: field count (2), time (4 + 8), id (4 + 8), line length (4), then the line

_KINDS = {
    **dict.fromkeys(("CharField", "TextField", "SlugField"), "text"),
    **dict.fromkeys(
        (
            "AutoField",
            "BigAutoField",
            "SmallAutoField",
            "IntegerField",
            "BigIntegerField",
            "SmallIntegerField",
            "PositiveIntegerField",
            "PositiveBigIntegerField",
            "PositiveSmallIntegerField",
        ),
        "int",
    ),
    "BooleanField": "bool",
    "DateTimeField": "time",
    "JSONField": "list",
}


def usable(spec: ExportList, qs: QuerySet) -> bool:
    """Whether PostgreSQL can write ``spec``'s rows of ``qs``: the list says how (``spec.columns``), the
    database is PostgreSQL through psycopg 3 (its ``copy()``), Django reads times in UTC (USE_TZ), and ``qs``
    is not ``.none()``."""
    database = connections[qs.db]
    return (
        spec.columns is not None
        and database.vendor == "postgresql"
        and database.Database.__name__ == "psycopg"
        and settings.USE_TZ
        and not qs.query.is_empty()
    )


def chunks(
    spec: ExportList, qs: QuerySet, fmt: str, *, batch: int = COPY_BATCH
) -> Iterator[tuple[bytes, int | None]]:
    """``qs``'s export as ``fmt``, newest first by ``(spec.field, id)``: ``(bytes, rows so far)`` at the end
    of each batch, ``(bytes, None)`` within one. The connection is busy within a batch, free between."""
    assert spec.columns is not None
    statement = Statement.of(qs.model, spec.columns, spec.header, fmt)
    field = spec.field
    if tuple(spec.columns.values())[:2] != (field, "id"):
        raise ValueError(f"columns must start with {field!r} and 'id'")
    if fmt == "csv":
        yield next(csv_lines((), spec.header)).encode(), 0
    count, key = 0, None
    with connections[qs.db].cursor() as cursor:
        while True:
            page = qs.filter(_older_than(field, key)) if key else qs
            rows, params = (
                page.order_by(f"-{field}", "-pk")
                .values_list(*statement.selected)[:batch]
                .query.sql_with_params()
            )
            got = 0
            out: list[Any] = []  # lines not yet handed out
            left: list[tuple[int, int]] = []  # (index in out, id) of the lines left to Python
            with cursor.copy(
                f"COPY ({statement.before}({rows}){statement.after}) TO STDOUT (FORMAT binary)", params
            ) as copy:
                # One block per row (libpq's promise); the file header comes with the first.
                data = copy.read()[_SIGNATURE:] or copy.read()
                while len(data) > 2:  # the trailer: -1 as the field count
                    line = data[_LINE:]
                    if not line:  # NULL
                        left.append((len(out), int.from_bytes(data[18:26], "big", signed=True)))
                    out.append(line)
                    got += 1
                    if len(out) >= _HAND_OUT and not left:  # written while PostgreSQL carries on
                        yield b"".join(out), None
                        out = []
                    last, data = data, copy.read()
                for _ in copy:  # after the trailer: the statement's end
                    pass
            for index, pk in left:  # the COPY is over: the connection is free again
                out[index] = _python_line(spec, qs, fmt, pk)
            count += got
            yield b"".join(out), count
            if got < batch:
                return
            micros = int.from_bytes(last[6:14], "big", signed=True)
            key = _PG_EPOCH + timedelta(microseconds=micros), int.from_bytes(last[18:26], "big", signed=True)


def _python_line(spec: ExportList, qs: QuerySet, fmt: str, pk: int) -> bytes:
    rows = spec.rows(qs.filter(pk=pk), fmt)
    return "".join(islice(lines(rows, fmt, spec.header), 1 if fmt == "csv" else 0, None)).encode()


# --- the statement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """``SELECT time, id, line`` around a query of ``selected`` (newest first): the SQL ``before`` and
    ``after`` that query's (``%`` written ``%%``). The line is NULL when Python must write it.

    Two steps: each cell's value as Python writes it (an ISO date, "True", a list's strings joined) is
    computed once per row — ``OFFSET 0`` keeps PostgreSQL from folding the steps together and computing it
    again for each use — then the line: CSV cells guarded, quoted and joined; a JSON object by
    ``row_to_json`` (json.dumps's escaping, key order and separators).
    """

    selected: tuple[Any, ...]
    before: str
    after: str

    @classmethod
    def of(cls, model: type[Model], columns: Mapping[str, str], header: Sequence[str], fmt: str) -> Statement:
        lookups = list(columns.values())
        kinds = [_kind(model, lookup) for lookup in lookups]
        lists = [i for i, kind in enumerate(kinds) if kind == "list"]
        # A JSON column's text too, computed once (in the query the steps read).
        selected = (*lookups, *(Cast(lookups[i], TextField()) for i in lists))
        names = [f"c{i}" for i in range(len(kinds))] + [f"t{i}" for i in lists]
        values = ", ".join(_value(kind, i, fmt) + f" AS v{i}" for i, kind in enumerate(kinds))
        at = {name: i for i, name in enumerate(columns)}
        if fmt == "csv":
            cells = ", ".join(_csv_cell(kinds[at[name]], f"v.v{at[name]}") for name in header)
            line, lateral = f"concat_ws(',', {cells}) || E'\\r\\n'", ""
        else:
            if any(len(name.encode()) > 63 for name in header):  # PostgreSQL would shorten the key
                raise ValueError("a JSON key PostgreSQL writes is at most 63 bytes")
            names_ = ", ".join(f"v.v{at[name]} AS {_identifier(name)}" for name in header)
            line, lateral = "row_to_json(x)::text || E'\\n'", f", LATERAL (SELECT {names_}) AS x"
        complete = " AND ".join(f"v.v{i} IS NOT NULL" for i in lists) or "true"
        # The key in the types chunks() reads; ordered at each step, so that PostgreSQL knows the order
        # is kept (no sort) and the order is the query's, not an accident.
        before = (
            f"SELECT v.k0, v.k1, CASE WHEN {complete} THEN {line} END FROM (SELECT "  # noqa: S608 (no input)
            f"q.c0::timestamptz AS k0, q.c1::bigint AS k1, {values} FROM "
        )
        after = (
            f" AS q({', '.join(names)}) ORDER BY k0 DESC, k1 DESC OFFSET 0) AS v{lateral} "
            "ORDER BY v.k0 DESC, v.k1 DESC"
        )
        return cls(selected, before.replace("%", "%%"), after.replace("%", "%%"))


def _kind(model: type[Model], lookup: str) -> str:
    *path, last = lookup.split("__")
    for part in path:
        model = model._meta.get_field(part).related_model
    field = model._meta.get_field(last)
    if field.many_to_one:  # "retry_of_id": the id it holds
        field = field.target_field
    kind = _KINDS.get(field.get_internal_type())
    if kind is None:
        raise ValueError(f"PostgreSQL cannot write {lookup!r} ({field.get_internal_type()}) as Python does")
    return kind


def _value(kind: str, i: int, fmt: str) -> str:
    """Column ``q.c{i}`` as Python writes it (before CSV quoting or JSON escaping); NULL for None, and for
    JSON that is not a list of strings."""
    x = f"q.c{i}"
    if kind == "time":  # datetime.isoformat() in UTC: microseconds only when there are some
        return f"replace(to_char({x} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '') || '+00:00'"
    if fmt == "jsonl" and kind != "list":  # row_to_json writes numbers, true/false, escaped strings
        return x
    if kind == "int":
        return f"{x}::text"
    if kind == "bool":
        return f"CASE WHEN {x} THEN 'True' WHEN NOT {x} THEN 'False' END"
    if kind == "text":
        return x
    # A list of strings: CSV joins them with "; ", JSON writes ["a","b"]. PostgreSQL's text of the list,
    # t, is ["a", "b"] escaped as json.dumps escapes: without a backslash in it, the strings are as written
    # there; without a '"' in any string (written \"), ", " can only be a separator. Else string by string.
    t = f"q.t{i}"
    elements = f"FROM jsonb_array_elements_text({x}) WITH ORDINALITY AS a(e, n)"
    if fmt == "csv":
        text = (
            f"CASE WHEN {t} = '[]' THEN '' WHEN strpos({t}, '\\') = 0 "
            f"THEN replace(substr({t}, 3, length({t}) - 4), '\", \"', '; ') "
            f"ELSE (SELECT string_agg(e, '; ' ORDER BY n) {elements}) END"
        )
    else:
        text = (
            f"(CASE WHEN strpos({t}, '\\\"') = 0 THEN replace({t}, '\", \"', '\",\"') "
            f"ELSE (SELECT array_to_json(array_agg(e ORDER BY n))::text {elements}) END)::json"
        )
    strings = f"jsonb_typeof({x}) = 'array' AND NOT {x} @? 'strict $[*] ? (@.type() != \"string\")'"
    return f"CASE WHEN {strings} THEN {text} END"


def _csv_cell(kind: str, v: str) -> str:
    return f"COALESCE({_csv_text(v)}, '')" if kind in ("text", "list") else f"COALESCE({v}, '')"


def _csv_text(v: str) -> str:
    """``v`` as ``csv.writer`` writes it after ``_cell``'s formula guard: a leading quote when a spreadsheet
    would run it (but not a plain signed number), then in quotes when it holds ``,`` ``"`` CR or LF."""
    guard = f"CASE WHEN {v} ~ '^[=+@\\t\\r-]' AND {v} !~ {_literal(_plain_number())} THEN '''' ELSE '' END"
    return (
        f"CASE WHEN {v} !~ '^[=+@\\t\\r-]|[\",\\r\\n]' THEN {v} "
        f"WHEN {v} ~ '[\",\\r\\n]' THEN '\"' || {guard} || replace({v}, '\"', '\"\"') || '\"' "
        f"ELSE {guard} || {v} END"
    )


@cache
def _plain_number() -> str:
    """The regular expression of ``_cell``'s plain number: a sign, then digits (what ``str.isdigit`` calls
    a digit, in any script), spaces and at most one dot, with at least one digit."""
    ranges: list[list[int]] = []
    for code in range(sys.maxunicode + 1):
        if chr(code).isdigit():
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    digit = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)
    return f"^[+-](?=.*[{digit}])[ {digit}]*(\\.[ {digit}]*)?$"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
