from __future__ import annotations

import socket

import pytest
from django.test import Client

from convadmin.accounts.roles import ROLES
from tests.factories import UserFactory

_getaddrinfo = socket.getaddrinfo
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "testserver"}


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch):
    """No test may reach a real provider: name lookups for anything but loopback fail loudly.

    respx intercepts mocked provider hosts before any lookup happens, so only a real escape trips this.
    """

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOCAL_HOSTS and not name.startswith("127."):
            raise OSError(f"tests must not reach the network: lookup of {name!r} refused")
        return _getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.fixture(autouse=True)
def _roles_exist(request):
    """Transactional tests (live server, browser) flush the tables, and with them the roles' groups."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction"))
    if transactional or "transactional_db" in request.fixturenames or "live_server" in request.fixturenames:
        from django.contrib.auth.models import Group

        request.getfixturevalue("transactional_db")
        for name in ROLES:
            Group.objects.get_or_create(name=name)


@pytest.fixture
def support(db):
    return UserFactory(username="sam-support", role="Support")


@pytest.fixture
def auditor(db):
    return UserFactory(username="ada-auditor", role="Auditor")


@pytest.fixture
def admin(db):
    return UserFactory(username="ann-admin", role="Administrator")


@pytest.fixture
def outsider(db):
    """Logged in, but no role at all."""
    return UserFactory(username="otto-outsider")


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def support_client(support):
    return _client_for(support)


@pytest.fixture
def auditor_client(auditor):
    return _client_for(auditor)


@pytest.fixture
def admin_client(admin):
    return _client_for(admin)


@pytest.fixture
def outsider_client(outsider):
    return _client_for(outsider)


@pytest.fixture
def htmx_headers():
    return {"HX-Request": "true", "HX-Current-URL": "http://testserver/"}
