"""The dashboard page: filters (provider, credential, period) in the URL like the lists', figures as SVG
charts each with a table, and links into the conversation list filtered the same way."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_safe
from django_htmx.http import push_url

from convadmin.accounts.roles import READERS, role_required, user_roles
from convadmin.conversations.models import Conversation, Status
from convadmin.dashboard import charts, figures
from convadmin.dashboard.models import Outcome
from convadmin.lists.views import fragment_or_page

TEMPLATE = "dashboard/dashboard.html"
#: Which list filter shows the records of an outcome (an unknown outcome is saved as failed).
LIST_STATUS = {
    Outcome.CREATED: Status.CREATED,
    Outcome.FAILED: Status.FAILED,
    Outcome.UNKNOWN: Status.FAILED,
    Outcome.PENDING: Status.PENDING,
}


def _segments(counts: Counter, link: dict[str, Any]) -> list[charts.Segment]:
    """The stack of one bar; a segment that is drawn links to its records (an empty one is not drawn)."""
    return [
        charts.Segment(
            outcome.value,
            outcome.label,
            counts[outcome],
            figures.list_link(status=LIST_STATUS[outcome], **link) if counts[outcome] else "",
        )
        for outcome in figures.STACK
    ]


def _table(first: str, rows: Sequence[tuple[Any, Counter]], fmt: str) -> Any:
    return charts.table(
        [first, *(o.label for o in figures.STACK)],
        [[when.strftime(fmt), *(counts[o] for o in figures.STACK)] for when, counts in rows],
    )


def _tick_every(n: int) -> int:
    return max(1, -(-n // 10))


def daily_chart(
    provider: str, label: str, rows: Sequence[tuple[date, Counter]], scope: dict[str, Any]
) -> Any:
    every = _tick_every(len(rows))
    columns = [
        charts.Column(
            label=day.isoformat(),
            tick=day.strftime("%d %b") if i % every == 0 else "",
            segments=_segments(
                counts, {"provider": provider, "credential": scope["credential"], "since": day, "until": day}
            ),
        )
        for i, (day, counts) in enumerate(rows)
    ]
    return charts.stacked_bars(f"{label}: creates per day", columns, chart_id=f"daily-{provider}")


def hourly_chart(today: date, rows: Sequence[tuple[Any, Counter]], scope: dict[str, Any]) -> Any:
    columns = [
        charts.Column(
            label=hour.strftime("%H:00"),
            tick=hour.strftime("%H") if hour.hour % 3 == 0 else "",
            segments=_segments(counts, {**scope, "since": today, "until": today}),
        )
        for hour, counts in rows
    ]
    return charts.stacked_bars("Creates per hour today", columns, chart_id="hourly")


def latency_chart(label: str, rows: Sequence[tuple[date, int | None, int | None]]) -> Any:
    every = _tick_every(len(rows))
    ticks = [day.strftime("%d %b") if i % every == 0 else "" for i, (day, _, _) in enumerate(rows)]
    return charts.lines(
        f"{label}: create call latency per day (p50 and p95)",
        ticks,
        [("p50", "p50", [r[1] for r in rows]), ("p95", "p95", [r[2] for r in rows])],
        chart_id=f"latency-{label.lower().replace(' ', '-')}",
    )


@role_required(READERS)
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    """The page, or its ``#figures`` for htmx. The figures (every query and chart) are kept
    ``DASHBOARD_CACHE_SECONDS`` per filter, role set and server process, and say when they were counted."""
    form = figures.DashboardFilterForm(request.GET)
    seconds = settings.DASHBOARD_CACHE_SECONDS
    key = _cache_key(request)
    html = cache.get(key) if seconds else None
    if html is None:
        html = render_to_string(f"{TEMPLATE}#figures", _figures_context(form, seconds), request)
        if seconds:
            cache.set(key, html, seconds)
    html = mark_safe(html)  # noqa: S308 - rendered by the template engine above, escaped there
    if fragment_or_page(request, TEMPLATE, "figures") == TEMPLATE:
        return render(request, TEMPLATE, {"form": form, "figures": html})
    query = form.query()
    return push_url(HttpResponse(html), f"{request.path}?{query.urlencode()}" if query else request.path)


def _cache_key(request: HttpRequest) -> str:
    """Figures differ by filter (the query as sent, errors included), by day (the default period ends
    today) and by role (an administrator's empty state links to a new credential)."""
    query = urlencode(sorted(request.GET.lists()), doseq=True)
    roles = ",".join(sorted(user_roles(request.user)))
    digest = hashlib.sha256(f"{timezone.localdate()}|{roles}|{query}".encode()).hexdigest()
    return f"dashboard-figures:{digest}"


def _figures_context(form: figures.DashboardFilterForm, seconds: int) -> dict[str, Any]:
    data = figures.build(form)
    scope = data["scope"]
    context = {
        "form": form,
        "counted_at": timezone.now(),
        "cache_seconds": seconds,
        **data,
        "outcomes": figures.STACK,
        "daily_charts": [
            (label, daily_chart(provider, label, rows, scope), _table("Day", rows, "%Y-%m-%d"))
            for provider, label, rows in data["daily"]
        ],
        "hourly_chart": hourly_chart(data["today"], data["hourly"], scope),
        "hourly_table": _table("Hour", [(timezone.localtime(h), c) for h, c in data["hourly"]], "%H:00"),
        "rate_tables": [("provider", data["provider_rates"]), ("credential", data["credential_rates"])],
        "latency_charts": [
            (
                label,
                latency_chart(label, rows),
                charts.table(
                    ["Day", "p50", "p95"],
                    [
                        [f"{day:%Y-%m-%d}", figures.latency_label(p50), figures.latency_label(p95)]
                        for day, p50, p95 in rows
                    ],
                ),
            )
            for label, rows in data["latency_series"].items()
        ],
        "recent": list(Conversation.objects.select_related("credential", "created_by")[:10]),
        "failures": list(
            Conversation.objects.filter(status=Status.FAILED).select_related("credential", "created_by")[:5]
        ),
        "latency_tables": [
            ("provider", data["provider_latency"]),
            ("credential", data["credential_latency"]),
        ],
    }
    for rate in (*data["provider_rates"], *data["credential_rates"]):
        rate.meter = charts.meter(rate.rate, rate.percent)
    return context
