"""The dashboard's figures on a small fixture, its rollups, its cost, its roles and its escaping."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from convadmin.conversations.models import Conversation, Status
from convadmin.dashboard import charts, rollup
from convadmin.dashboard.models import DailyLatency, DailyOutcome, HourlyOutcome
from convadmin.exchanges.models import Exchange
from tests.factories import ConversationFactory, CredentialFactory

pytestmark = pytest.mark.django_db
URL = "/conversations/dashboard/"


def at(days_ago: int, hour: int = 10) -> datetime:
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, 15))


def record(credential, when, status=Status.CREATED, **fields) -> Conversation:
    conversation = ConversationFactory(credential=credential, status=status, **fields)
    conversation.created_at = when  # auto_now_add on insert; a second save moves it (and its count)
    conversation.save()
    return conversation


@pytest.fixture
def fixture(db):
    twilio = CredentialFactory(label="Twilio main")
    mixin = CredentialFactory(label="Mixin bot", provider="mixin", settings={})
    for _ in range(3):
        record(twilio, at(1))
    record(twilio, at(1), Status.FAILED, error_code="50433", error_message="Participant already exists")
    record(twilio, at(0), Status.FAILED, error_code="50433", error_message="Participant already exists")
    record(twilio, at(0), Status.FAILED, error_code="", error_message="Timed out", outcome_unknown=True)
    record(twilio, at(0, hour=0), Status.PENDING)
    record(mixin, at(2), Status.CREATED)
    record(mixin, at(2), Status.FAILED, error_code="401", error_message="Unauthorized")
    record(mixin, at(40), Status.CREATED)  # outside the default 14 days
    return twilio, mixin


def test_counts_per_day_provider_and_outcome(auditor_client, fixture):
    response = auditor_client.get(URL)
    assert response.status_code == 200
    daily = {label: rows for _, label, rows in response.context["daily"]}
    assert set(daily) == {"Twilio Conversations", "Mixin"} or len(daily) == 2
    twilio_rows = {
        day: counts for day, counts in next(r for p, _, r in response.context["daily"] if p == "twilio")
    }
    assert +twilio_rows[at(1).date()] == {"created": 3, "failed": 1}
    assert +twilio_rows[at(0).date()] == {"failed": 1, "unknown": 1, "pending": 1}
    mixin_rows = {
        day: counts for day, counts in next(r for p, _, r in response.context["daily"] if p == "mixin")
    }
    assert sum(sum(c.values()) for c in mixin_rows.values()) == 2  # the 40-day-old one is outside
    hourly = dict(response.context["hourly"])
    assert sum(sum(c.values()) for c in hourly.values()) == 3
    assert hourly[timezone.localtime(at(0, hour=0)).replace(minute=0)]["pending"] == 1
    # the table alternative says the same
    html = response.content.decode()
    assert f'<th scope="row">{at(1).date():%Y-%m-%d}</th><td>3</td><td>1</td><td>0</td><td>0</td>' in html
    assert html.count('<svg class="chart"') >= 3


def test_longer_period_and_filters(auditor_client, fixture):
    _, mixin = fixture
    response = auditor_client.get(URL, {"days": 90})
    mixin_rows = next(r for p, _, r in response.context["daily"] if p == "mixin")
    assert sum(sum(c.values()) for _, c in mixin_rows) == 3
    response = auditor_client.get(URL, {"days": 90, "credential": mixin.pk})
    assert [p for p, _, _ in response.context["daily"]] == ["mixin"]
    response = auditor_client.get(URL, {"provider": "twilio"})
    assert [p for p, _, _ in response.context["daily"]] == ["twilio"]
    assert response.context["open_work"]["pending"] == 1
    assert response.context["open_work"]["batches"] == []  # no bulk batch is running
    assert "0</strong> bulk batches running" in response.content.decode()


def test_failure_rates_and_top_reasons(auditor_client, fixture):
    twilio, _ = fixture
    response = auditor_client.get(URL)
    rates = {r.label: r for r in response.context["provider_rates"]}
    twilio_rate = rates["Twilio Conversations"]
    assert (twilio_rate.total, twilio_rate.settled, twilio_rate.failed) == (7, 6, 3)
    assert twilio_rate.percent == "50.0%"
    assert "status=failed" in twilio_rate.link_failed and "provider=twilio" in twilio_rate.link_failed
    by_credential = {r.label: r for r in response.context["credential_rates"]}
    assert by_credential["Mixin bot"].percent == "50.0%"
    reasons = response.context["reasons"]
    assert (reasons[0].code, reasons[0].message, reasons[0].count) == (
        "50433",
        "Participant already exists",
        2,
    )
    assert {(r.code, r.count) for r in reasons[1:]} == {("", 1), ("401", 1)}
    # the link opens the list with the same records
    listed = auditor_client.get(reasons[0].link)
    assert listed.status_code == 200
    assert f"credential={twilio.pk}" not in reasons[0].link  # no credential filter was set


def test_latency_p50_p95_per_provider_and_credential(auditor_client, fixture):
    twilio, _ = fixture
    conversation = Conversation.objects.filter(credential=twilio).first()
    started = at(1)
    for ms in [80] * 10 + [150] * 8 + [2500] * 2:  # p50 in ≤100, p95 in ≤3000
        Exchange.objects.create(
            conversation=conversation,
            credential=twilio,
            purpose="create",
            method="POST",
            url="https://x",
            duration_ms=ms,
            started_at=started,
        )
    Exchange.objects.create(
        credential=twilio,
        purpose="check",
        method="GET",
        url="https://x",
        duration_ms=9000,
        started_at=started,
    )  # not a create: not counted
    assert rollup.roll_up_latency() == 20
    assert rollup.roll_up_latency() == 0  # nothing new
    response = auditor_client.get(URL)
    (twilio_latency,) = response.context["provider_latency"]
    assert (twilio_latency.calls, twilio_latency.p50_label, twilio_latency.p95_label) == (
        20,
        "≤ 100 ms",
        "≤ 3 s",
    )
    assert response.context["credential_latency"][0].label == "Twilio main"
    series = response.context["latency_series"]["Twilio Conversations"]
    assert (at(1).date(), 100, 3000) in series
    assert "<polyline" in response.content.decode() or "<circle" in response.content.decode()


def test_new_exchanges_wait_until_they_are_settled(fixture):
    twilio, _ = fixture
    Exchange.objects.create(
        credential=twilio,
        purpose="create",
        method="POST",
        url="https://x",
        duration_ms=5,
        started_at=timezone.now(),
    )
    assert rollup.roll_up_latency() == 0
    assert rollup.roll_up_latency(now=timezone.now() + timedelta(minutes=10)) == 1
    assert DailyLatency.objects.get().le_ms == 50


def test_rollup_follows_every_outcome_change_and_rebuild_agrees(fixture):
    twilio, _ = fixture
    conversation = record(twilio, at(0, hour=5), Status.PENDING)

    def counts() -> dict:
        return {
            (r.outcome, r.error_code): r.count
            for r in HourlyOutcome.objects.filter(hour=rollup.hour_of(at(0, hour=5)), count__gt=0)
        }

    assert counts() == {("pending", ""): 1}
    conversation.status, conversation.outcome_unknown, conversation.error_code = (
        Status.FAILED,
        True,
        "timeout",
    )
    conversation.save()
    assert counts() == {("unknown", "timeout"): 1}
    conversation.status, conversation.outcome_unknown, conversation.error_code = Status.CREATED, False, ""
    conversation.save()
    assert counts() == {("created", ""): 1}
    conversation.save(update_fields=["refreshed_at"])  # nothing counted changes: no read, no write
    assert counts() == {("created", ""): 1}
    conversation.delete()
    assert counts() == {}
    assert not HourlyOutcome.objects.filter(count=0).exists()  # emptied rows are deleted

    def everything() -> dict:
        return {
            model.__name__: {
                tuple(
                    getattr(r, f)
                    for f in (
                        "hour" if model is HourlyOutcome else "day",
                        "provider",
                        "credential_id",
                        "outcome",
                        "error_code",
                        "error_message",
                    )
                ): r.count
                for r in model.objects.filter(count__gt=0)
            }
            for model in (HourlyOutcome, DailyOutcome)
        }

    before = everything()
    rollup.rebuild_outcomes()
    assert everything() == before
    rollup.rebuild_outcomes(timezone.now() - timedelta(hours=30))
    assert everything() == before


def test_refresh_job_heals_what_no_signal_saw(fixture):
    from convadmin.dashboard.tasks import refresh_dashboard

    twilio, _ = fixture
    conversation = record(twilio, at(0, hour=3))
    Conversation.objects.filter(pk=conversation.pk).update(status=Status.FAILED, error_message="boom")
    refresh_dashboard.call()
    row = HourlyOutcome.objects.get(hour=rollup.hour_of(at(0, hour=3)), count__gt=0)
    assert (row.outcome, row.error_message, row.count) == ("failed", "boom", 1)


def test_page_cost_does_not_grow_with_records_and_reads_no_record_range(auditor_client, fixture):
    twilio, _ = fixture
    auditor_client.get(URL)  # warm the session/user caches
    with CaptureQueriesContext(connection) as small:
        auditor_client.get(URL)
    for n in range(30):
        record(twilio, at(n % 5), Status.FAILED if n % 3 else Status.CREATED, error_message=f"reason {n % 4}")
    with CaptureQueriesContext(connection) as large:
        auditor_client.get(URL)
    assert len(large) == len(small)
    on_records = [q["sql"] for q in large.captured_queries if 'FROM "conversations_conversation"' in q["sql"]]
    # the records are read only for the latest ten and the latest five failures (LIMIT, in index order)
    assert len(on_records) == 2 and all("LIMIT" in sql and "ORDER BY" in sql for sql in on_records)
    assert not any('"conversations_exchange"' in q["sql"] for q in large.captured_queries)


@pytest.mark.parametrize("who", ["support_client", "auditor_client", "admin_client"])
def test_everyone_who_reads_records_sees_it(request, who, fixture):
    assert request.getfixturevalue(who).get(URL).status_code == 200


def test_others_do_not(client, outsider_client):
    assert client.get(URL).status_code == 302
    assert outsider_client.get(URL).status_code == 403


def test_provider_text_is_escaped_in_the_page_and_in_svg(auditor_client, db):
    credential = CredentialFactory(label='Ops <b>"main"</b>')
    record(
        credential,
        at(0),
        Status.FAILED,
        error_code="<x>",
        error_message='</title><script>alert("x")</script>',
    )
    html = auditor_client.get(URL).content.decode()
    assert "<script>alert" not in html and "</title><script>" not in html
    assert "&lt;/title&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<b>" not in html.split("<main", 1)[-1]
    svg = charts.stacked_bars(
        '<a href="javascript:x">',
        [charts.Column('"><script>', "t", [charts.Segment("created", "<i>", 1, "/?a=1&b=2")])],
        chart_id="x",
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and 'href="/?a=1&amp;b=2"' in svg
    assert "style=" not in svg


def test_htmx_filter_swaps_the_figures_and_pushes_a_shareable_url(auditor_client, fixture, htmx_headers):
    response = auditor_client.get(URL, {"provider": "twilio", "credential": ""}, headers=htmx_headers)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="figures"')
    assert response["HX-Push-Url"] == f"{URL}?provider=twilio"


def test_first_refresh_and_the_command_count_every_record(fixture):
    from io import StringIO

    from django.core.management import call_command

    from convadmin.dashboard.tasks import refresh_dashboard

    expected = {(r.day, r.outcome, r.error_code): r.count for r in DailyOutcome.objects.all()}
    assert sum(expected.values()) == Conversation.objects.count() == 10
    HourlyOutcome.objects.all().delete()
    DailyOutcome.objects.all().delete()
    refresh_dashboard.call()  # the first run after install counts the 40-day-old record too
    assert {(r.day, r.outcome, r.error_code): r.count for r in DailyOutcome.objects.all()} == expected
    DailyOutcome.objects.all().delete()
    out = StringIO()
    call_command("rebuild_dashboard", stdout=out)
    assert {(r.day, r.outcome, r.error_code): r.count for r in DailyOutcome.objects.all()} == expected
    assert "outcome rows" in out.getvalue()


def test_running_bulk_batches_are_listed_as_open_work(auditor_client, support):
    from convadmin.bulk.models import Batch

    credential = CredentialFactory(label="Twilio bulk")
    running = Batch.objects.create(
        provider="twilio", credential=credential, created_by=support, file_name="june.csv", status="running"
    )
    Batch.objects.create(
        provider="twilio", credential=credential, created_by=support, file_name="done.csv", status="done"
    )
    page = auditor_client.get("/conversations/dashboard/").content.decode()
    assert "1</strong> bulk batches running" in page
    assert f'href="/bulk/{running.pk}/"' in page and "june.csv" in page and "done.csv" not in page


def test_credential_health_shows_when_a_kept_access_token_expires_and_no_secret(auditor_client, db):
    soon = timezone.now() + timedelta(minutes=42, seconds=30)
    graph = CredentialFactory(
        label="Graph signed in",
        provider="msgraph",
        settings={"tenant_id": "contoso.onmicrosoft.com", "client_id": "c", "group_id": "g"},
        secrets={
            "client_secret": "graph-client-secret-value",
            "refresh_token": "graph-refresh-token-value",
            "access_token": "graph-access-token-value",
            "access_token_expires_at": soon.isoformat(),
        },
    )
    gone = timezone.now() - timedelta(hours=3, minutes=5)
    CredentialFactory(
        label="HighLevel OAuth",
        provider="highlevel",
        settings={"location_id": "tDtDnQdgm2LXpyiqYvZ6", "client_id": "app"},
        secrets={"token": "hl-access-token-value", "token_expires_at": gone.isoformat()},
    )
    CredentialFactory(label="Twilio typed token")  # keeps no expiring token
    html = auditor_client.get(URL).content.decode()
    health = html.split('id="h-health"', 1)[1].split("</section>", 1)[0]
    rows = {row.split("</a>", 1)[0].rsplit(">", 1)[1]: row for row in health.split("<tr>")[2:]}
    assert "in 42\xa0minutes" in rows["Graph signed in"]
    assert f'datetime="{soon:%Y-%m-%dT%H:%M:%S}' in rows["Graph signed in"]
    assert "expired 3\xa0hours" in rows["HighLevel OAuth"]
    assert 'data-label="Token expiry">—</td>' in rows["Twilio typed token"]
    assert "unknown" not in health
    for secret in ("graph-client-secret-value", "graph-refresh-token-value", "graph-access-token-value"):
        assert secret not in html
    assert "hl-access-token-value" not in html
    assert graph.get_secrets()["access_token"] == "graph-access-token-value"  # read, not changed


def test_figures_are_kept_for_a_minute_and_say_when_they_were_counted(auditor_client, fixture, settings):
    from django.core.cache import cache

    twilio, _ = fixture
    three = "<strong>3</strong> \N{MULTIPLICATION SIGN} Twilio"  # the top reason, one more failure
    settings.DASHBOARD_CACHE_SECONDS = 60
    cache.clear()
    try:
        first = auditor_client.get(URL)
        html = first.content.decode()
        assert "Figures as of <time" in html and "kept for up to 60 seconds" in html
        record(twilio, at(0), Status.FAILED, error_code="50433", error_message="Participant already exists")
        again = auditor_client.get(URL).content.decode()
        assert again.count("Figures as of") == 1
        figures = lambda page: page.split('<div id="figures"', 1)[1]  # noqa: E731
        assert figures(again) == figures(html)  # the same figures until they expire
        other = auditor_client.get(
            URL, {"provider": "twilio"}
        ).content.decode()  # another filter: counted now
        assert three in other and three not in again
        cache.clear()  # as when the minute is up
        assert three in auditor_client.get(URL).content.decode()
    finally:
        cache.clear()
    settings.DASHBOARD_CACHE_SECONDS = 0
    assert "Figures as of" not in auditor_client.get(URL).content.decode()
