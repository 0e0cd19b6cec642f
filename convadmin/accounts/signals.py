"""Logins, logouts and failed logins go to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

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
