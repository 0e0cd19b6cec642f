"""A filter that does not parse is named by the label the user sees, not the query parameter."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_filter_errors_use_the_labels_of_the_filter_form(support_client):
    page = support_client.get(
        "/conversations/?since=2026-05-02&until=2026-05-01&q=" + "x" * 300
    ).content.decode()
    assert "To: The end date is before the start date. (ignored)" in page
    assert "Search: " in page and "(ignored)" in page
    assert "Until:" not in page and "Q:" not in page


def test_a_bad_date_is_named_from(support_client):
    page = support_client.get("/conversations/?since=yesterday").content.decode()
    assert "From: Enter a valid date. (ignored)" in page
    assert "Since:" not in page
