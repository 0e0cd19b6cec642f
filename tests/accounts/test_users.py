from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from convadmin.audit.models import AuditEvent, EventType
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_anonymous_is_sent_to_login(client):
    UserFactory()
    response = client.get("/users/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/users/")


def test_htmx_anonymous_gets_a_client_redirect(client, htmx_headers):
    UserFactory()
    response = client.post("/users/1/", {"role": "Support"}, headers=htmx_headers)
    assert response["HX-Redirect"].startswith("/accounts/login/")


@pytest.mark.parametrize("who", ["support_client", "auditor_client", "outsider_client"])
def test_only_administrators_see_the_users_page(request, who):
    assert request.getfixturevalue(who).get("/users/").status_code == 403


def test_administrator_sees_users_with_their_roles(admin_client, support):
    response = admin_client.get("/users/")
    assert response.status_code == 200
    assert b"sam-support" in response.content
    assert b'<option value="Support" selected>' in response.content


def test_administrator_creates_a_user_with_a_role(admin_client, admin):
    response = admin_client.post(
        "/users/",
        {"username": "newbie", "email": "n@example.test", "password": "long enough pass", "role": "Auditor"},
    )
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert list(user.groups.values_list("name", flat=True)) == ["Auditor"]
    event = AuditEvent.objects.get(event_type=EventType.USER_CREATED)
    assert event.actor == admin and event.extra["role"] == "Auditor"
    assert "long enough pass" not in str(event.extra)


def test_duplicate_username_is_refused_at_the_field(admin_client, support):
    response = admin_client.post(
        "/users/", {"username": "SAM-support", "password": "long enough pass", "role": "Support"}
    )
    assert response.status_code == 200
    assert "already exists" in str(response.context["form"].errors["username"])


def test_role_change_by_htmx_returns_the_row_and_is_audited(admin_client, support, htmx_headers):
    response = admin_client.post(
        f"/users/{support.pk}/", {"role": "Auditor", "is_active": "on"}, headers=htmx_headers
    )
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert f'id="user-{support.pk}"'.encode() in response.content
    assert b"Saved" in response.content
    assert list(support.groups.values_list("name", flat=True)) == ["Auditor"]
    event = AuditEvent.objects.get(event_type=EventType.USER_CHANGED)
    assert event.extra == {"role": {"old": "Support", "new": "Auditor"}}


def test_deactivated_user_loses_access(admin_client, support, support_client):
    admin_client.post(f"/users/{support.pk}/", {"role": "Support"})
    support.refresh_from_db()
    assert not support.is_active
    assert support_client.get("/conversations/dashboard/").status_code == 302


def test_administrator_cannot_demote_themself(admin_client, admin, htmx_headers):
    response = admin_client.post(
        f"/users/{admin.pk}/", {"role": "Support", "is_active": "on"}, headers=htmx_headers
    )
    assert b"cannot remove your own administrator role" in response.content
    assert list(admin.groups.values_list("name", flat=True)) == ["Administrator"]


def test_role_change_requires_csrf(admin):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(f"/users/{admin.pk}/", {"role": "Support"}).status_code == 403
