from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from convadmin.accounts.roles import ADMINS, role_required
from convadmin.credentials.models import Credential


@role_required(ADMINS)
def credential_list(request: HttpRequest) -> HttpResponse:
    credentials = Credential.objects.select_related("created_by")
    return render(request, "credentials/list.html", {"credentials": credentials})
