"""A safety net over the whole URL map: no page is reachable without logging in, none without a role."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PUBLIC = {"home", "setup", "login", "logout"}


def _routes(patterns=None, prefix: str = ""):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name not in PUBLIC:
            yield (
                entry.name,
                "/"
                + (prefix + str(entry.pattern))
                .replace("<int:pk>", "1")
                .replace("<int:exchange_id>", "1")
                .replace("<str:part>", "request")
                .replace("<slug:name>", "conversations"),
            )


ROUTES = sorted(set(_routes()))


def test_the_url_map_is_covered():
    assert len(ROUTES) >= 20


@pytest.mark.parametrize(("name", "path"), ROUTES)
def test_anonymous_users_are_sent_to_login(client, name, path):
    UserFactory()
    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code == 302, (name, path)
        assert response["Location"].startswith("/accounts/login/?next="), (name, path)


@pytest.mark.parametrize(("name", "path"), ROUTES)
def test_a_user_without_a_role_is_refused(outsider_client, name, path):
    assert outsider_client.get(path).status_code in (403, 405), (name, path)
    assert outsider_client.post(path).status_code == 403, (name, path)
