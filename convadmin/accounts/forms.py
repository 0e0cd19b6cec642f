from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation

from convadmin.accounts.roles import ROLE_HELP, ROLES
from convadmin.accounts.services import SYSTEM_USERNAME

User = get_user_model()
ROLE_CHOICES = [(r, f"{r} — {ROLE_HELP[r]}") for r in ROLES]


class NewUserForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    email = forms.EmailField(required=False)
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters, not a common password.",
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="Support")

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        if username.lower() == SYSTEM_USERNAME:
            raise forms.ValidationError(
                f"“{SYSTEM_USERNAME}” is reserved for command-line actions; choose another name."
            )
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with this username already exists.")
        return username

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password"):
            try:
                password_validation.validate_password(
                    data["password"], User(username=data.get("username", ""))
                )
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class FirstAdminForm(NewUserForm):
    role = None  # the first user is always an Administrator
    password_again = forms.CharField(
        label="Password (again)",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="The same password, to catch a typing mistake.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password") and data.get("password_again") and data["password"] != data["password_again"]:
            self.add_error("password_again", "The two passwords differ.")
        return data


class UserChangeForm(forms.Form):
    role = forms.ChoiceField(choices=[(r, r) for r in ROLES])
    is_active = forms.BooleanField(required=False, label="Active")
