"""Export rows (CSV or JSONL), streamed: every list's web export and the export commands share them.

Rows come from ``values_list`` in keyset batches, never model instances, so memory stays flat at any size.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.utils.http import content_disposition_header

from convadmin.lists.filters import describe_filters
from convadmin.lists.keyset import keyset_batches

FORMATS = ("jsonl", "csv")


CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def dict_rows(
    qs: QuerySet, columns: dict[str, str], order: Sequence[str], *, field: str, batch: int = 2000
) -> Iterator[dict[str, Any]]:
    """``qs`` as dicts in ``order``, newest first by ``(field, id)``; ``columns`` maps names to lookups.

    Date-times become ISO 8601 strings. Kept lean: it runs once per exported row.
    """
    names = list(columns)
    pick = [names.index(name) for name in order]
    dates: list[int] | None = None
    for row in keyset_batches(qs, field=field, fields=tuple(columns.values()), batch=batch):
        values = [row[i] for i in pick]
        if dates is None:  # which columns hold date-times, from the model fields behind them
            dates = [i for i, name in enumerate(order) if _is_datetime(qs.model, columns[name])]
        for i in dates:
            if values[i] is not None:
                values[i] = values[i].isoformat()
        yield dict(zip(order, values, strict=True))


def _is_datetime(model: Any, lookup: str) -> bool:
    *path, last = lookup.split("__")
    for part in path:
        model = model._meta.get_field(part).related_model
    return model._meta.get_field(last).get_internal_type() == "DateTimeField"


class _Echo:
    def write(self, value: str) -> str:
        return value


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell; lists joined by "; ". Text a spreadsheet would run as a formula gets a leading quote,
    but phone numbers (``+15558675310``) and negative numbers stay as they are."""
    if isinstance(value, list):
        value = "; ".join(map(str, value))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        plain_number = value[:1] in "+-" and value[1:].replace(" ", "").replace(".", "", 1).isdigit()
        if not plain_number:
            return "'" + value
    return value


def csv_lines(rows: Iterable[dict[str, Any]], header: Sequence[str]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_cell(row[name]) for name in header])


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


def streaming_response(
    request: HttpRequest,
    *,
    form: forms.Form,
    audit: Callable[[dict[str, Any]], None],
    rows: Callable[[dict[str, Any], str], Iterable[dict[str, Any]]],
    header: Sequence[str],
    name: str,
) -> HttpResponse:
    """A filtered export as a streamed CSV/JSONL download. ``audit`` writes the export's audit row (it gets
    the format and the filters described) in the transaction that precedes the first byte."""
    fmt = request.GET.get("format", "csv")
    if fmt not in FORMATS:
        return HttpResponseBadRequest("Choose format=csv or format=jsonl.", content_type="text/plain")
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return HttpResponseBadRequest(f"Fix the filters first: {problems}", content_type="text/plain")
    filters = form.filters()
    with transaction.atomic(durable=True):
        audit({"format": fmt, "filters": describe_filters(filters)})
    response = StreamingHttpResponse(
        chunked(lines(rows(filters, fmt), fmt, header)), content_type=CONTENT_TYPES[fmt]
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = content_disposition_header(True, f"{name}-{stamp}.{fmt}")
    return response
