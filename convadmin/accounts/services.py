"""User and role changes, each written with its audit event in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction

from convadmin.accounts.roles import ADMINISTRATOR, ROLES, user_roles
from convadmin.audit.models import EventType
from convadmin.audit.services import record

User = get_user_model()
SYSTEM_USERNAME = "system"
#: True while a service below writes its own audit event for a password it sets (see signals.py).
_audited_here: ContextVar[bool] = ContextVar("audited_here", default=False)


@contextmanager
def audited_here() -> Iterator[None]:
    token = _audited_here.set(True)
    try:
        yield
    finally:
        _audited_here.reset(token)


def audited_elsewhere() -> bool:
    return _audited_here.get()


def set_role(user: AbstractUser, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}.")
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
    user.groups.add(Group.objects.get(name=role))
    user.__dict__.pop("_convadmin_roles", None)


def role_of(user: AbstractUser) -> str:
    roles = (
        user_roles(user)
        if user.is_active
        else frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    )
    return next((r for r in (ADMINISTRATOR, *ROLES) if r in roles), "")


def do_create_first_admin(username: str, email: str, password: str, *, ip: str | None = None) -> AbstractUser:
    """Create the first administrator; refuses once any user exists (the setup page is then gone)."""
    with transaction.atomic(durable=True), audited_here():
        if User.objects.select_for_update().exists():
            raise PermissionError("An administrator already exists.")
        user = User.objects.create_user(username=username, email=email, password=password, is_staff=True)
        set_role(user, ADMINISTRATOR)
        record(EventType.FIRST_ADMIN_CREATED, actor=user, target=user, ip=ip, extra={"role": ADMINISTRATOR})
    return user


def do_create_user(
    username: str, email: str, password: str, role: str, *, acting_user: AbstractUser, ip: str | None = None
) -> AbstractUser:
    with transaction.atomic(durable=True), audited_here():
        user = User.objects.create_user(
            username=username, email=email, password=password, is_staff=role == ADMINISTRATOR
        )
        set_role(user, role)
        record(
            EventType.USER_CREATED,
            actor=acting_user,
            target=user,
            ip=ip,
            extra={"role": role, "email": email},
        )
    return user


def do_change_user(
    user: AbstractUser, *, role: str, is_active: bool, acting_user: AbstractUser, ip: str | None = None
) -> dict[str, Any]:
    """Set a user's role and active flag; returns the audited old → new values ({} when nothing changed)."""
    if user.pk == acting_user.pk and (not is_active or role != ADMINISTRATOR):
        raise PermissionError("You cannot remove your own administrator role or deactivate yourself.")
    with transaction.atomic(durable=True):
        old = {"role": role_of(user), "is_active": user.is_active, "superuser": user.is_superuser}
        # A superuser is an Administrator whatever its groups: any other role takes the bit away.
        new = {"role": role, "is_active": is_active, "superuser": user.is_superuser and role == ADMINISTRATOR}
        if old == new:
            return {}
        set_role(user, role)
        user.is_active = is_active
        user.is_staff = role == ADMINISTRATOR
        user.is_superuser = new["superuser"]
        user.save(update_fields=["is_active", "is_staff", "is_superuser"])
        changes = {k: {"old": old[k], "new": new[k]} for k in old if old[k] != new[k]}
        record(EventType.USER_CHANGED, actor=acting_user, target=user, ip=ip, extra=changes)
    return changes


def do_change_password(
    user: AbstractUser, password: str, *, acting_user: AbstractUser, ip: str | None = None
) -> None:
    """Set ``user``'s password (already validated) and audit it; the password itself is never recorded."""
    with transaction.atomic(durable=True), audited_here():
        user.set_password(password)
        user.save(update_fields=["password"])
        record(EventType.PASSWORD_CHANGED, actor=acting_user, target=user, ip=ip)


def system_user() -> AbstractUser:
    """The actor of command-line runs without ``--user``: an inactive account that cannot log in.

    The name is reserved (the user forms refuse it); an account that got it anyway, e.g. before the
    reservation, is locked here (no password, inactive, no role) and the lock is audited.
    """
    with transaction.atomic():
        user, created = User.objects.select_for_update().get_or_create(
            username=SYSTEM_USERNAME, defaults={"is_active": False}
        )
        roles = list(user.groups.values_list("name", flat=True))
        if (
            created
            or user.has_usable_password()
            or user.is_active
            or user.is_staff
            or user.is_superuser
            or roles
        ):
            old = {"is_active": user.is_active, "staff": user.is_staff, "superuser": user.is_superuser}
            user.set_unusable_password()
            user.is_active = user.is_staff = user.is_superuser = False
            user.save(update_fields=["password", "is_active", "is_staff", "is_superuser"])
            user.groups.clear()
            if not created:
                changes = {k: {"old": v, "new": False} for k, v in old.items() if v}
                if roles:
                    changes["role"] = {"old": ", ".join(roles), "new": ""}
                record(
                    EventType.USER_CHANGED,
                    actor_name=SYSTEM_USERNAME,
                    target=user,
                    extra={**changes, "password": "made unusable (reserved command-line account)"},
                )
    return user


def acting_user(user_id: int | None) -> Any:
    """The user a background job acts for, by id (None: the command line's system actor)."""
    return system_user() if user_id is None else get_user_model().objects.get(pk=user_id)
