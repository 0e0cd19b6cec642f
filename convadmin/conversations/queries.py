"""The conversation list's filters: search, provider, status, credential, creator and dates.

Every filter has an index (migrations 0001 and 0002), so keyset pages (convadmin.lists.keyset) cost the same
at any depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

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
    if text := (filters.get("q") or "").strip():
        # search_text holds the lower-cased name, external id and participants, so one LIKE on it covers
        # an external id (exact or prefix), any participant and the name; PostgreSQL answers it from the
        # pg_trgm GIN index (migration 0002). Not icontains: UPPER() would hide the column from the index.
        qs = qs.filter(search_text__contains=text.lower())
    return qs
