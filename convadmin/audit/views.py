from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from convadmin.accounts.roles import AUDITORS, role_required
from convadmin.audit.models import AuditEvent


@role_required(AUDITORS)
def audit_log(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.select_related("actor")[:100]
    return render(request, "audit/log.html", {"events": events})
