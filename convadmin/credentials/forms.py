"""Credential forms built from each provider's ``CREDENTIAL_FIELDS``; secrets are never rendered back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms

import providers
from convadmin.credentials.models import Credential
from convadmin.credentials.services import (
    LABEL_MAX_LENGTH,
    kept_secrets,
    retyped_secret_names,
    setting_field_names,
)
from providers.base import Field, FieldError

KEYSTORE_MAX_BYTES = 64 * 1024
URL_FIELDS = ("base_url", "login_url")
#: The label of each URL setting (the provider's ``URL_HOSTS`` names them).
URL_LABELS = {"base_url": "Base URL", "login_url": "Sign-in URL"}


def url_field(name: str) -> forms.CharField:
    if name == "base_url":
        return forms.CharField(
            label=URL_LABELS[name],
            required=False,
            help_text="Optional: another host of this provider's API (scheme and host only), or the sandbox "
            "at e.g. http://127.0.0.1:8765. Only the provider's own hosts, loopback and hosts the operator "
            "lists in PROVIDER_EXTRA_HOSTS; https:// except on 127.0.0.1, localhost or [::1].",
            widget=forms.URLInput(attrs={"autocomplete": "off", "placeholder": "https://…"}),
        )
    return forms.CharField(
        label=URL_LABELS[name],
        required=False,
        help_text="Optional: another Microsoft identity platform host (a national cloud's login host, "
        "the sandbox, or a host the operator lists in PROVIDER_EXTRA_HOSTS).",
        widget=forms.URLInput(attrs={"autocomplete": "off", "placeholder": "https://…"}),
    )


class SecretTextarea(forms.Textarea):
    """A textarea that, like ``PasswordInput(render_value=False)``, never renders the submitted value."""

    def format_value(self, value: Any) -> None:
        return None


def form_field(
    spec: Field, *, attrs: Mapping[str, str] | None = None, default_choice: str = "", strip: bool = True
) -> forms.Field:
    """The Django form field for one provider ``Field``: a credential field, a body field or a participant
    field (the one mapper of both).

    Every field is optional for Django: the provider's own rules (``parse_credential``, ``validate``) decide
    what is required, with the same messages as the command line. ``attrs`` are the widget's own (the
    placeholder and ``aria-required`` come from ``spec``); ``default_choice`` labels an empty first choice
    when the provider's choices have none; ``strip=False`` keeps surrounding spaces for the provider to judge.
    """
    attrs = dict(attrs or {})
    if spec.placeholder:
        attrs["placeholder"] = spec.placeholder
    if spec.required:
        attrs["aria-required"] = "true"
    options = {"label": spec.label, "help_text": spec.help, "required": False}
    if spec.choices or spec.widget == "select":
        choices = list(spec.choices)
        if default_choice and not any(value == "" for value, _ in choices):
            choices.insert(0, ("", default_choice))
        return forms.ChoiceField(choices=choices, widget=forms.Select(attrs=attrs), **options)
    if spec.secret or spec.widget == "password":
        widget: forms.Widget = (
            SecretTextarea(attrs=attrs)
            if spec.widget == "textarea"
            else forms.PasswordInput(attrs=attrs, render_value=False)
        )
    else:
        widgets = {"textarea": forms.Textarea, "email": forms.EmailInput}
        widget = widgets.get(spec.widget, forms.TextInput)(attrs=attrs)
    return forms.CharField(widget=widget, strip=strip, **options)


def credential_field(field: Field) -> forms.Field:
    """A credential input: never autocompleted (a password manager would offer the wrong secret)."""
    attrs = {"autocomplete": "new-password" if field.secret else "off", "spellcheck": "false"}
    return form_field(field, attrs=attrs, default_choice="— default —")


def place_errors(
    form: forms.Form, errors: Iterable[tuple[str, Any]], names: Iterable[str] | None = None
) -> list[tuple[str, Any]]:
    """Put each ``(path, message or messages)`` on the input of ``form`` named by its path (among
    ``names``: by default every field); the errors no input takes are returned, for the caller to show."""
    names = set(form.fields if names is None else names) & set(form.fields)
    left = []
    for path, message in errors:
        if path in names:
            form.add_error(path, message)
        else:
            left.append((path, message))
    return left


def keystore_field() -> forms.FileField:
    return forms.FileField(
        label="Keystore file",
        required=False,
        help_text="The keystore JSON downloaded from the Mixin developer dashboard. When given, it is used "
        "instead of the typed fields.",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
    )


def read_keystore(upload: Any) -> dict[str, Any]:
    """The uploaded keystore as a dict, or a ``ValidationError`` saying what is wrong with the file."""
    if upload.size > KEYSTORE_MAX_BYTES:
        raise forms.ValidationError("This file is too large to be a keystore (at most 64 KB).")
    try:
        data = json.loads(upload.read().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise forms.ValidationError("The keystore file is not text: upload the JSON file.") from None
    except ValueError as exc:
        message = f"The keystore file is not valid JSON (line {getattr(exc, 'lineno', '?')})."
        raise forms.ValidationError(message) from None
    if not isinstance(data, dict):
        raise forms.ValidationError('The keystore file must hold a JSON object such as {"app_id": …}.')
    return data


class ProviderChoiceForm(forms.Form):
    """Step one of adding a credential: which provider (a GET form, so it also works without JS)."""

    provider = forms.ChoiceField(
        label="Provider", required=False, choices=[("", "Choose a provider…"), *providers.NAMES.items()]
    )


class CredentialForm(forms.Form):
    """Add a credential: a label and the chosen provider's own fields (Mixin: or a keystore file)."""

    label = forms.CharField(
        max_length=LABEL_MAX_LENGTH,
        error_messages={"required": "A label is required."},
        help_text="A unique name people will recognise, e.g. “Twilio production”. The CLI uses it too.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, provider: str | None, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.provider = provider
        if not provider:
            return
        self.fields["provider"] = forms.CharField(widget=forms.HiddenInput, initial=provider)
        if providers.get(provider).KEYSTORE_UPLOAD:
            self.fields["keystore"] = keystore_field()
        for field in providers.get(provider).CREDENTIAL_FIELDS:
            self.fields[field.name] = credential_field(field)
        for name in setting_field_names(provider):
            if name in URL_FIELDS:
                self.fields[name] = url_field(name)

    @property
    def provider_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in ("label", "provider")]

    def clean_keystore(self) -> dict[str, Any] | None:
        upload = self.cleaned_data.get("keystore")
        return read_keystore(upload) if upload else None

    def credential_data(self) -> tuple[dict[str, Any], bool]:
        """``(data, from_file)``: the provider's credential mapping, from the keystore file or the fields."""
        data = self.cleaned_data
        if data.get("keystore"):
            typed_url = data.get("base_url")
            return ({**data["keystore"], **({"base_url": typed_url} if typed_url else {})}, True)
        skip = {"label", "provider", "keystore"}
        return ({k: v for k, v in data.items() if k not in skip and v not in (None, "")}, False)


class CredentialSettingsForm(forms.Form):
    """Edit the label and the non-secret settings of a stored credential.

    It also carries the secret fields, always empty: changing where the secret is sent (a URL setting)
    needs the secret typed again in the same submit.
    """

    label = forms.CharField(
        max_length=LABEL_MAX_LENGTH, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )

    def __init__(self, credential: Credential, *args: Any, **kwargs: Any):
        fields = {f.name: f for f in credential.provider_module.CREDENTIAL_FIELDS}
        names = setting_field_names(credential.provider)
        initial = {"label": credential.label, **{n: credential.settings.get(n, "") for n in names}}
        # its own ids: the "Replace the secret" form on the same page has inputs of the same names
        super().__init__(*args, initial=initial, auto_id="settings_%s", **kwargs)
        for name in names:
            self.fields[name] = url_field(name) if name in URL_FIELDS else credential_field(fields[name])
        self.secret_names = retyped_secret_names(credential.provider)
        for name in self.secret_names:
            self.fields[name] = credential_field(fields[name])
            self.fields[name].help_text = "Only when changing a URL above: the secret, typed again."
            self.fields[name].widget.attrs.pop("aria-required", None)

    @property
    def setting_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in self.secret_names]

    @property
    def secret_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.secret_names]

    def settings_changes(self) -> dict[str, Any]:
        return {k: (v or "").strip() for k, v in self.cleaned_data.items() if k not in self.secret_names}

    def secret_data(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if k in self.secret_names and v}


class SecretForm(forms.Form):
    """Replace the secret: every secret field, always rendered empty (Mixin: or a new keystore file)."""

    def __init__(self, credential: Credential, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.credential = credential
        if credential.provider_module.KEYSTORE_UPLOAD:
            self.fields["keystore"] = keystore_field()
            self.fields[
                "keystore"
            ].help_text = (
                "A new keystore JSON (a new session): replaces the app id, session id and keys at once."
            )
        for field in credential.provider_module.CREDENTIAL_FIELDS:
            if field.secret:
                self.fields[field.name] = credential_field(field)
        for name in kept_secrets(credential.provider):
            if name in self.fields:
                self.fields[name].help_text = "Leave empty to keep the current Microsoft sign-in."

    def clean_keystore(self) -> dict[str, Any] | None:
        upload = self.cleaned_data.get("keystore")
        return read_keystore(upload) if upload else None

    def secret_data(self) -> tuple[dict[str, Any], bool]:
        """``(data, whole)``: the new secrets, or a whole keystore file."""
        if self.cleaned_data.get("keystore"):
            return self.cleaned_data["keystore"], True
        return ({k: v for k, v in self.cleaned_data.items() if k != "keystore" and v}, False)


def add_errors(form: forms.Form, errors: list[FieldError], *, file_field: str | None = None) -> None:
    """Put each provider error at the input that caused it.

    A path naming a form field lands there; with a keystore file (``file_field``) the file's own
    fields land on the file input as ``path: message``; anything else is a non-field error.
    """
    typed = set(form.fields) - {"provider"}
    if file_field:  # only the label and a typed base URL came from inputs; the rest from the file
        typed = {"label", *(["base_url"] if form.cleaned_data.get("base_url") else [])}
    for path, message in place_errors(form, [(e.path, e.message) for e in errors], typed):
        if file_field and path not in ("provider", "label"):
            form.add_error(file_field, f"{path}: {message}")
        else:
            form.add_error(None, message)
