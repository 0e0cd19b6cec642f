"""Filters and keyset pagination for the conversation list, its export and the audit log.

Pages are cut by ``(time, id)`` with an opaque cursor, never by OFFSET, and nothing counts the table:
a page fetches ``size + 1`` rows to know whether there is more. Every filter has an index (migrations
0001 and 0002), so the first page and the millionth cost the same.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Model, Q, QuerySet
from django.forms.utils import flatatt
from django.http import QueryDict
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential, provider_choices

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEARCH_MAX = 200


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def date_range(field: str, since: date | None, until: date | None) -> Q:
    q = Q()
    if since:
        q &= Q(**{f"{field}__gte": day_start(since)})
    if until:
        q &= Q(**{f"{field}__lt": day_start(until + timedelta(days=1))})
    return q


class QuickSelect(forms.Select):
    """A ``<select>`` built in one pass. Django renders a template per ``<option>``, which a list of every
    user or credential turns into most of the page's time."""

    def use_required_attribute(self, initial: Any) -> bool:
        return False  # filters are optional; and asking would run a lazy choices query once more

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        chosen = set(self.format_value(value))
        options = "".join(
            f'<option value="{escape(str(option))}"{" selected" if str(option) in chosen else ""}>'
            f"{escape(str(label))}</option>"
            for option, label in self.choices
        )
        return format_html(
            '<select name="{}"{}>{}</select>',
            name,
            flatatt(self.build_attrs(self.attrs, attrs)),
            mark_safe(options),  # noqa: S308
        )


def plain_choices(field: forms.Field, pairs: QuerySet, empty: str) -> None:
    """Render a model choice field from ``(value, label)`` rows: no model instance per option, and no
    query unless the form is rendered (htmx fragments leave it out)."""
    field.widget.choices = lambda: [("", empty), *pairs]


def date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def page_size_field() -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label="Per page",
        choices=[(n, str(n)) for n in PAGE_SIZES],
        coerce=int,
        required=False,
        empty_value=DEFAULT_PAGE_SIZE,
        widget=QuickSelect,
    )


class FilterForm(forms.Form):
    """A list's filters (GET): ``FILTERS`` narrow it, ``size`` is the page size, ``since``/``until``
    are whole days in the current time zone (``until`` inclusive). An invalid field is ignored and
    shows its error; the others still apply."""

    FILTERS: tuple[str, ...] = ()

    def __init__(self, data: QueryDict | None = None, *args: Any, **kwargs: Any) -> None:
        if data is not None and not data.get("size"):
            data = data.copy()
            data["size"] = str(DEFAULT_PAGE_SIZE)  # a bound form shows its data, not `initial`
        super().__init__(data, *args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data

    def filters(self) -> dict[str, Any]:
        """The valid, non-empty filters, cleaned."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {k: data[k] for k in self.FILTERS if data.get(k) not in (None, "")}

    def page_size(self) -> int:
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get("size") or DEFAULT_PAGE_SIZE

    def query(self) -> QueryDict:
        """The valid, non-empty filters as submitted, and a page size other than the default: the base of
        every link on the page and of the URL htmx pushes (no ``?q=&provider=&…`` noise)."""
        query = QueryDict(mutable=True)
        for name in self.filters():
            query[name] = self.data[name]
        if self.page_size() != DEFAULT_PAGE_SIZE:
            query["size"] = str(self.page_size())
        return query


class ConversationFilterForm(FilterForm):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=SEARCH_MAX,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "External id, participant or name"}),
        help_text="External id (exact or its start), participant identity, address, email or user id, or name.",
    )
    provider = forms.ChoiceField(
        choices=lambda: [("", "Any provider"), *provider_choices()], required=False, widget=QuickSelect
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Status.choices], required=False, widget=QuickSelect
    )
    credential = forms.ModelChoiceField(
        Credential.objects.only("id", "label").order_by("label"),
        required=False,
        empty_label="Any credential",
        widget=QuickSelect,
    )
    creator = forms.ModelChoiceField(
        get_user_model().objects.only("id", "username").order_by("username"),
        required=False,
        empty_label="Anyone",
        to_field_name="username",
        label="Created by",
        widget=QuickSelect,
    )
    since = forms.DateField(label="From", required=False, widget=date_input())
    until = forms.DateField(label="To", required=False, widget=date_input())
    size = page_size_field()

    FILTERS = ("q", "provider", "status", "credential", "creator", "since", "until")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_choices(
            self.fields["credential"],
            Credential.objects.order_by("label").values_list("pk", "label"),
            "Any credential",
        )
        plain_choices(
            self.fields["creator"],
            get_user_model().objects.order_by("username").values_list("username", "username"),
            "Anyone",
        )


def filter_conversations(qs: QuerySet[Conversation], filters: Mapping[str, Any]) -> QuerySet[Conversation]:
    """Apply ``filters`` (names as in :class:`ConversationFilterForm`; models or ids for FKs)."""
    if filters.get("provider"):
        qs = qs.filter(provider=filters["provider"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("credential"):
        qs = qs.filter(credential=filters["credential"])
    if filters.get("creator"):
        qs = qs.filter(created_by=filters["creator"])
    qs = qs.filter(date_range("created_at", filters.get("since"), filters.get("until")))
    if text := (filters.get("q") or "").strip():
        # search_text holds the lower-cased name, external id and participants, so one LIKE on it covers
        # an external id (exact or prefix), any participant and the name; PostgreSQL answers it from the
        # pg_trgm GIN index (migration 0002). Not icontains: UPPER() would hide the column from the index.
        qs = qs.filter(search_text__contains=text.lower())
    return qs


def describe_filters(filters: Mapping[str, Any]) -> dict[str, str]:
    """Filters as plain strings, for an audit row."""
    out = {}
    for key, value in filters.items():
        if isinstance(value, Model):
            value = getattr(value, "username", None) or str(value)
        elif isinstance(value, date):
            value = value.isoformat()
        out[key] = str(value)
    return out


# Keyset pagination ---------------------------------------------------------------------------------


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
