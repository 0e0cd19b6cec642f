"""The dashboard page: filters (provider, credential, period) in the URL like the lists', figures as SVG
charts each with a table, and links into the conversation list filtered the same way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe
from django_htmx.http import push_url

from convadmin.accounts.roles import READERS, role_required
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
    form = figures.DashboardFilterForm(request.GET)
    data = figures.build(form)
    scope = data["scope"]
    context = {
        "form": form,
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
    name = fragment_or_page(request, TEMPLATE, "figures")
    response = render(request, name, context)
    if name != TEMPLATE:
        query = form.query()
        push_url(response, f"{request.path}?{query.urlencode()}" if query else request.path)
    return response
