"""Logins, logouts and failed logins go to the audit log; so does a password set outside the services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from convadmin.accounts.services import audited_elsewhere
from convadmin.audit.models import EventType
from convadmin.audit.services import client_ip, record


@receiver(user_logged_in)
def audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record(EventType.LOGIN, actor=user, ip=client_ip(request))


@receiver(user_logged_out)
def audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(EventType.LOGOUT, actor=user, ip=client_ip(request))


@receiver(user_login_failed)
def audit_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # Only the username is kept: Django already masks the password in ``credentials``.
    username = str(credentials.get("username", ""))[:150]
    record(EventType.LOGIN_FAILED, actor_name=username, ip=client_ip(request), extra={"username": username})


@receiver(post_save, sender=get_user_model())
def audit_password_set_elsewhere(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A superuser or a password made without our services (``manage.py createsuperuser`` or
    ``changepassword``, a shell) is audited all the same; who did it is unknown, so there is no actor.
    (``set_password`` keeps the raw password in ``_password`` until the save is done.)"""
    password_set = getattr(instance, "_password", None) is not None
    if audited_elsewhere() or not (password_set or (created and instance.is_superuser)):
        return
    where = {"where": "outside the web pages (command line or shell)"}
    if created:
        record(EventType.USER_CREATED, target=instance, extra={**where, "superuser": instance.is_superuser})
    else:
        record(EventType.PASSWORD_CHANGED, target=instance, extra=where)
