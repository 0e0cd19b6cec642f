"""First-run setup, login/logout and the users page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, login, update_session_auth_hash
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import LoginView
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from convadmin.accounts import services
from convadmin.accounts.forms import FirstAdminForm, NewUserForm, UserChangeForm
from convadmin.accounts.roles import ADMINS, READERS, role_required
from convadmin.audit.services import client_ip

User = get_user_model()


@login_not_required
def home(request: HttpRequest) -> HttpResponse:
    if not User.objects.exists():
        return redirect("setup")
    return redirect("dashboard" if request.user.is_authenticated else "login")


@login_not_required
@sensitive_post_parameters("password", "password_again")
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Create the first administrator; exists only while there is no user at all."""
    if User.objects.exists():
        raise Http404("Setup is complete.")
    form = FirstAdminForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.do_create_first_admin(
                form.cleaned_data["username"],
                form.cleaned_data["email"],
                form.cleaned_data["password"],
                ip=client_ip(request),
            )
        except PermissionError as exc:
            raise Http404("Setup is complete.") from exc
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. You are the first administrator.")
        return redirect("dashboard")
    return render(request, "accounts/setup.html", {"form": form})


class ConvadminLoginView(LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not User.objects.exists():
            return redirect("setup")
        return super().dispatch(request, *args, **kwargs)


login_view = login_not_required(ConvadminLoginView.as_view())


@role_required(READERS)
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Any signed-in user changes their own password (asked for the current one); audited."""
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.do_change_password(
            request.user, form.cleaned_data["new_password1"], acting_user=request.user, ip=client_ip(request)
        )
        update_session_auth_hash(request, request.user)
        messages.success(request, "Your password is changed.")
        return redirect("home")
    return render(request, "accounts/password_change.html", {"form": form})


@role_required(ADMINS)
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def users(request: HttpRequest) -> HttpResponse:
    form = NewUserForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        user = services.do_create_user(
            data["username"],
            data["email"],
            data["password"],
            data["role"],
            acting_user=request.user,
            ip=client_ip(request),
        )
        messages.success(request, f"User {user.username} created as {data['role']}.")
        return redirect("users")
    qs = (
        User.objects.exclude(username=services.SYSTEM_USERNAME)
        .prefetch_related("groups")
        .order_by("username")
    )
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    rows = [(u, services.role_of(u)) for u in page]
    return render(request, "accounts/users.html", {"form": form, "page": page, "rows": rows})


@role_required(ADMINS)
@require_http_methods(["GET", "POST"])
def user_change(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User.objects.exclude(username=services.SYSTEM_USERNAME), pk=pk)
    if request.method == "GET":  # the user's row (and its form) is on the users page
        return redirect(f"{reverse('users')}#user-{user.pk}")
    form = UserChangeForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            changes = services.do_change_user(
                user,
                role=form.cleaned_data["role"],
                is_active=form.cleaned_data["is_active"],
                acting_user=request.user,
                ip=client_ip(request),
            )
        except PermissionError as exc:
            error = str(exc)
        else:
            if not request.htmx:
                messages.success(
                    request, f"{user.username}: saved." if changes else f"{user.username}: no change."
                )
    else:
        error = "Choose a valid role."
    user.refresh_from_db()
    if request.htmx:
        return render(
            request,
            "accounts/users.html#user_row",
            {"u": user, "role": services.role_of(user), "row_error": error, "row_saved": not error},
        )
    if error:
        messages.error(request, error)
    return redirect("users")
