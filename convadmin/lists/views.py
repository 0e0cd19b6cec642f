"""Rendering a filtered list: the whole page, or its ``#results`` partial for htmx."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.http import push_url

from convadmin.lists.keyset import Page, decode_cursor, keyset_page


def fragment_or_page(request: HttpRequest, template: str, fragment: str) -> str:
    """The partial for htmx swaps; the whole page for normal loads and htmx history restores."""
    if request.htmx and not request.htmx.history_restore_request:
        return f"{template}#{fragment}"
    return template


def requested_page(request: HttpRequest, qs: QuerySet, *, field: str, size: int) -> Page:
    """The page of ``qs`` (newest ``field`` first) the request's ``after`` / ``before`` cursor asks for."""
    return keyset_page(
        qs,
        field=field,
        size=size,
        after=decode_cursor(request.GET.get("after")),
        before=decode_cursor(request.GET.get("before")),
    )


def render_list(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """A filtered list: the page, or its ``#results`` for htmx with a clean URL to push (filters set,
    cursor) rather than every empty field of the form."""
    query = context["form"].query()
    context["query"] = query
    name = fragment_or_page(request, template, "results")
    if name == template:
        return render(request, template, context)
    address = query.copy()
    for key in ("after", "before"):
        if request.GET.get(key):
            address[key] = request.GET[key]
    response = render(request, name, context)
    return push_url(response, f"{request.path}?{address.urlencode()}" if address else request.path)
