"""A search too long to run is said so and matches nothing: ignoring it would list every record."""

from __future__ import annotations

import pytest
from django.urls import reverse

from convadmin.conversations.queries import SEARCH_MAX
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db
URL = reverse("conversations")


def test_a_search_longer_than_the_limit_says_so_and_lists_nothing(support_client):
    ConversationFactory.create_batch(2)
    response = support_client.get(URL, {"q": "x" * (SEARCH_MAX + 50)})
    body = response.content.decode()
    assert response.status_code == 200
    assert f"A search is at most {SEARCH_MAX} characters (this one has {SEARCH_MAX + 50})" in body
    assert "(ignored)" not in body
    assert 'href="/conversations/1' not in body and "No conversation matches these filters" in body


def test_the_long_search_stays_in_the_pushed_address(support_client, htmx_headers):
    response = support_client.get(URL, {"q": "y" * (SEARCH_MAX + 1)}, headers=htmx_headers)
    assert "q=" + "y" * (SEARCH_MAX + 1) in response["HX-Push-Url"]


def test_a_search_at_the_limit_still_runs(support_client):
    record = ConversationFactory(name="n" * SEARCH_MAX)
    response = support_client.get(URL, {"q": "N" * SEARCH_MAX})
    assert f'href="/conversations/{record.pk}/"' in response.content.decode()
