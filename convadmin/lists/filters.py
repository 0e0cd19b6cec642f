"""The filter form every list shares: page size, date range, quick selects; and filters described for an audit row."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import Model, Q, QuerySet
from django.forms.utils import flatatt
from django.http import QueryDict
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

PAGE_SIZES = (25, 50, 100, 200)


DEFAULT_PAGE_SIZE = 50


SEARCH_MAX = 200


_NEEDS_ESCAPE = re.compile("[&<>\"']").search


def escape(text: str) -> str:
    """``text`` HTML-escaped like Django's ``escape`` (the standard library's, quotes too) as a plain str; the
    common case, nothing to escape, costs one regex search instead of five replaces and a SafeString."""
    return html.escape(text) if _NEEDS_ESCAPE(text) else text


class _NoMatch:
    """A search filter that did not validate (e.g. too long): the list shows nothing, and the error why."""

    def __str__(self) -> str:
        return "(invalid)"


NO_MATCH = _NoMatch()


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

    #: ``(value, label)`` rows straight from :func:`plain_choices` (Django's ``choices`` normalizes each one).
    pairs: Callable[[], Iterable] | None = None

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        chosen = set(self.format_value(value))
        options = "".join(
            f'<option value="{escape(str(option))}"{" selected" if str(option) in chosen else ""}>'
            f"{escape(str(label))}</option>"
            for option, label in (self.pairs() if self.pairs else self.choices)
        )
        return format_html(
            '<select name="{}"{}>{}</select>',
            name,
            flatatt(self.build_attrs(self.attrs, attrs)),
            mark_safe(options),  # noqa: S308
        )


def plain_choices(field: forms.Field, pairs: QuerySet | Callable[[], Iterable], empty: str) -> None:
    """Render a model choice field from ``(value, label)`` rows (or a function returning them): no model
    instance per option, and no query unless the form is rendered (htmx fragments leave it out)."""
    field.widget.choices = field.widget.pairs = lambda: [
        ("", empty),
        *(pairs() if callable(pairs) else pairs),
    ]


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
    #: Text searches among FILTERS: an invalid one matches nothing rather than being ignored (which would
    #: show every row as if all matched).
    SEARCHES: tuple[str, ...] = ()

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
        filters = {k: data[k] for k in self.FILTERS if data.get(k) not in (None, "")}
        return filters | {k: NO_MATCH for k in self.SEARCHES if k in self.errors}

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
