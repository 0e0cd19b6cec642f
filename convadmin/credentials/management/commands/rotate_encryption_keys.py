"""Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.credentials import crypto
from convadmin.credentials.models import Credential


class Command(BaseCommand):
    help = "Re-encrypt every credential secret under the first ENCRYPTION_KEYS key (add the new key first)."

    def handle(self, *args, **options) -> None:
        rotated, unreadable = 0, []
        with transaction.atomic(durable=True):
            for credential in Credential.objects.select_for_update().only("pk", "label", "secret"):
                try:
                    credential.secret = crypto.rotate(credential.secret)
                except crypto.SecretUnreadable:
                    unreadable.append(credential.label)
                    continue
                credential.save(update_fields=["secret"])
                rotated += 1
            if unreadable:
                transaction.set_rollback(True)
            else:
                record(
                    EventType.KEYS_ROTATED,
                    actor_name="rotate_encryption_keys",
                    extra={"credentials": rotated},
                )
        if unreadable:
            raise CommandError(
                f"Nothing was changed: {len(unreadable)} credential(s) cannot be decrypted with any configured key "
                f"({', '.join(unreadable)}). Add the key they were written with to ENCRYPTION_KEYS and run again."
            )
        self.stdout.write(f"Re-encrypted {rotated} credential(s) under the first key.")
