"""The dashboard's figures, read from the rollups (a few grouped queries over at most a few thousand rows,
whatever the number of records) and from small tables (credentials, pending records by index)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from django import forms
from django.apps import apps
from django.db.models import Sum
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

import providers
from convadmin.conversations.models import Status
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.models import Credential, provider_choices
from convadmin.dashboard.models import LATENCY_BUCKETS, DailyLatency, DailyOutcome, HourlyOutcome, Outcome
from convadmin.lists.filters import FilterForm, QuickSelect, date_input, day_start, plain_choices

RANGES = (14, 30, 90)
MAX_DAYS = 400
#: The outcomes a chart stacks, bottom up.
STACK = (Outcome.CREATED, Outcome.FAILED, Outcome.UNKNOWN, Outcome.PENDING)
TOP_REASONS = 8


class DashboardFilterForm(FilterForm):
    provider = forms.ChoiceField(
        choices=lambda: [("", "Any provider"), *provider_choices()], required=False, widget=QuickSelect
    )
    credential = forms.ModelChoiceField(
        Credential.objects.only("id", "label").order_by("label"),
        required=False,
        empty_label="Any credential",
        widget=QuickSelect,
    )
    days = forms.TypedChoiceField(
        label="Last",
        choices=[(n, f"{n} days") for n in RANGES],
        coerce=int,
        required=False,
        empty_value=None,
        widget=QuickSelect,
    )
    since = forms.DateField(label="From", required=False, widget=date_input())
    until = forms.DateField(label="To", required=False, widget=date_input())

    FILTERS = ("provider", "credential", "days", "since", "until")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_choices(
            self.fields["credential"],
            Credential.objects.order_by("label").values_list("pk", "label"),
            "Any credential",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and (until - since).days >= MAX_DAYS:
            self.add_error("since", f"Choose at most {MAX_DAYS} days.")
        return data

    def period(self) -> tuple[date, date]:
        """The first and last day shown (inclusive): From/To when given, else the last ``days`` days."""
        filters = self.filters()
        today = timezone.localdate()
        until = filters.get("until") or today
        since = filters.get("since") or until - timedelta(days=(filters.get("days") or RANGES[0]) - 1)
        return since, until


def list_link(**params: Any) -> str:
    """The conversation list filtered like this (empty values left out)."""
    query = "&".join(f"{k}={_quoted(v)}" for k, v in params.items() if v not in (None, ""))
    return f"{_list_url()}?{query}" if query else _list_url()


_PLAIN = re.compile(r"[\w.~-]*\Z", re.ASCII).match


def _quoted(value: Any) -> str:
    """``value`` URL-quoted; a date, an id or a provider name (hundreds of links a page) as it is."""
    text = value.isoformat() if isinstance(value, date) else str(value)
    return text if _PLAIN(text) else quote(text)


def _list_url() -> str:
    return _reverse_list(get_urlconf(), get_script_prefix())


@lru_cache(maxsize=8)
def _reverse_list(urlconf: str | None, prefix: str) -> str:
    return reverse("conversations", urlconf=urlconf)  # the page links it hundreds of times


def percentile(histogram: Mapping[int, int], fraction: float) -> int | None:
    """The upper bound (ms) of the bucket holding the ``fraction`` quantile, or None without calls."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for le_ms in sorted(histogram):
        seen += histogram[le_ms]
        if seen >= fraction * total:
            return le_ms
    return None


def latency_label(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms >= LATENCY_BUCKETS[-1]:
        return f"> {LATENCY_BUCKETS[-2] / 1000:g} s"
    return f"≤ {ms} ms" if ms < 1000 else f"≤ {ms / 1000:g} s"


@dataclass
class Rate:
    label: str
    counts: Counter = field(default_factory=Counter)
    link_failed: str = ""
    link_all: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def settled(self) -> int:
        return self.total - self.counts[Outcome.PENDING]

    @property
    def failed(self) -> int:
        return self.counts[Outcome.FAILED] + self.counts[Outcome.UNKNOWN]

    @property
    def rate(self) -> float | None:
        return self.failed / self.settled if self.settled else None

    @property
    def percent(self) -> str:
        return "—" if self.rate is None else f"{self.rate:.1%}"


@dataclass
class Reason:
    provider: str
    code: str
    message: str
    count: int
    link: str


@dataclass
class Latency:
    label: str
    p50: int | None
    p95: int | None
    calls: int

    @property
    def p50_label(self) -> str:
        return latency_label(self.p50)

    @property
    def p95_label(self) -> str:
        return latency_label(self.p95)


@dataclass
class CredentialHealth:
    credential: Credential
    checked_at: datetime | None
    ok: bool | None
    signed_in_at: datetime | None
    conversations_link: str
    #: When the access token the app keeps expires (Graph sign-in, HighLevel OAuth), None: not known.
    token_expires_at: datetime | None = None

    @property
    def token_expired(self) -> bool:
        return self.token_expires_at is not None and self.token_expires_at <= timezone.now()

    @property
    def state(self) -> str:
        if self.credential.disabled:
            return "Disabled"
        if self.ok is None:
            return "Never checked"
        return "Accepted" if self.ok else "Refused"


def _scope(qs: Any, filters: Mapping[str, Any]) -> Any:
    if filters.get("provider"):
        qs = qs.filter(provider=filters["provider"])
    if filters.get("credential"):
        qs = qs.filter(credential=filters["credential"])
    return qs


def build(form: DashboardFilterForm) -> dict[str, Any]:
    """Everything the page shows."""
    filters = form.filters()
    since, until = form.period()
    days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    scope = {
        "provider": filters.get("provider"),
        "credential": getattr(filters.get("credential"), "pk", None),
    }
    rollup = _scope(DailyOutcome.objects.filter(day__gte=since, day__lte=until).exclude(count=0), filters)

    # Per provider, per day and outcome; and per credential.
    daily: dict[str, dict[date, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in rollup.values("provider", "day", "outcome").annotate(n=Sum("count")).order_by():
        daily[row["provider"]][row["day"]][row["outcome"]] += row["n"]
    by_provider = {p: Rate(providers.NAMES.get(p, p)) for p in sorted(daily)}
    for p, per_day in daily.items():
        for counts in per_day.values():
            by_provider[p].counts.update(counts)
        period = {"since": since, "until": until, "credential": scope["credential"]}
        by_provider[p].link_all = list_link(provider=p, **period)
        by_provider[p].link_failed = list_link(provider=p, status=Status.FAILED, **period)
    labels = dict(Credential.objects.values_list("pk", "label"))
    by_credential: dict[int, Rate] = {}
    for row in rollup.values("credential_id", "outcome").annotate(n=Sum("count")).order_by():
        rate = by_credential.setdefault(row["credential_id"], Rate(labels.get(row["credential_id"], "?")))
        rate.counts[row["outcome"]] += row["n"]
    for pk, rate in by_credential.items():
        period = {"since": since, "until": until, "provider": scope["provider"]}
        rate.link_all = list_link(credential=pk, **period)
        rate.link_failed = list_link(credential=pk, status=Status.FAILED, **period)

    # Top failure reasons.
    reasons = []
    failed = rollup.filter(outcome__in=(Outcome.FAILED, Outcome.UNKNOWN))
    for row in (
        failed.values("provider", "error_code", "error_message")
        .annotate(n=Sum("count"))
        .filter(n__gt=0)
        .order_by("-n", "provider", "error_code")[:TOP_REASONS]
    ):
        reasons.append(
            Reason(
                provider=providers.NAMES.get(row["provider"], row["provider"]),
                code=row["error_code"],
                message=row["error_message"],
                count=row["n"],
                link=list_link(
                    provider=row["provider"],
                    status=Status.FAILED,
                    since=since,
                    until=until,
                    credential=scope["credential"],
                ),
            )
        )

    # Today, per hour.
    today = timezone.localdate()
    start = day_start(today)
    hours = [start + timedelta(hours=n) for n in range(24)]
    hourly: dict[datetime, Counter] = defaultdict(Counter)
    today_rows = _scope(
        HourlyOutcome.objects.filter(hour__gte=start, hour__lt=start + timedelta(days=1)), filters
    )
    for row in today_rows.values("hour", "outcome").annotate(n=Sum("count")).order_by():
        hourly[timezone.localtime(row["hour"]).replace(minute=0, second=0, microsecond=0)][
            row["outcome"]
        ] += row["n"]

    # Latency of create calls.
    latency_rows = _scope(DailyLatency.objects.filter(day__gte=since, day__lte=until), filters).order_by()
    per_provider_day: dict[str, dict[date, Counter]] = defaultdict(lambda: defaultdict(Counter))
    per_provider: dict[str, Counter] = defaultdict(Counter)
    per_credential: dict[int, Counter] = defaultdict(Counter)
    for provider, day, le_ms, n in latency_rows.values_list("provider", "day", "le_ms").annotate(
        n=Sum("count")
    ):
        per_provider_day[provider][day][le_ms] += n
        per_provider[provider][le_ms] += n
    for pk, le_ms, n in latency_rows.values_list("credential_id", "le_ms").annotate(n=Sum("count")):
        per_credential[pk][le_ms] += n

    def latency(label: str, histogram: Counter) -> Latency:
        return Latency(
            label, percentile(histogram, 0.5), percentile(histogram, 0.95), sum(histogram.values())
        )

    latency_series = {
        providers.NAMES.get(p, p): [
            (day, percentile(per_day.get(day, {}), 0.5), percentile(per_day.get(day, {}), 0.95))
            for day in days
        ]
        for p, per_day in sorted(per_provider_day.items())
    }

    return {
        "since": since,
        "until": until,
        "days": days,
        "daily": [
            (p, by_provider[p].label, [(day, daily[p].get(day, Counter())) for day in days])
            for p in sorted(daily)
        ],
        "scope": scope,
        "today": today,
        "hourly": [(hour, hourly.get(hour, Counter())) for hour in hours],
        "provider_rates": list(by_provider.values()),
        "credential_rates": sorted(by_credential.values(), key=lambda r: r.label),
        "reasons": reasons,
        "latency_series": latency_series,
        "provider_latency": [latency(providers.NAMES.get(p, p), h) for p, h in sorted(per_provider.items())],
        "credential_latency": sorted(
            (latency(labels.get(pk, "?"), h) for pk, h in per_credential.items()), key=lambda r: r.label
        ),
        "health": credential_health(filters),
        "open_work": open_work(filters),
    }


def credential_health(filters: Mapping[str, Any]) -> list[CredentialHealth]:
    credentials = Credential.objects.order_by("disabled", "label")
    if filters.get("provider"):
        credentials = credentials.filter(provider=filters["provider"])
    if filters.get("credential"):
        credentials = credentials.filter(pk=filters["credential"].pk)
    health = []
    for credential in credentials:
        signed_in = credential.settings.get("signed_in_at")
        health.append(
            CredentialHealth(
                credential=credential,
                checked_at=credential.last_checked_at,
                ok=credential.last_check_ok,
                signed_in_at=parse_datetime(signed_in) if isinstance(signed_in, str) else None,
                conversations_link=list_link(credential=credential.pk),
                token_expires_at=token_expiry(credential),
            )
        )
    return health


def token_expiry(credential: Credential) -> datetime | None:
    """When the access token the app keeps for ``credential`` expires: the provider's ``TOKEN_EXPIRES_AT``
    secret (Graph's sign-in, HighLevel's OAuth refresh store it with the token). The secrets are decrypted
    here and only that timestamp leaves this function. None: the provider keeps no such token, none is
    stored yet (a typed token), or the secrets cannot be read."""
    key = (
        providers.get(credential.provider).TOKEN_EXPIRES_AT
        if credential.provider in providers.NAMES
        else None
    )
    if not key:
        return None
    try:
        value = credential.get_secrets().get(key)
    except SecretUnreadable:
        return None
    when = parse_datetime(value) if isinstance(value, str) else None
    return when if when is not None and when.tzinfo is not None else None


def open_work(filters: Mapping[str, Any]) -> dict[str, Any]:
    """Records still pending and records whose outcome is unknown (the rollup, all time: no read of the
    records), and
    running bulk batches (a hook: nothing until a bulk app exists)."""
    counts = {
        row["outcome"]: row["n"]
        for row in _scope(
            DailyOutcome.objects.filter(outcome__in=(Outcome.PENDING, Outcome.UNKNOWN)), filters
        )
        .values("outcome")
        .annotate(n=Sum("count"))
        .order_by()
    }
    pending, unknown = counts.get(Outcome.PENDING, 0), counts.get(Outcome.UNKNOWN, 0)
    scope = {
        "provider": filters.get("provider"),
        "credential": getattr(filters.get("credential"), "pk", None),
    }
    return {
        "pending": pending,
        "pending_link": list_link(status=Status.PENDING, **scope),
        "unknown": unknown,
        "unknown_link": list_link(status=Status.FAILED, **scope),
        # Hook for bulk batches: shown once an app labelled "bulk" is installed and offers running_batches().
        "batches": _running_batches(filters),
    }


def _running_batches(filters: Mapping[str, Any]) -> list[Any] | None:
    """Bulk batches that are running (the bulk app's ``Batch``, status "running"), or None without that app.
    Read through the app registry: the dashboard does not import the bulk app."""
    if not apps.is_installed("convadmin.bulk"):
        return None
    batch = apps.get_model("bulk", "Batch")
    return list(_scope(batch.objects.filter(status="running"), filters).select_related("credential")[:10])
