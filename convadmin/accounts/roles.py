"""Roles are auth Groups; every view states which roles may use it with :func:`role_required`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django_htmx.http import HttpResponseClientRedirect

SUPPORT = "Support"
AUDITOR = "Auditor"
ADMINISTRATOR = "Administrator"
ROLES = (SUPPORT, AUDITOR, ADMINISTRATOR)
ROLE_HELP = {
    SUPPORT: "creates conversations and sees records",
    AUDITOR: "reads everything, including the audit log; changes nothing",
    ADMINISTRATOR: "credentials, users and everything else",
}

#: Who may do what; views name one of these.
READERS = (SUPPORT, AUDITOR, ADMINISTRATOR)
CREATORS = (SUPPORT, ADMINISTRATOR)
AUDITORS = (AUDITOR, ADMINISTRATOR)
ADMINS = (ADMINISTRATOR,)


def user_roles(user: Any) -> frozenset[str]:
    """The role names of ``user`` (cached on the user object for the request)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_convadmin_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMINISTRATOR)
        cached = user._convadmin_roles = frozenset(names)
    return cached


def has_role(user: Any, roles: tuple[str, ...]) -> bool:
    return bool(user_roles(user) & set(roles))


def role_required(roles: tuple[str, ...]) -> Callable:
    """Anonymous → login (htmx: a client redirect), authenticated without one of ``roles`` → 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                response = redirect_to_login(request.get_full_path())
                if getattr(request, "htmx", False):
                    return HttpResponseClientRedirect(response["Location"])
                return response
            if not has_role(request.user, roles):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def roles_context(request: HttpRequest) -> dict[str, Any]:
    """Template flags for the navigation; the views still check roles themselves."""
    roles = user_roles(getattr(request, "user", None))
    return {
        "user_roles": sorted(roles),
        "can_read": bool(roles),
        "can_create": bool(roles & set(CREATORS)),
        "can_audit": bool(roles & set(AUDITORS)),
        "can_admin": ADMINISTRATOR in roles,
    }
