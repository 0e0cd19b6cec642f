from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth.signals import user_logged_in
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from convadmin.audit.models import AuditEvent, EventType
from convadmin.audit.services import record
from convadmin.audit.views import readable_changes
from tests.factories import ConversationFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = reverse("audit")
EXPORT = reverse("audit_export")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(event_type, *, when=T0, **kwargs) -> AuditEvent:
    # event_time is auto_now_add and the database refuses updates: write it at that time instead.
    with mock.patch("django.utils.timezone.now", return_value=when):
        e = record(event_type, **kwargs)
    return AuditEvent.objects.get(pk=e.pk)


def rows(response) -> list[str]:
    return re.findall(r"<tr>\s*<td[^>]*><time", response.content.decode())


# --- access ----------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", ["outsider_client", "support_client"])
def test_support_and_outsiders_are_refused(request, who):
    client = request.getfixturevalue(who)
    assert client.get(URL).status_code == 403 and client.get(EXPORT).status_code == 403


@pytest.mark.parametrize("who", ["auditor_client", "admin_client"])
def test_auditors_and_administrators_read_it(request, who, admin):
    event(EventType.LOGIN, actor=admin, ip="10.0.0.7")
    body = request.getfixturevalue(who).get(URL).content.decode()
    assert "Logged in" in body and "ann-admin" in body and "10.0.0.7" in body


def test_htmx_gets_the_results_fragment(auditor_client, htmx_headers, admin):
    event(EventType.LOGIN, actor=admin)
    body = auditor_client.get(URL, {"event_type": "login"}, headers=htmx_headers).content.decode()
    assert "<html" not in body and 'id="results"' in body and "Logged in" in body


def test_it_is_append_only_no_edit_or_delete_anywhere(auditor_client, admin):
    e = event(EventType.LOGIN, actor=admin)
    body = auditor_client.get(URL).content.decode()
    posts = re.findall(r'<form[^>]*method="post"[^>]*>', body.split('id="results"')[1])
    assert all(reverse("export_start", args=["audit"]) in form for form in posts)  # only the Export form
    assert auditor_client.post(URL).status_code == 405 and auditor_client.post(EXPORT).status_code == 405
    assert AuditEvent.objects.filter(pk=e.pk).exists()


# --- what it shows ---------------------------------------------------------------------------------


def test_old_and_new_values_are_readable(auditor_client, admin):
    target = UserFactory(username="kim")
    event(
        EventType.USER_CHANGED,
        actor=admin,
        target=target,
        extra={"role": {"old": "Support", "new": "Auditor"}, "is_active": {"old": True, "new": False}},
    )
    body = auditor_client.get(URL).content.decode()
    assert "Support → Auditor" in body and "yes → no" in body and "kim" in body


def test_conversation_targets_link_to_the_record(auditor_client, admin):
    c = ConversationFactory(name="Order 7")
    event(EventType.CONVERSATION_CREATED, actor=admin, target=c, extra={"external_id": c.external_id})
    body = auditor_client.get(URL).content.decode()
    assert f'href="/conversations/{c.pk}/">Order 7</a>' in body


def test_readable_changes_handles_every_shape():
    assert readable_changes({"role": {"old": None, "new": "Auditor"}}) == [("role", "— → Auditor")]
    assert readable_changes({"filters": {"provider": "twilio"}, "n": 3, "ids": [1, 2], "x": ""}) == [
        ("filters", "provider: twilio"),
        ("n", "3"),
        ("ids", "1, 2"),
        ("x", "(empty)"),
    ]
    assert readable_changes({}) == [] and readable_changes(None) == []


def test_empty_log_says_what_will_appear(auditor, client):
    with mock.patch.object(user_logged_in, "receivers", []):  # no login event: the log stays empty
        client.force_login(auditor)
    body = client.get(URL).content.decode()
    assert "No events yet" in body


# --- filters and pages -----------------------------------------------------------------------------


@pytest.fixture
def log(admin, support):
    c = ConversationFactory()
    return {
        "login": event(EventType.LOGIN, actor=support, when=T0 - timedelta(days=3)),
        "failed": event(
            EventType.LOGIN_FAILED, actor_name="mallory", ip="203.0.113.9", when=T0 - timedelta(days=2)
        ),
        "user": event(EventType.USER_CREATED, actor=admin, target=support, when=T0 - timedelta(days=1)),
        "conv": event(EventType.CONVERSATION_CREATED, actor=support, target=c, when=T0),
    }


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"event_type": "login_failed"}, 1),
        ({"actor": "sam-support"}, 2),
        ({"target_type": "conversation"}, 1),
        ({"target_type": "user"}, 1),
        ({"since": "2026-02-27", "until": "2026-03-31"}, 3),  # (the client's own login is today)
        ({"until": "2026-02-27"}, 2),
        ({"since": "2026-02-27", "until": "2026-02-27"}, 1),
        ({"actor": "sam-support", "target_type": "conversation"}, 1),
    ],
)
def test_each_filter_narrows_the_log(auditor_client, log, params, count):
    assert len(rows(auditor_client.get(URL, params))) == count


def test_no_match_says_so(auditor_client, log):
    assert (
        "No event matches these filters"
        in auditor_client.get(URL, {"event_type": "keys_rotated"}).content.decode()
    )


def test_pages_walk_the_log_without_skipping_equal_times(auditor_client, admin):
    for _ in range(30):
        event(EventType.LOGIN, actor=admin, when=T0)  # all at the same instant
    first = auditor_client.get(URL, {"size": 25, "until": "2026-03-01"})
    assert len(rows(first)) == 25 and "Older" in first.content.decode()
    second = auditor_client.get(
        URL, {"size": 25, "until": "2026-03-01", "after": first.context["page"].older}
    )
    assert len(rows(second)) == 5 and "Newer" in second.content.decode()
    seen = [e.pk for e in first.context["page"].rows] + [e.pk for e in second.context["page"].rows]
    assert sorted(seen) == sorted(AuditEvent.objects.filter(event_time=T0).values_list("pk", flat=True))
    assert len(set(seen)) == 30


def test_query_count_is_constant_whatever_the_page_size(auditor_client, admin):
    for i in range(210):
        event(EventType.LOGIN, actor=UserFactory() if i % 10 == 0 else admin, when=T0 + timedelta(seconds=i))
    counts = []
    for size in (25, 200):
        with CaptureQueriesContext(connection) as queries:
            auditor_client.get(URL, {"size": size})
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 7


# --- export ----------------------------------------------------------------------------------------


def test_export_csv_and_jsonl_follow_the_filters_and_are_audited(auditor, auditor_client, log):
    response = auditor_client.get(EXPORT, {"format": "csv", "actor": "sam-support"})
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["event_type"] for r in table] == ["conversation_created", "login"]
    assert isinstance(json.loads(table[0]["extra"]), dict)
    lines = b"".join(
        auditor_client.get(EXPORT, {"format": "jsonl", "event_type": "login_failed"}).streaming_content
    )
    parsed = [json.loads(line) for line in lines.decode().splitlines()]
    assert len(parsed) == 1 and parsed[0]["actor"] == "mallory" and parsed[0]["ip"] == "203.0.113.9"
    exported = AuditEvent.objects.filter(event_type=EventType.AUDIT_EXPORTED).order_by("id")
    assert [e.extra for e in exported] == [
        {"format": "csv", "filters": {"actor": "sam-support"}, "via": "web"},
        {"format": "jsonl", "filters": {"event_type": "login_failed"}, "via": "web"},
    ]
    assert exported[0].actor == auditor


def test_export_refuses_a_bad_format(auditor_client):
    assert auditor_client.get(EXPORT, {"format": "pdf"}).status_code == 400


def test_a_target_id_too_long_to_match_says_so_and_lists_nothing(auditor_client, admin):
    event(EventType.LOGIN, actor=admin)
    response = auditor_client.get(URL, {"target_id": "9" * 80})
    body = response.content.decode()
    assert "A target id is at most 64 characters (this one has 80): no event can match." in body
    assert rows(response) == [] and "No event matches these filters" in body
