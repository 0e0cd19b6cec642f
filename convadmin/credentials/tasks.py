"""The credential jobs (``django.tasks``)."""

from __future__ import annotations

from django.tasks import task

from convadmin.accounts.services import acting_user
from convadmin.credentials import services
from convadmin.credentials.models import Credential


@task
def check_credential(pk: int, user_id: int | None, ip: str | None) -> bool:
    """Check with the provider that the credential works (started from the credentials pages)."""
    credential = Credential.objects.get(pk=pk)
    ok, _ = services.do_check_credential(credential, acting_user=acting_user(user_id), ip=ip)
    return ok
