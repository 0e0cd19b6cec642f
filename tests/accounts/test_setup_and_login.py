from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from convadmin.audit.models import AuditEvent, EventType
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()
GOOD_PASSWORD = "a-long enough passphrase"


def test_home_leads_to_first_administrator_page_when_no_user_exists(client):
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/setup/"
    assert b"Create the first administrator" in response.content


def test_login_page_sends_to_setup_while_no_user_exists(client):
    assert client.get("/accounts/login/")["Location"] == "/setup/"


def test_first_administrator_is_created_logged_in_and_audited(client):
    response = client.post(
        "/setup/",
        {"username": "root", "email": "", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/conversations/dashboard/"
    user = User.objects.get(username="root")
    assert list(user.groups.values_list("name", flat=True)) == ["Administrator"]
    assert response.wsgi_request.user == user
    assert AuditEvent.objects.filter(event_type=EventType.FIRST_ADMIN_CREATED, actor=user).exists()


def test_setup_rejects_a_weak_password_at_the_field(client):
    response = client.post("/setup/", {"username": "root", "password": "12345"})
    assert response.status_code == 200
    assert "password" in response.context["form"].errors
    assert not User.objects.exists()


def test_setup_asks_for_the_password_twice(client):
    assert client.get("/setup/").content.count(b'type="password"') == 2
    response = client.post(
        "/setup/", {"username": "root", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD + "x"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["password_again"] == ["The two passwords differ."]
    assert not User.objects.exists()


@pytest.mark.parametrize("name", ["system", "System"])
def test_setup_refuses_the_reserved_name_of_the_command_line_actor(client, name):
    response = client.post(
        "/setup/", {"username": name, "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD}
    )
    assert "reserved for command-line actions" in str(response.context["form"].errors["username"])
    assert not User.objects.exists()


def test_setup_page_is_gone_once_a_user_exists(client):
    UserFactory()
    assert client.get("/setup/").status_code == 404
    assert client.post("/setup/", {"username": "evil", "password": GOOD_PASSWORD}).status_code == 404
    assert not User.objects.filter(username="evil").exists()


def test_home_sends_anonymous_users_to_login_once_set_up(client):
    UserFactory()
    assert client.get("/")["Location"] == "/accounts/login/"


def test_login_and_logout_are_audited(client):
    user = UserFactory(username="sam", role="Support")
    response = client.post("/accounts/login/", {"username": "sam", "password": "correct horse battery"})
    assert response.status_code == 302
    client.post("/accounts/logout/")
    types = list(AuditEvent.objects.filter(actor=user).order_by("id").values_list("event_type", flat=True))
    assert types == [EventType.LOGIN, EventType.LOGOUT]


def test_failed_login_is_audited_without_the_password(client):
    UserFactory(username="sam")
    client.post("/accounts/login/", {"username": "sam", "password": "wrong-password-123"})
    event = AuditEvent.objects.get(event_type=EventType.LOGIN_FAILED)
    assert event.actor_name == "sam"
    assert "wrong-password-123" not in str(event.extra)


def test_login_is_throttled_after_repeated_failures(client, settings):
    UserFactory(username="sam")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "sam", "password": "wrong-password-123"})
    response = client.post("/accounts/login/", {"username": "sam", "password": "correct horse battery"})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
