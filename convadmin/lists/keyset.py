"""Keyset pagination: pages cut by ``(time, id)`` with an opaque cursor, never by OFFSET, and nothing counts
the table: a page fetches ``size + 1`` rows to know whether there is more. With an index on the filter and
``(time, id)``, the first page and the millionth cost the same.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


Key = tuple[datetime, int]


def encode_cursor(when: datetime, pk: int) -> str:
    micros = (when - EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}.{pk}".encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> Key | None:
    """The ``(time, id)`` a cursor carries, or ``None`` when absent or not one of ours."""
    if not token or len(token) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        micros, pk = (int(part) for part in raw.split("."))
        return EPOCH + timedelta(microseconds=micros), pk
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
        return None


@dataclass
class Page:
    rows: list[Any]
    size: int
    newer: str | None  # cursor for ?before= (None: this is the newest page)
    older: str | None  # cursor for ?after= (None: nothing older)
    cursor: bool  # this page was asked for with a cursor

    @property
    def first(self) -> bool:
        return self.newer is None


def _older_than(field: str, key: Key) -> Q:
    when, pk = key
    # The redundant `field <= when` is what lets PostgreSQL use it as an index condition: the OR alone
    # would be a filter on a scan from the very top of the index, and deep pages would get slower.
    return Q(**{f"{field}__lte": when}) & (Q(**{f"{field}__lt": when}) | Q(**{field: when, "pk__lt": pk}))


def _newer_than(field: str, key: Key) -> Q:
    when, pk = key
    return Q(**{f"{field}__gte": when}) & (Q(**{f"{field}__gt": when}) | Q(**{field: when, "pk__gt": pk}))


def keyset_page(
    qs: QuerySet, *, field: str, size: int, after: Key | None = None, before: Key | None = None
) -> Page:
    """One page of ``qs``, newest first by ``(field, id)``, older than ``after`` or newer than ``before``.

    ``qs`` may yield model instances or ``values()`` dicts (which must include ``field`` and ``id``).
    """

    def cursor(row: Any) -> str:
        if isinstance(row, dict):
            return encode_cursor(row[field], row["id"])
        return encode_cursor(getattr(row, field), row.pk)

    if before is not None:
        rows = list(qs.filter(_newer_than(field, before)).order_by(field, "pk")[: size + 1])
        if len(rows) > size:
            rows = rows[:size][::-1]
            return Page(rows, size, newer=cursor(rows[0]), older=cursor(rows[-1]), cursor=True)
        # Fewer than a page is newer: that is the first page, shown full.
        after = None
    rows = list(
        qs.filter(_older_than(field, after) if after else Q()).order_by(f"-{field}", "-pk")[: size + 1]
    )
    more = len(rows) > size
    rows = rows[:size]
    newer = None
    if after is not None:  # past the end, "newer" leads back to the rows just before this cursor
        newer = cursor(rows[0]) if rows else encode_cursor(*after)
    return Page(rows, size, newer=newer, older=cursor(rows[-1]) if more else None, cursor=after is not None)


def keyset_batches(qs: QuerySet, *, field: str, fields: tuple[str, ...], batch: int = 2000):
    """Every row of ``qs`` as ``values_list(*fields)`` tuples, newest first, ``batch`` rows per query.

    ``fields`` must start with ``field`` and ``"id"``. Memory stays flat whatever the table size, and no
    server-side cursor is needed (works behind a transaction-pooling proxy too).
    """
    if fields[:2] != (field, "id"):
        raise ValueError(f"fields must start with {field!r} and 'id'")
    key: Key | None = None
    while True:
        page = qs.filter(_older_than(field, key)) if key else qs
        rows = list(page.order_by(f"-{field}", "-pk").values_list(*fields)[:batch])
        yield from rows
        if len(rows) < batch:
            return
        key = rows[-1][0], rows[-1][1]
