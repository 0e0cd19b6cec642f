from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware as BaseLoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse
from django_htmx.http import HttpResponseClientRedirect


class LoginRequiredMiddleware(BaseLoginRequiredMiddleware):
    """Django's login-required-by-default, with a full-page redirect for htmx requests."""

    def handle_no_permission(self, request: HttpRequest, view_func) -> HttpResponse:
        response = super().handle_no_permission(request, view_func)
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(response["Location"])
        return response
