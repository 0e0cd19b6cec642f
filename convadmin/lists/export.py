"""Export rows (CSV or JSONL): streamed for a small web export and the export commands, written to a file
by an export job (convadmin.exports) for a big one. Each list registers what it exports (:func:`register`).

Rows come from ``values_list`` in keyset batches, never model instances, so memory stays flat at any size.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import IO, Any

from django import forms
from django.conf import settings
from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header

from convadmin.lists.filters import FilterForm, describe_filters
from convadmin.lists.keyset import keyset_batches

FORMATS = ("jsonl", "csv")

#: Rows per keyset query of an export: big enough that the queries' own cost is small, small enough that
#: a batch of rows stays a few MB.
EXPORT_BATCH = 5000


CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def dict_rows(
    qs: QuerySet, columns: dict[str, str], order: Sequence[str], *, field: str, batch: int = EXPORT_BATCH
) -> Iterator[dict[str, Any]]:
    """``qs`` as dicts in ``order``, newest first by ``(field, id)``; ``columns`` maps names to lookups.

    Date-times become ISO 8601 strings. Kept lean: it runs once per exported row.
    """
    names = list(columns)
    pick = _getter([names.index(name) for name in order])
    dates = [i for i, name in enumerate(order) if _is_datetime(qs.model, columns[name])]
    for row in keyset_batches(qs, field=field, fields=tuple(columns.values()), batch=batch):
        values = list(pick(row))
        for i in dates:
            if (value := values[i]) is not None:
                values[i] = value.isoformat()
        yield dict(zip(order, values, strict=False))  # same length by construction


def _getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter`` (in C, for speed), always returning a tuple."""
    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return itemgetter(*keys)


def _is_datetime(model: Any, lookup: str) -> bool:
    *path, last = lookup.split("__")
    for part in path:
        model = model._meta.get_field(part).related_model
    return model._meta.get_field(last).get_internal_type() == "DateTimeField"


class _Echo:
    def write(self, value: str) -> str:
        return value


_FORMULA_START = frozenset(("=", "+", "-", "@", "\t", "\r"))
_PLAIN = frozenset((int, float, bool, type(None)))


def _cell(value: Any) -> Any:
    """A CSV cell; lists joined by "; ". Text a spreadsheet would run as a formula gets a leading quote,
    but phone numbers (``+15558675310``) and negative numbers stay as they are."""
    if isinstance(value, list):
        value = "; ".join(map(str, value))
    if isinstance(value, str) and value[:1] in _FORMULA_START:
        plain_number = value[:1] in "+-" and value[1:].replace(" ", "").replace(".", "", 1).isdigit()
        if not plain_number:
            return "'" + value
    return value


def csv_lines(rows: Iterable[dict[str, Any]], header: Sequence[str]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    cells = _getter(header)
    for row in rows:
        # _cell only where it may change something: a call per cell would be a quarter of the export's time.
        yield writer.writerow(
            [
                v
                if v.__class__ in _PLAIN or (v.__class__ is str and v[:1] not in _FORMULA_START)
                else _cell(v)
                for v in cells(row)
            ]
        )


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def lines(rows: Iterable[dict[str, Any]], fmt: str, header: Sequence[str]) -> Iterator[str]:
    return csv_lines(rows, header) if fmt == "csv" else jsonl_lines(rows)


def chunked(texts: Iterable[str], size: int = 256) -> Iterator[str]:
    """Join ``size`` lines per chunk: far fewer writes to a socket or stdout than one per row."""
    buffer: list[str] = []
    for text in texts:
        buffer.append(text)
        if len(buffer) >= size:
            yield "".join(buffer)
            buffer.clear()
    if buffer:
        yield "".join(buffer)


@dataclass(frozen=True)
class ExportList:
    """What one list exports. Its own app registers it (:func:`register`, from ``AppConfig.ready`` so that
    workers know it too); the list's export link and the export jobs read it."""

    name: str  #: in URLs, records and file names: "conversations"
    label: str  #: what the user sees: "Conversations"
    roles: tuple[str, ...]  #: who may export it, follow its jobs and download their files
    form: type[FilterForm]
    queryset: Callable[[dict[str, Any]], QuerySet]  #: the filtered rows, from ``form.filters()``
    rows: Callable[[QuerySet, str], Iterable[dict[str, Any]]]  #: (queryset, format) → row dicts
    header: Sequence[str]
    #: Writes the list's "exported" audit row: ``audit(request, details)``.
    audit: Callable[[HttpRequest, dict[str, Any]], Any]
    list_url: str  #: URL name of the list page
    #: When ``rows`` is ``dict_rows(qs, columns, header, field=field)``: the same ``columns`` and ``field``,
    #: from which PostgreSQL writes an export job's lines itself (convadmin.lists.pg_export), much faster.
    columns: Mapping[str, str] | None = None
    field: str = ""


_LISTS: dict[str, ExportList] = {}


def register(spec: ExportList) -> ExportList:
    _LISTS[spec.name] = spec
    return spec


def registered(name: str) -> ExportList | None:
    return _LISTS.get(name)


def stream_max_rows() -> int:
    return settings.EXPORT_STREAM_MAX_ROWS


def fits_stream(qs: QuerySet, limit: int) -> bool:
    """Whether ``qs`` has at most ``limit`` rows, known from at most ``limit + 1`` of them: no COUNT over
    the whole table."""
    return qs.order_by()[: limit + 1].count() <= limit


def estimate_rows(qs: QuerySet) -> int | None:
    """About how many rows ``qs`` has, cheaply: PostgreSQL's planner estimate (no scan); elsewhere an exact
    count (SQLite databases are small)."""
    if connections[qs.db].vendor == "postgresql":
        try:
            plan = json.loads(qs.order_by().explain(format="json"))
            return int(plan[0]["Plan"]["Plan Rows"])
        except (ValueError, LookupError, TypeError):
            return None
    return qs.order_by().count()


def encoded(rows: Iterable[dict[str, Any]], fmt: str, header: Sequence[str]) -> Iterator[tuple[bytes, int]]:
    """``rows`` as ``fmt``, written by Python: ``(bytes, rows so far)`` in big chunks."""
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for count, row in enumerate(rows, 1):  # noqa: B007 (count is read below)
            yield row

    for text in chunked(lines(counted(), fmt, header), 4096):
        yield text.encode(), count


def write_chunks(
    chunks: Iterable[tuple[bytes, int | None]],
    out: IO[bytes],
    *,
    compress: bool = False,
    progress: Callable[[int], None] = lambda count: None,
    every: float = 1.0,
) -> int:
    """Write ``chunks`` (``(bytes, rows so far)``, from :func:`encoded` or convadmin.lists.pg_export) to the
    binary file ``out`` (gzip when ``compress``), calling ``progress(rows so far)`` about every ``every``
    seconds, after a chunk that says how many rows (None: not now, the database is busy); return how many
    rows were written."""
    count = 0
    sink: IO[bytes] = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) if compress else out
    last = time.monotonic()
    for data, rows in chunks:
        sink.write(data)
        if rows is not None:
            count = rows
            if time.monotonic() - last >= every:
                progress(count)
                last = time.monotonic()
    if compress:
        sink.close()  # writes the gzip trailer; ``out`` stays open
    return count


def file_name(name: str, fmt: str, when: datetime, *, compress: bool = False) -> str:
    return f"{name}-{when.astimezone(UTC):%Y%m%d-%H%M%S}.{fmt}{'.gz' if compress else ''}"


def streaming_response(
    request: HttpRequest, spec: ExportList, form: forms.Form, fmt: str, details: dict[str, Any]
) -> HttpResponse:
    """``form``'s rows as a streamed CSV/JSONL download. The export's audit row (the format, the filters
    described and ``details``) is written in the transaction that precedes the first byte."""
    filters = form.filters()
    with transaction.atomic(durable=True):
        spec.audit(request, {"format": fmt, "filters": describe_filters(filters), **details})
    rows = spec.rows(spec.queryset(filters), fmt)
    response = StreamingHttpResponse(chunked(lines(rows, fmt, spec.header)), content_type=CONTENT_TYPES[fmt])
    name = file_name(spec.name, fmt, datetime.now(UTC))
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response


def export_response(request: HttpRequest, spec: ExportList) -> HttpResponse:
    """A list's export link (``?format=csv|jsonl`` and the filters): the download streamed when the filtered
    rows are few (EXPORT_STREAM_MAX_ROWS), else a page that starts an export job — a long stream would be
    cut off by the server's timeout."""
    fmt = request.GET.get("format", "csv")
    if fmt not in FORMATS:
        return HttpResponseBadRequest("Choose format=csv or format=jsonl.", content_type="text/plain")
    form = spec.form(request.GET)
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return HttpResponseBadRequest(f"Fix the filters first: {problems}", content_type="text/plain")
    limit = stream_max_rows()
    if not fits_stream(spec.queryset(form.filters()), limit):
        context = {"spec": spec, "format": fmt, "query": form.query(), "limit": limit}
        return render(request, "lists/export_job.html", context)
    return streaming_response(request, spec, form, fmt, {"via": "web"})
