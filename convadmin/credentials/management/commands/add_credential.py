"""``add_credential PROVIDER LABEL --file CREDENTIAL.json [--replace]``: exit 0 stored, 2 invalid; the project README describes the command."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.views.decorators.debug import sensitive_variables

import providers
from convadmin.accounts.services import system_user
from convadmin.cli import INVALID, DatabaseCommand, json_file_or_exit
from convadmin.credentials import services
from convadmin.credentials.models import Credential
from providers.base import InvalidCredential


def read_credential_file(path: str) -> dict[str, Any]:
    data = json_file_or_exit(path)
    if not isinstance(data, dict):
        raise CommandError(
            f"{path} must hold one JSON object with the credential's fields.", returncode=INVALID
        )
    return data


class Command(DatabaseCommand):
    help = (
        "Store a provider credential read from its JSON file (the provider's own format). "
        "Exit 0 when stored, 2 when the file or a field is invalid or the label exists without --replace."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", help=f"One of: {', '.join(providers.NAMES)}.")
        parser.add_argument("label", help="A unique label for the credential.")
        parser.add_argument(
            "--file", required=True, metavar="CREDENTIAL.json", help="The credential JSON file."
        )
        parser.add_argument(
            "--replace", action="store_true", help="Overwrite the credential that already has this label."
        )

    @sensitive_variables()
    def handle(self, *args: Any, provider: str, label: str, file: str, replace: bool, **options: Any) -> None:
        if provider not in providers.NAMES:
            raise CommandError(
                f"Unknown provider {provider!r}; choose one of {', '.join(providers.NAMES)}.",
                returncode=INVALID,
            )
        data = read_credential_file(file)
        existed = replace and Credential.objects.filter(label=label.strip()).exists()
        try:
            credential = services.do_add_credential(
                provider, label, data, acting_user=system_user(), replace=replace
            )
        except services.LabelTaken:
            raise CommandError(
                f"A credential labelled {label!r} already exists; pass --replace to overwrite it.",
                returncode=INVALID,
            ) from None
        except InvalidCredential as exc:
            problems = "\n".join(f"  {error.path}: {error.message}" for error in exc.errors)
            raise CommandError(
                f"Invalid {provider} credential in {file}:\n{problems}", returncode=INVALID
            ) from None
        verb = "Replaced" if existed else "Stored"
        self.stdout.write(
            f"{verb} credential {credential.label!r} ({credential.provider}, {credential.secret_display})."
        )
