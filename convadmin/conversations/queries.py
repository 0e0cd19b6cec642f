"""The conversation list's filters: search, provider, status, credential, creator and dates.

Every filter has an index (migrations 0001 and 0002), so keyset pages (convadmin.lists.keyset) cost the same
at any depth. What no index bounds (a search whose trigrams are common but whose matches are rare, a search
inside a large filter) is bounded by :func:`conversation_page`: the planner's query under a short time limit,
then at most ``SEARCH_WINDOW`` records in the list's order, and a statement timeout on PostgreSQL as the last
guard, each said on the page.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, transaction
from django.db.models import Func, Q, QuerySet, TextField, Value
from django.db.models.functions import Lower
from django.utils.functional import cached_property

from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential, provider_choices
from convadmin.lists.filters import (
    NO_MATCH,
    SEARCH_MAX,
    FilterForm,
    QuickSelect,
    date_input,
    date_range,
    page_size_field,
    plain_choices,
)
from convadmin.lists.keyset import Key, Page, _newer_than, _older_than, encode_cursor, keyset_page


class ConversationFilterForm(FilterForm):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=SEARCH_MAX,
        error_messages={
            "max_length": "A search is at most %(limit_value)d characters (this one has %(show_value)d): "
            "nothing is shown until it is shortened."
        },
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
    batch = forms.IntegerField(
        label="Batch", required=False, min_value=1, help_text="A bulk create's number."
    )
    since = forms.DateField(label="From", required=False, widget=date_input())
    until = forms.DateField(label="To", required=False, widget=date_input())
    size = page_size_field()

    FILTERS = ("q", "provider", "status", "credential", "creator", "batch", "since", "until")
    SEARCHES = ("q",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_choices(self.fields["credential"], lambda: self.credential_labels.items(), "Any credential")
        plain_choices(self.fields["creator"], lambda: ((u, u) for u in self.usernames.values()), "Anyone")

    # One read of each small table per request serves both the filter's choices and the list's Credential and
    # Created by columns (the page's query then reads the records alone, no join to plan).
    @cached_property
    def credential_labels(self) -> dict[int, str]:
        """Every credential's label by id, in label order."""
        return dict(Credential.objects.order_by("label").values_list("pk", "label"))

    @cached_property
    def usernames(self) -> dict[int, str]:
        """Every user's username by id, in username order."""
        return dict(get_user_model().objects.order_by("username").values_list("pk", "username"))


def filter_conversations(qs: QuerySet[Conversation], filters: Mapping[str, Any]) -> QuerySet[Conversation]:
    """Apply ``filters`` (names as in :class:`ConversationFilterForm`; models or ids for FKs)."""
    if filters.get("q") is NO_MATCH:
        return qs.none()
    if filters.get("provider"):
        qs = qs.filter(provider=filters["provider"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("credential"):
        qs = qs.filter(credential=filters["credential"])
    if filters.get("creator"):
        qs = qs.filter(created_by=filters["creator"])
    if filters.get("batch"):
        qs = qs.filter(batch=filters["batch"])
    qs = qs.filter(date_range("created_at", filters.get("since"), filters.get("until")))
    if text := search_text(filters):
        qs = search(qs, text)
    return qs


def search_text(filters: Mapping[str, Any]) -> str:
    """The search box's text, lower-cased ("" when none or invalid)."""
    q = filters.get("q")
    return "" if q is NO_MATCH else (q or "").strip().lower()


def search(qs: QuerySet, text: str) -> QuerySet:
    # search_text holds the lower-cased name, external id and participants, so one LIKE on it covers
    # an external id (exact or prefix), any participant and the name; PostgreSQL answers it from the
    # pg_trgm GIN index (migration 0002). Not icontains: UPPER() would hide the column from the index.
    return qs.filter(search_text__contains=text)


def whole_word(qs: QuerySet, text: str) -> QuerySet:
    """Records where ``text`` is one whole space-separated word of ``search_text`` (an external id, a
    participant, a word of the name). PostgreSQL answers it from a GIN index on the words (migration 0009):
    one posting list, however large the table, where the trigram index intersects one list per trigram
    (a UUID or an e-mail address has dozens of common ones: ~0.3 s at 10M records)."""
    if connection.vendor == "postgresql":
        from django.contrib.postgres.fields import ArrayField

        words = Func(
            "search_text", Value(" "), function="string_to_array", output_field=ArrayField(TextField())
        )
        return qs.alias(search_words=words).filter(search_words__contains=[text])
    return qs.filter(
        Q(search_text=text)
        | Q(search_text__startswith=f"{text} ")
        | Q(search_text__endswith=f" {text}")
        | Q(search_text__contains=f" {text} ")
    )


def scan(qs: QuerySet, text: str) -> QuerySet:
    """The same search as :func:`search`, written so that no index can answer it (LOWER() of an already
    lower-case column): inside a window of records, a check per record is bounded; the trigram index,
    whose candidates for common trigrams are most of the table, is not."""
    return qs.alias(search_plain=Lower("search_text")).filter(search_plain__contains=text)


#: A search the trigram index cannot answer within SEARCH_TIMEOUT_MS reads at most this many records (the
#: newest after the page's cursor, through the (filter, created_at, id) indexes) and says it stopped there.
SEARCH_WINDOW = 5_000
SEARCH_TIMEOUT_MS = 30
#: ... unless it is one word of at least WORD_MIN characters found as a whole word in 1 to WORD_CAP records:
#: those are listed (all of them, in order), and the page says the search was for the whole word.
WORD_MIN = 6
WORD_CAP = 5_000
#: PostgreSQL: any list query still running after this is cancelled and the page says so (never a 500).
LIST_TIMEOUT_MS = 2_000
QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout


#: Filter sets (dates aside) whose pages one (filter..., created_at, id) index reads in page-size steps
#: (migrations 0001, 0007): no statement of theirs can run long, so they skip the time guard (its transaction
#: and SET cost three round trips a page). Every other combination, and every search, keeps it.
INDEXED_FILTERS = (
    frozenset(),
    frozenset({"provider"}),
    frozenset({"status"}),
    frozenset({"credential"}),
    frozenset({"creator"}),
    frozenset({"provider", "status"}),
)


def read_by_index(filters: Mapping[str, Any]) -> bool:
    """Whether a page of the list under ``filters`` is an index range of at most a page (no search)."""
    return not search_text(filters) and frozenset(filters) - {"since", "until", "q"} in INDEXED_FILTERS


class ListTimeout(Exception):
    pass


@contextmanager
def time_limit(ms: int) -> Iterator[None]:
    """On PostgreSQL, the queries inside run with ``statement_timeout = ms`` (in their own transaction, so the
    setting ends with it) and one cancelled raises :class:`ListTimeout`. Elsewhere, no limit."""
    if connection.vendor != "postgresql":
        yield
        return
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {int(ms)}")
            yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != QUERY_CANCELED:
            raise
        raise ListTimeout from exc


@dataclass
class Bounded:
    page: Page
    #: Records read when the search stopped at SEARCH_WINDOW (0: it did not stop there).
    window: int = 0
    #: The search ran past SEARCH_TIMEOUT_MS and these are the records where it is a whole word.
    words: bool = False
    #: The whole list query ran past LIST_TIMEOUT_MS and was cancelled.
    timed_out: bool = False

    @property
    def window_text(self) -> str:
        return f"{self.window:,}"


def conversation_page(
    qs: QuerySet,
    keys: QuerySet,
    *,
    text: str,
    size: int,
    after: Key | None,
    before: Key | None,
    guard: bool = True,
) -> Bounded:
    """The page the cursor asks for of ``qs`` (the filtered list, before the search) searched for ``text``,
    with bounded work. ``keys``: the same filtered records as a model query (the window is cut from it).

    A search runs as the planner likes for SEARCH_TIMEOUT_MS; past that, one word is looked up as a whole
    word (:func:`whole_word`), and else it checks only the next SEARCH_WINDOW records, and the page says so
    and offers to go on from where it stopped. Without a search, the page runs under LIST_TIMEOUT_MS unless
    ``guard`` is False (:func:`read_by_index`).
    """
    page = lambda q, **k: keyset_page(q, field="created_at", size=size, **k)  # noqa: E731
    try:
        if text:
            try:
                if len(text) < 3:  # no trigram to look up: the index would read every entry
                    raise ListTimeout
                with time_limit(SEARCH_TIMEOUT_MS):
                    return Bounded(page(search(qs, text), after=after, before=before))
            except ListTimeout:
                pass
            if len(text) >= WORD_MIN and not any(c.isspace() for c in text):
                try:
                    with time_limit(SEARCH_TIMEOUT_MS):
                        # Unordered and capped: the planner reads the word's posting list, not a whole index.
                        ids = list(
                            whole_word(keys, text).order_by().values_list("pk", flat=True)[: WORD_CAP + 1]
                        )
                        if 0 < len(ids) <= WORD_CAP:
                            return Bounded(
                                page(qs.filter(pk__in=ids), after=after, before=before), words=True
                            )
                except ListTimeout:
                    pass
            with time_limit(LIST_TIMEOUT_MS):
                start = keys.filter(_older_than("created_at", after)) if after else keys
                edge = list(
                    start.order_by("-created_at", "-pk").values_list("created_at", "pk")[
                        SEARCH_WINDOW - 1 : SEARCH_WINDOW
                    ]
                )
                if not edge:  # fewer than a window left: check them all
                    return Bounded(page(scan(qs, text), after=after))
                when, pk = edge[0]
                # The window's keys first, on the table alone (joined to the credential and the user, the
                # planner may loop over every user); then the page's rows by id.
                # (created_at, id) >= the window's last record: newer than (when, pk - 1).
                window = scan(keys, text).filter(_newer_than("created_at", (when, pk - 1)))
                found = page(window.values("created_at", "id"), after=after)
                ids = [row["id"] for row in found.rows]
                rows = list(qs.filter(pk__in=ids).order_by("-created_at", "-pk")) if ids else []
            found.rows = rows
            if found.older:  # a full page inside the window
                return Bounded(found)
            older = encode_cursor(when, pk)  # go on from the window's last record
            return Bounded(Page(found.rows, size, found.newer, older, found.cursor), window=SEARCH_WINDOW)
        if not guard:
            return Bounded(page(qs, after=after, before=before))
        with time_limit(LIST_TIMEOUT_MS):
            return Bounded(page(qs, after=after, before=before))
    except ListTimeout:
        return Bounded(Page([], size, newer=None, older=None, cursor=False), timed_out=True)
