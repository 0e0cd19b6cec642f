from __future__ import annotations

import io

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


def test_opening_a_users_address_shows_the_users_page_at_that_user(admin_client, support):
    response = admin_client.get(f"/users/{support.pk}/", follow=True)
    assert response.redirect_chain == [(f"/users/#user-{support.pk}", 302)]
    assert f'id="user-{support.pk}"'.encode() in response.content


@pytest.mark.parametrize("name", ["system", " SYSTEM "])
def test_the_command_line_actors_name_is_refused_even_before_it_exists(admin_client, name):
    response = admin_client.post(
        "/users/", {"username": name, "password": "long enough pass", "role": "Support"}
    )
    assert response.status_code == 200
    assert "reserved for command-line actions" in str(response.context["form"].errors["username"])
    assert not User.objects.filter(username__iexact="system").exists()


def test_the_command_line_actor_cannot_log_in(client):
    from convadmin.accounts.services import system_user

    user = system_user()
    assert not user.is_active and not user.is_staff and not user.is_superuser
    assert not user.has_usable_password()


def test_a_loginable_system_account_is_locked_when_the_command_line_uses_it(client):
    from convadmin.accounts.services import system_user

    legacy = UserFactory(
        username="system", role="Administrator", is_staff=True
    )  # made before the reservation
    assert system_user().pk == legacy.pk
    legacy.refresh_from_db()
    assert not legacy.is_active and not legacy.is_staff and not legacy.has_usable_password()
    assert not legacy.groups.exists()
    assert (
        client.post(
            "/accounts/login/", {"username": "system", "password": "correct horse battery"}
        ).status_code
        == 200
    )
    event = AuditEvent.objects.get(event_type=EventType.USER_CHANGED, target_id=str(legacy.pk))
    assert event.extra["is_active"] == {"old": True, "new": False}
    assert event.extra["role"] == {"old": "Administrator", "new": ""}


def test_demoting_a_superuser_takes_the_superuser_bit_away(admin_client):
    boss = UserFactory(username="boss", is_superuser=True, is_staff=True)
    admin_client.post(f"/users/{boss.pk}/", {"role": "Support", "is_active": "on"})
    boss.refresh_from_db()
    assert not boss.is_superuser and not boss.is_staff
    assert list(boss.groups.values_list("name", flat=True)) == ["Support"]
    event = AuditEvent.objects.get(event_type=EventType.USER_CHANGED)
    assert event.extra == {
        "role": {"old": "Administrator", "new": "Support"},
        "superuser": {"old": True, "new": False},
    }


def test_a_user_changes_their_password_and_it_is_audited(support_client, support):
    page = support_client.get("/accounts/password/")
    assert page.status_code == 200 and b"Change your password" in page.content
    response = support_client.post(
        "/accounts/password/",
        {
            "old_password": "correct horse battery",
            "new_password1": "a brand new passphrase",
            "new_password2": "a brand new passphrase",
        },
    )
    assert response.status_code == 302
    support.refresh_from_db()
    assert support.check_password("a brand new passphrase")
    assert support_client.get("/conversations/dashboard/").status_code == 200  # still signed in
    event = AuditEvent.objects.get(event_type=EventType.PASSWORD_CHANGED)
    assert event.actor == support and event.target_id == str(support.pk)
    assert "passphrase" not in str(event.extra) and "horse" not in str(event.extra)


def test_a_password_change_needs_the_current_password(support_client, support):
    response = support_client.post(
        "/accounts/password/",
        {"old_password": "wrong", "new_password1": "a brand new pass", "new_password2": "a brand new pass"},
    )
    assert response.status_code == 200 and "old_password" in response.context["form"].errors
    assert not AuditEvent.objects.filter(event_type=EventType.PASSWORD_CHANGED).exists()


def test_the_top_bar_links_to_the_password_page(support_client):
    assert b'href="/accounts/password/"' in support_client.get("/conversations/dashboard/").content


def test_there_is_no_django_admin_with_its_unaudited_password_and_user_pages(admin_client):
    for path in ("/admin/", "/admin/password_change/", "/admin/auth/user/"):
        assert admin_client.get(path).status_code == 404, path


def test_password_changes_and_superusers_made_on_the_command_line_are_audited(monkeypatch, support):
    from unittest import mock

    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long root passphrase")
    call_command(
        "createsuperuser", username="root", email="root@example.test", interactive=False, verbosity=0
    )
    created = AuditEvent.objects.get(event_type=EventType.USER_CREATED)
    assert created.target_label == "root" and created.extra["superuser"] is True
    with mock.patch("django.contrib.auth.management.commands.changepassword.getpass.getpass") as ask:
        ask.return_value = "another long passphrase"
        call_command("changepassword", "sam-support", stdout=io.StringIO())
    changed = AuditEvent.objects.get(event_type=EventType.PASSWORD_CHANGED)
    assert changed.target_id == str(support.pk) and changed.actor is None
    assert "passphrase" not in str(created.extra) + str(changed.extra)


def test_a_password_set_in_a_shell_is_audited_once(support):
    support.set_password("a shell-made passphrase")
    support.save()
    support.save()  # a later save of the same object changes no password
    assert AuditEvent.objects.filter(event_type=EventType.PASSWORD_CHANGED).count() == 1
