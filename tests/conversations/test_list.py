from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from convadmin.conversations.models import Conversation, Status
from convadmin.lists.keyset import decode_cursor, encode_cursor, keyset_page
from tests.factories import ConversationFactory, CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = reverse("conversations")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(conversation: Conversation, when: datetime) -> Conversation:
    Conversation.objects.filter(pk=conversation.pk).update(created_at=when)
    conversation.created_at = when
    return conversation


def listed(response) -> list[int]:
    """Record ids in the order the page lists them."""
    return [int(pk) for pk in re.findall(r'href="/conversations/(\d+)/"', response.content.decode())]


# --- access ----------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_anonymous_htmx_gets_a_client_redirect(client, htmx_headers):
    response = client.get(URL, headers=htmx_headers)
    assert response["HX-Redirect"].startswith(reverse("login"))


def test_outsider_is_refused(outsider_client):
    assert outsider_client.get(URL).status_code == 403


@pytest.mark.parametrize("who", ["support_client", "auditor_client", "admin_client"])
def test_every_role_reads_the_list(request, who):
    ConversationFactory(name="Order 7")
    response = request.getfixturevalue(who).get(URL)
    assert response.status_code == 200 and "Order 7" in response.content.decode()


def test_htmx_request_gets_only_the_results_fragment(support_client, htmx_headers):
    ConversationFactory(name="Order 7")
    response = support_client.get(URL, {"status": "created"}, headers=htmx_headers)
    body = response.content.decode()
    assert "<html" not in body and 'id="results"' in body and "Order 7" in body
    assert "HX-Request" in response["Vary"]


def test_htmx_pushes_a_clean_url_with_only_the_filters_set(support_client, htmx_headers):
    params = {"q": "", "provider": "twilio", "status": "", "size": "50", "after": encode_cursor(T0, 5)}
    response = support_client.get(URL, params, headers=htmx_headers)
    assert response["HX-Push-Url"] == f"{URL}?provider=twilio&after={params['after']}"
    response = support_client.get(URL, {"q": "", "size": "25"}, headers=htmx_headers)
    assert response["HX-Push-Url"] == f"{URL}?size=25"


def test_the_default_page_size_is_selected(support_client):
    body = support_client.get(URL).content.decode()
    assert '<option value="50" selected>50</option>' in body


def test_htmx_history_restore_gets_the_whole_page(support_client, htmx_headers):
    response = support_client.get(URL, headers={**htmx_headers, "HX-History-Restore-Request": "true"})
    assert "<html" in response.content.decode()


def test_filter_form_updates_the_table_with_htmx_and_pushes_the_url(support_client):
    body = support_client.get(URL).content.decode()
    assert (
        'hx-get="/conversations/"' in body and 'hx-target="#results"' in body and 'hx-push-url="true"' in body
    )


# --- columns and empty states ----------------------------------------------------------------------


def test_it_shows_every_column(support_client):
    credential = CredentialFactory(label="Twilio EU")
    creator = UserFactory(username="carla")
    c = ConversationFactory(
        credential=credential,
        created_by=creator,
        name="Refund 42",
        participants=["alice", "bob", "+15558675310", "dave@example.test", "erin"],
        external_id="CH" + "a" * 32,
        status=Status.FAILED,
    )
    at(c, T0)
    body = support_client.get(URL).content.decode()
    for text in ("Twilio Conversations", "Refund 42", "alice", "bob", "+15558675310", "+2 more", "Failed"):
        assert text in body
    assert (
        "CH" + "a" * 32 in body and "Twilio EU" in body and "carla" in body and "2026-03-01 12:00:00" in body
    )
    assert "dave@example.test" not in body  # first three participants only, then the count


def test_every_cell_is_escaped(support_client):
    credential = CredentialFactory(label="<i>cred</i>")
    ConversationFactory(
        credential=credential,
        created_by=UserFactory(username="<b>u"),
        name="<script>alert(1)</script>",
        participants=['"><img src=x onerror=alert(2)>'],
        external_id="<x>",
    )
    body = support_client.get(URL).content.decode()
    assert "<script>alert" not in body and "<img" not in body and "<i>cred" not in body and "<b>u" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;x&gt;" in body and "&lt;i&gt;cred" in body


def test_empty_table_says_what_to_do(support_client):
    body = support_client.get(URL).content.decode()
    assert "No conversations yet" in body and reverse("conversation_new") in body


def test_no_match_says_so_and_offers_to_clear(support_client):
    ConversationFactory(name="Order 7")
    body = support_client.get(URL, {"q": "nothing-like-this"}).content.decode()
    assert "No conversation matches these filters" in body and "clear all filters" in body


# --- filters and search ----------------------------------------------------------------------------


@pytest.fixture
def mixed():
    twilio = CredentialFactory(label="tw")
    hl = CredentialFactory(
        label="hl", provider="highlevel", settings={"location_id": "L" * 20}, secrets={"token": "pit-x" * 4}
    )
    sam, kim = UserFactory(username="sam"), UserFactory(username="kim")
    rows = {
        "a": ConversationFactory(
            credential=twilio,
            created_by=sam,
            name="Alpha",
            status=Status.CREATED,
            participants=["alice"],
            external_id="CHabc123",
        ),
        "b": ConversationFactory(
            credential=twilio,
            created_by=kim,
            name="Beta",
            status=Status.FAILED,
            participants=["Bob@Example.test"],
            external_id="",
        ),
        "c": ConversationFactory(
            credential=hl,
            created_by=sam,
            name="Gamma",
            status=Status.CREATED,
            participants=["contact9"],
            external_id="conv-HL-777",
        ),
    }
    at(rows["a"], T0 - timedelta(days=10))
    at(rows["b"], T0 - timedelta(days=5))
    at(rows["c"], T0)
    return rows


def ids(rows, *names):
    return sorted(rows[n].pk for n in names)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"provider": "highlevel"}, ("c",)),
        ({"status": "failed"}, ("b",)),
        ({"creator": "sam"}, ("a", "c")),
        ({"since": "2026-02-24"}, ("b", "c")),
        ({"until": "2026-02-24"}, ("a", "b")),
        ({"since": "2026-02-24", "until": "2026-02-24"}, ("b",)),
        ({"provider": "twilio", "creator": "sam"}, ("a",)),
    ],
)
def test_each_filter_narrows_the_list(support_client, mixed, params, expected):
    assert sorted(listed(support_client.get(URL, params))) == ids(mixed, *expected)


def test_credential_filter(support_client, mixed):
    response = support_client.get(URL, {"credential": mixed["c"].credential_id})
    assert listed(response) == [mixed["c"].pk]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("CHabc123", ("a",)),  # external id, exact
        ("chABC", ("a",)),  # external id prefix, any case
        ("bob@example", ("b",)),  # participant email, any case
        ("contact9", ("c",)),  # participant user id
        ("gam", ("c",)),  # name
        ("  alpha ", ("a",)),
        ("100%", ()),  # LIKE wildcards are literal
    ],
)
def test_search_finds_external_id_participant_or_name(support_client, mixed, q, expected):
    assert sorted(listed(support_client.get(URL, {"q": q}))) == ids(mixed, *expected)


def test_search_and_filters_combine(support_client, mixed):
    assert listed(support_client.get(URL, {"q": "a", "provider": "twilio", "status": "created"})) == [
        mixed["a"].pk
    ]


def test_a_bad_date_range_is_reported_and_ignored(support_client, mixed):
    body = support_client.get(URL, {"since": "2026-02-24", "until": "2026-02-20"}).content.decode()
    assert "The end date is before the start date." in body
    assert len(listed_body(body)) == 2  # `since` still applies, `until` is ignored


def listed_body(body: str) -> list[str]:
    return re.findall(r'href="/conversations/(\d+)/"', body)


def test_unknown_choice_is_ignored_with_a_message(support_client, mixed):
    body = support_client.get(URL, {"provider": "myspace"}).content.decode()
    assert "Select a valid choice" in body and len(listed_body(body)) == 3


# --- keyset pagination -----------------------------------------------------------------------------


def make_rows(n: int, *, same_time: bool = False) -> list[Conversation]:
    credential, user = CredentialFactory(), UserFactory()
    rows = ConversationFactory.create_batch(n, credential=credential, created_by=user)
    for i, row in enumerate(rows):
        at(row, T0 if same_time else T0 + timedelta(seconds=i // 3))  # groups of three share a timestamp
    return rows


def expected_order(rows):
    return [r.pk for r in sorted(rows, key=lambda r: (r.created_at, r.pk), reverse=True)]


@pytest.mark.parametrize("same_time", [False, True])
@pytest.mark.parametrize("size", [1, 2, 4, 5])
def test_walking_older_then_newer_visits_every_row_once(same_time, size):
    rows = make_rows(11, same_time=same_time)
    qs = Conversation.objects.all()
    page = keyset_page(qs, field="created_at", size=size)
    assert page.first and page.newer is None
    seen, pages = [], [page]
    while True:
        seen += [r.pk for r in page.rows]
        if page.older is None:
            break
        page = keyset_page(qs, field="created_at", size=size, after=decode_cursor(page.older))
        pages.append(page)
    assert seen == expected_order(rows)  # nothing skipped or repeated across equal timestamps
    # and back again, newest-ward, page by page
    back = pages[-1]
    for previous in reversed(pages[:-1]):
        back = keyset_page(qs, field="created_at", size=size, before=decode_cursor(back.newer))
        assert [r.pk for r in back.rows] == [r.pk for r in previous.rows]
    assert back.newer is None


def test_past_the_last_row_is_an_empty_page_that_leads_back():
    rows = make_rows(3)
    oldest = min(rows, key=lambda r: (r.created_at, r.pk))
    page = keyset_page(
        Conversation.objects.all(), field="created_at", size=2, after=(oldest.created_at, oldest.pk)
    )
    assert page.rows == [] and page.older is None and page.cursor
    back = keyset_page(
        Conversation.objects.all(), field="created_at", size=2, before=decode_cursor(page.newer)
    )
    assert [r.pk for r in back.rows] == expected_order(rows)[:2] and back.first


def test_a_short_newer_page_becomes_the_full_first_page():
    rows = make_rows(5)
    order = expected_order(rows)
    second = Conversation.objects.get(pk=order[1])
    page = keyset_page(
        Conversation.objects.all(), field="created_at", size=3, before=(second.created_at, second.pk)
    )
    assert [r.pk for r in page.rows] == order[:3] and page.first and not page.cursor


def test_cursor_round_trips_and_rejects_garbage():
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert decode_cursor(encode_cursor(when, 42)) == (when, 42)
    for junk in ("", "x", "!!!", "MTIz", "a" * 100, encode_cursor(when, 1)[:-2] + "$$"):
        assert decode_cursor(junk) is None


def test_pages_link_newer_and_older_and_keep_the_filters(support_client):
    make_rows(30)
    first = support_client.get(URL, {"size": 25, "status": "created"})
    body = first.content.decode()
    assert len(listed(first)) == 25 and "Newer" not in body and "Older" in body
    older = first.context["page"].older
    assert f"after={older}" in body and "status=created" in body and "size=25" in body
    second = support_client.get(URL, {"size": 25, "status": "created", "after": older})
    assert len(listed(second)) == 5 and "Older" not in second.content.decode()
    assert "Newer" in second.content.decode()
    assert set(listed(first)).isdisjoint(listed(second))


def test_a_bad_cursor_shows_the_first_page(support_client):
    make_rows(3)
    assert len(listed(support_client.get(URL, {"after": "not-a-cursor"}))) == 3


def test_past_the_end_page_explains_and_links_back(support_client):
    rows = make_rows(2)
    oldest = min(rows, key=lambda r: (r.created_at, r.pk))
    body = support_client.get(URL, {"after": encode_cursor(oldest.created_at, oldest.pk)}).content.decode()
    assert "Nothing older than this point" in body and "Back to the newest" in body


def test_the_list_never_counts_nor_offsets(support_client):
    make_rows(30)
    with CaptureQueriesContext(connection) as queries:
        support_client.get(URL, {"size": 25, "after": encode_cursor(T0 + timedelta(seconds=5), 10**9)})
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "COUNT(" not in sql and "OFFSET" not in sql


def test_page_size_is_limited_to_the_offered_sizes(support_client):
    make_rows(30)
    body = support_client.get(URL, {"size": 3}).content.decode()
    assert "Select a valid choice" in body and len(listed_body(body)) == 30  # falls back to 50


# --- query budget ----------------------------------------------------------------------------------


def test_query_count_is_constant_whatever_the_page_size(support_client, django_assert_max_num_queries):
    # Many creators and credentials: an N+1 on either would show.
    credentials = CredentialFactory.create_batch(7)
    users = UserFactory.create_batch(30)
    for i in range(210):
        ConversationFactory(credential=credentials[i % 7], created_by=users[i % 30])
    counts = {}
    for size in (25, 200):
        with CaptureQueriesContext(connection) as queries:
            response = support_client.get(
                URL, {"size": size, "provider": "twilio", "creator": "", "q": "order"}
            )
        assert len(listed(response)) == size
        counts[size] = len(queries)
    assert counts[25] == counts[200]
    with django_assert_max_num_queries(9):  # PostgreSQL: + SET LOCAL statement_timeout
        support_client.get(URL, {"size": 200})


# --- bounded work: a search too slow for the index reads a window; a list too slow is stopped ------------


@pytest.fixture
def slow_search(monkeypatch):
    """The planner's search query "runs past" SEARCH_TIMEOUT_MS; the window and the guard run normally."""
    from contextlib import contextmanager, nullcontext

    from convadmin.conversations import queries

    @contextmanager
    def limited(ms):
        if ms == queries.SEARCH_TIMEOUT_MS:
            raise queries.ListTimeout
        with nullcontext():
            yield

    monkeypatch.setattr(queries, "time_limit", limited)
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 4)
    return queries


def test_a_sparse_search_stops_at_the_window_says_so_and_goes_on_from_there(support_client, slow_search):
    rows = [at(ConversationFactory(name=f"Row {i}"), T0 - timedelta(minutes=i)) for i in range(10)]
    needle = rows[6]  # beyond the first window of 4 records, inside the second
    Conversation.objects.filter(pk=needle.pk).update(search_text="needle here")
    response = support_client.get(URL, {"q": "needle"})
    text = response.content.decode()
    assert response.status_code == 200
    assert listed(response) == []
    assert "looked through 4 records and found 0" in text
    assert "Narrow your search" in text
    older = html.unescape(re.search(r'<a href="([^"]+)"[^>]*rel="next"', text).group(1))
    response = support_client.get(older)
    assert listed(response) == [needle.pk]
    assert "looked through 4 records older than this point and found 1" in response.content.decode()


def test_a_search_that_fills_its_page_inside_the_window_says_nothing(support_client, slow_search):
    for i in range(6):
        at(ConversationFactory(name=f"Match {i}"), T0 - timedelta(minutes=i))
    response = support_client.get(URL, {"q": "match", "size": 25})
    assert len(listed(response)) == 4  # the window's four, then the rest is a click away
    assert "Narrow your search" in response.content.decode()
    slow_search.SEARCH_WINDOW = 100
    response = support_client.get(URL, {"q": "match", "size": 25})
    assert len(listed(response)) == 6
    assert "Narrow your search" not in response.content.decode()


def test_a_slow_search_for_one_word_lists_its_whole_word_matches_and_says_so(support_client, monkeypatch):
    from contextlib import contextmanager, nullcontext

    from convadmin.conversations import queries

    calls = []

    @contextmanager
    def first_attempt_slow(ms):  # the trigram attempt "runs past" its limit; the rest runs normally
        calls.append(ms)
        if len(calls) == 1:
            raise queries.ListTimeout
        with nullcontext():
            yield

    monkeypatch.setattr(queries, "time_limit", first_attempt_slow)
    uuid = "a0244c49-5cef-406e-8f42-f24d780ee6d9"
    found = [at(ConversationFactory(name=f"Row {i}"), T0 - timedelta(minutes=i)) for i in range(3)]
    Conversation.objects.filter(pk=found[0].pk).update(search_text=f"order 1 {uuid} +15550000001")
    Conversation.objects.filter(pk=found[2].pk).update(search_text=uuid)
    Conversation.objects.filter(pk=found[1].pk).update(search_text=f"x{uuid}")  # inside a longer word
    response = support_client.get(URL, {"q": uuid.upper()})
    assert listed(response) == [found[0].pk, found[2].pk]
    assert "Only records where the search is a whole word are listed" in response.content.decode()
    assert "Narrow your search" not in response.content.decode()
    calls.clear()
    response = support_client.get(URL, {"q": "order 1"})  # two words: the window, as before
    assert "Only records where the search is a whole word" not in response.content.decode()


def test_a_list_query_past_the_statement_timeout_says_so_instead_of_failing(support_client, monkeypatch):
    from contextlib import contextmanager

    from convadmin.conversations import queries

    ConversationFactory(name="Alpha")

    @contextmanager
    def cancelled(ms):
        raise queries.ListTimeout
        yield

    monkeypatch.setattr(queries, "time_limit", cancelled)
    response = support_client.get(URL, {"status": "pending", "q": "alpha"})
    assert response.status_code == 200
    assert listed(response) == []
    assert "These filters took too long and were stopped" in response.content.decode()
    assert "No conversation matches" not in response.content.decode()


def test_only_filters_no_single_index_answers_run_under_the_time_guard(support_client, monkeypatch):
    from contextlib import contextmanager

    from convadmin.conversations import queries

    record = ConversationFactory(name="Alpha")

    @contextmanager
    def cancelled(ms):
        raise queries.ListTimeout
        yield

    monkeypatch.setattr(queries, "time_limit", cancelled)
    # Pages a (filter, created_at, id) index reads in page-size steps: nothing to stop, never stopped.
    day = timezone.localdate(record.created_at).isoformat()
    for params in (
        {},
        {"provider": "twilio"},
        {"status": "created"},
        {"provider": "twilio", "status": "created"},
    ):
        for dates in ({}, {"since": day, "until": day}):
            response = support_client.get(URL, {**params, **dates})
            assert listed(response) == [record.pk], (params, dates)
    # A combination no single index orders may read far: it runs under the guard, which says so.
    response = support_client.get(URL, {"status": "created", "creator": record.created_by.username})
    assert listed(response) == []
    assert "These filters took too long and were stopped" in response.content.decode()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement_timeout is PostgreSQL's")
def test_time_limit_turns_a_cancelled_statement_into_list_timeout():
    from convadmin.conversations.queries import ListTimeout, time_limit

    with pytest.raises(ListTimeout), time_limit(10), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1)")
    with connection.cursor() as cursor:  # the limit ended with its transaction
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
