"""Credential pages (Administrators): list, add, edit, replace the secret, disable, check, Microsoft sign-in."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.forms import PasswordInput
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

import providers
from convadmin.accounts.roles import ADMINS, role_required
from convadmin.audit.services import client_ip
from convadmin.credentials import services
from convadmin.credentials.crypto import SecretUnreadable
from convadmin.credentials.forms import (
    URL_LABELS,
    CredentialForm,
    CredentialSettingsForm,
    ProviderChoiceForm,
    SecretForm,
    SecretTextarea,
    add_errors,
)
from convadmin.credentials.models import Credential
from convadmin.exchanges.models import Exchange
from convadmin.lists.views import fragment_or_page
from providers.base import InvalidCredential, ProviderError

SIGN_IN_SESSION_KEY = "msgraph_sign_in"
RECENT_EXCHANGES = 5


def settings_summary(credential: Credential) -> list[tuple[str, str]]:
    """``(label, value)`` of the non-secret settings worth showing in the list."""
    labels = {f.name: f.label for f in credential.provider_module.CREDENTIAL_FIELDS}
    labels |= URL_LABELS
    return [
        (labels[name], str(credential.settings[name]))
        for name in services.setting_field_names(credential.provider)
        if credential.settings.get(name)
    ]


def _with_summary(credential: Credential) -> Credential:
    credential.summary = settings_summary(credential)
    return credential


@role_required(ADMINS)
@require_GET
def credential_list(request: HttpRequest) -> HttpResponse:
    credentials = [_with_summary(c) for c in Credential.objects.select_related("created_by")]
    return render(request, "credentials/list.html", {"credentials": credentials})


@role_required(ADMINS)
@sensitive_post_parameters()
@sensitive_variables()
@require_http_methods(["GET", "POST"])
def credential_new(request: HttpRequest) -> HttpResponse:
    """Add a credential; the provider comes from ``?provider=`` (the htmx select swaps its fields in)."""
    source = request.POST if request.method == "POST" else request.GET
    provider = source.get("provider", "")
    provider = provider if provider in providers.NAMES else ""
    posted = request.method == "POST"
    form = CredentialForm(
        provider or None, request.POST if posted else None, request.FILES if posted else None
    )
    if posted:
        if not provider:
            form.add_error(None, "Choose a provider first.")
        elif form.is_valid():
            data, from_file = form.credential_data()
            try:
                credential = services.do_add_credential(
                    provider,
                    form.cleaned_data["label"],
                    data,
                    acting_user=request.user,
                    ip=client_ip(request),
                )
            except InvalidCredential as exc:
                add_errors(form, exc.errors, file_field="keystore" if from_file else None)
            else:
                messages.success(
                    request,
                    f"Credential “{credential.label}” added ({credential.secret_display}). "
                    "Check it to make sure the provider accepts it.",
                )
                return redirect("credential_edit", credential.pk)
        elif "keystore" not in form.errors:
            # The label (or another form rule) failed: the provider's rules are checked in the same
            # round, so every problem shows at once.
            data, from_file = form.credential_data()
            add_errors(
                form,
                [e for e in services.credential_errors(provider, data) if e.path not in form.errors],
                file_field="keystore" if from_file else None,
            )
        ask_to_retype(form)
    context = {
        "form": form,
        "chooser": ProviderChoiceForm(initial={"provider": provider}, auto_id="choose_%s"),
        "provider": provider,
        "provider_label": providers.NAMES.get(provider, ""),
        "keystore_upload": "keystore" in form.fields,
    }
    template = "credentials/new.html"
    if request.method == "GET":
        template = fragment_or_page(request, template, "provider_fields")
    return render(request, template, context)


def ask_to_retype(form: CredentialForm | CredentialSettingsForm) -> None:
    """After an error, say which typed secrets (never sent back to the browser) must be typed again."""
    if not form.is_bound or not form.errors:
        return
    typed = [
        str(field.label)
        for name, field in form.fields.items()
        if isinstance(field.widget, (PasswordInput, SecretTextarea)) and form.data.get(name)
    ]
    again = [f"type the {', '.join(typed)} again"] if typed else []
    if form.files.get("keystore"):
        again.append("choose the keystore file again")
    if again:
        text = " and ".join(again)
        form.add_error(
            None,
            f"{text[0].upper()}{text[1:]}: secrets are never sent back to the browser, so those inputs "
            "are empty now.",
        )


def _edit_context(
    request: HttpRequest,
    credential: Credential,
    settings_form: CredentialSettingsForm | None = None,
    secret_form: SecretForm | None = None,
) -> dict[str, Any]:
    signed_in_at = credential.settings.get("signed_in_at")
    return {
        "credential": credential,
        "settings_form": settings_form or CredentialSettingsForm(credential),
        "secret_form": secret_form or SecretForm(credential),
        "exchanges": _recent_exchanges(credential),
        "signed_in_at": parse_datetime(signed_in_at) if isinstance(signed_in_at, str) else None,
        "created_by": credential.created_by,
        "sign_in": credential.provider_module.SIGN_IN,
        "url_labels": [URL_LABELS[name] for name in credential.provider_module.URL_HOSTS],
        "callback_uri": _callback_uri(request) if credential.provider_module.SIGN_IN else "",
    }


def _recent_exchanges(credential: Credential) -> list[Exchange]:
    return list(
        Exchange.objects.filter(credential=credential, conversation=None).order_by("-started_at", "-id")[
            :RECENT_EXCHANGES
        ]
    )


@role_required(ADMINS)
@sensitive_post_parameters()
@sensitive_variables()
@require_http_methods(["GET", "POST"])
def credential_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """The credential page; a POST saves the label and non-secret settings (with the secret typed
    again when a URL setting changes where it is sent)."""
    credential = get_object_or_404(Credential.objects.select_related("created_by"), pk=pk)
    form = CredentialSettingsForm(credential, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            changes = services.do_edit_credential(
                credential,
                form.settings_changes(),
                secret_data=form.secret_data(),
                acting_user=request.user,
                ip=client_ip(request),
            )
        except InvalidCredential as exc:
            add_errors(form, exc.errors)
        except SecretUnreadable as exc:
            form.add_error(None, str(exc))
        else:
            moved = changes.get("destination")
            message = "Settings saved." if changes else "Nothing changed."
            if moved:
                message += " The secret now goes to " + ", ".join(d["new"] for d in moved.values()) + "."
            messages.success(request, message)
            return redirect("credential_edit", credential.pk)
        credential.refresh_from_db()
    ask_to_retype(form)
    return render(request, "credentials/edit.html", _edit_context(request, credential, settings_form=form))


@role_required(ADMINS)
@sensitive_post_parameters()
@sensitive_variables()
@require_POST
def credential_secret(request: HttpRequest, pk: int) -> HttpResponse:
    """Replace the secret; the inputs are never filled back, not even after an error."""
    credential = get_object_or_404(Credential.objects.select_related("created_by"), pk=pk)
    form = SecretForm(credential, request.POST, request.FILES or None)
    if form.is_valid():
        data, whole = form.secret_data()
        try:
            services.do_replace_secret(
                credential, data, acting_user=request.user, ip=client_ip(request), whole=whole
            )
        except InvalidCredential as exc:
            add_errors(form, exc.errors, file_field="keystore" if whole else None)
            credential.refresh_from_db()
        else:
            messages.success(request, f"Secret replaced: now {credential.secret_display}.")
            return redirect("credential_edit", credential.pk)
    return render(request, "credentials/edit.html", _edit_context(request, credential, secret_form=form))


@role_required(ADMINS)
@require_POST
def credential_disable(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(Credential, pk=pk)
    disabled = request.POST.get("disabled") == "1"
    services.do_set_disabled(credential, disabled, acting_user=request.user, ip=client_ip(request))
    messages.success(
        request,
        f"“{credential.label}” disabled: it can no longer be used to create conversations."
        if disabled
        else f"“{credential.label}” enabled.",
    )
    return redirect("credential_edit", credential.pk)


@role_required(ADMINS)
@require_POST
def credential_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue the provider's check as a job; htmx gets its result in place (list row or credential page),
    or a "Checking…" that follows the job until the result is in."""
    credential = get_object_or_404(Credential.objects.select_related("created_by"), pk=pk)
    services.start_check_credential(credential, acting_user=request.user, ip=client_ip(request))
    on_list = request.POST.get("where") == "list"
    if request.htmx:
        return _check_result(request, credential, on_list)
    if credential.checking:
        messages.info(request, "Check: under way; the result appears on this page.")
    else:
        (messages.success if credential.last_check_ok else messages.error)(
            request, f"Check: {credential.last_check_message}"
        )
    return redirect("credentials") if on_list else redirect("credential_edit", credential.pk)


@role_required(ADMINS)
@require_GET
def credential_check_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The check result in place, polled while the Check job runs."""
    credential = get_object_or_404(Credential, pk=pk)
    return _check_result(request, credential, request.GET.get("where") == "list")


def _check_result(request: HttpRequest, credential: Credential, on_list: bool) -> HttpResponse:
    if on_list:
        return render(request, "credentials/list.html#check_result", {"c": credential})
    context = {"credential": credential, "exchanges": _recent_exchanges(credential)}
    return render(request, "credentials/edit.html#check_response", context)


# --- Microsoft sign-in ----------------------------------------------------------------------------


def _callback_uri(request: HttpRequest) -> str:
    path = reverse("credential_microsoft_callback")
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else request.build_absolute_uri(path)


@role_required(ADMINS)
@require_GET
def microsoft_sign_in(request: HttpRequest, pk: int) -> HttpResponse:
    """Start the authorization-code flow (state + PKCE kept in the session) and go to Microsoft.

    A plain link (GET), not a form: the CSP's ``form-action 'self'`` also covers where a form
    submission redirects to, so a POST answered by a redirect to the login host is blocked by the
    browser. Starting here changes nothing but this session's pending sign-in; the callback checks
    its state, and the code is redeemed only with this session's PKCE verifier.
    """
    credential = get_object_or_404(Credential, pk=pk, provider__in=services.sign_in_providers())
    redirect_uri = _callback_uri(request)
    url, state, verifier = services.microsoft_sign_in_start(credential, redirect_uri=redirect_uri)
    request.session[SIGN_IN_SESSION_KEY] = {
        "state": state,
        "verifier": verifier,
        "credential": credential.pk,
        "redirect_uri": redirect_uri,
    }
    response = HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    add_never_cache_headers(response)  # a fresh state and verifier every time
    return response


SIGN_IN_ERROR_HINTS = {
    "access_denied": "The sign-in was cancelled, or consent was declined.",
    "consent_required": "An administrator must grant consent for Group.ReadWrite.All first.",
    "interaction_required": "Microsoft needs you to sign in interactively (e.g. multi-factor): try again.",
    "login_required": "Microsoft needs you to sign in: try again.",
    "invalid_request": "Microsoft refused the sign-in request: check the app's redirect URI and settings.",
    "unauthorized_client": "This app may not sign users in this way: check the app registration.",
}


@role_required(ADMINS)
@require_GET
@sensitive_variables()
def microsoft_callback(request: HttpRequest) -> HttpResponse:
    """Microsoft sends the user back here with ``code`` and ``state`` in the query string.

    ``response_mode=query`` on purpose: ``form_post`` would be a cross-site POST, which carries no
    SameSite=Lax session cookie (so no state or verifier to compare) and would fail Django's CSRF check.
    PKCE and the single-use code cover the code appearing in the URL.
    """
    pending = request.session.pop(SIGN_IN_SESSION_KEY, None)  # single use, whatever happens next
    state = request.GET.get("state", "")
    credential = (
        Credential.objects.filter(
            pk=pending.get("credential"), provider__in=services.sign_in_providers()
        ).first()
        if isinstance(pending, dict)
        else None
    )
    back = redirect("credential_edit", credential.pk) if credential else redirect("credentials")
    if credential is None or not state or not constant_time_compare(state, pending.get("state", "")):
        messages.error(
            request,
            "This sign-in answer does not belong to a sign-in started in this browser session (it expired, "
            "was already used, or came from elsewhere). Nothing was stored: choose “Sign in with Microsoft” again.",
        )
        return back
    error = request.GET.get("error")
    if error:
        description = request.GET.get("error_description", "").strip()
        hint = SIGN_IN_ERROR_HINTS.get(error, "")
        if "AADSTS65001" in description:
            hint = SIGN_IN_ERROR_HINTS["consent_required"]
        messages.error(
            request,
            " ".join(p for p in (f"Microsoft did not sign you in ({error}).", hint, description) if p),
        )
        return back
    code = request.GET.get("code", "")
    if not code:
        messages.error(request, "Microsoft sent no authorization code. Nothing was stored; try again.")
        return back
    try:
        signed_in = services.do_microsoft_sign_in(
            credential,
            code=code,
            code_verifier=pending["verifier"],
            redirect_uri=pending["redirect_uri"],
            acting_user=request.user,
            ip=client_ip(request),
        )
    except ProviderError as exc:
        messages.error(request, f"Microsoft refused the sign-in: {exc}")
    except SecretUnreadable as exc:
        messages.error(request, str(exc))
    else:
        who = f"{signed_in.display_name} ({signed_in.user})" if signed_in.display_name else signed_in.user
        messages.success(
            request, f"Signed in with Microsoft as {who}. The refresh token is stored encrypted."
        )
    return back
