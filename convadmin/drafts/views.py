"""The templates page: list (readers), rename and delete (the owner or an administrator).

Saving a template and starting a conversation from one happen on the new-conversation page.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from convadmin.accounts.roles import CREATORS, READERS, has_role, role_required
from convadmin.audit.services import client_ip
from convadmin.drafts import services
from convadmin.drafts.models import ConversationTemplate


@role_required(READERS)
def template_list(request: HttpRequest) -> HttpResponse:
    rows = [
        {
            "template": t,
            "json": json.dumps(t.body, indent=2, ensure_ascii=False),
            "can_manage": services.can_manage(request.user, t),
        }
        for t in services.listed_templates(request.user)
    ]
    return render(request, "drafts/list.html", {"rows": rows, "may_use": has_role(request.user, CREATORS)})


def _managed(request: HttpRequest, pk: int) -> ConversationTemplate:
    template = get_object_or_404(services.listed_templates(request.user), pk=pk)
    if not services.can_manage(request.user, template):
        raise PermissionDenied("Only its owner or an administrator can change this template.")
    return template


@role_required(CREATORS)
@require_POST
def template_rename(request: HttpRequest, pk: int) -> HttpResponse:
    template = _managed(request, pk)
    old = template.name
    try:
        services.do_rename_template(
            template, request.POST.get("name", ""), acting_user=request.user, ip=client_ip(request)
        )
    except services.TemplateRefused as exc:
        messages.error(request, f"“{old}” was not renamed: {exc}")
    else:
        if template.name != old:
            messages.success(request, f"Template “{old}” renamed to “{template.name}”.")
    return redirect("templates")


@role_required(CREATORS)
@require_POST
def template_delete(request: HttpRequest, pk: int) -> HttpResponse:
    template = _managed(request, pk)
    name = template.name
    services.do_delete_template(template, acting_user=request.user, ip=client_ip(request))
    messages.success(request, f"Template “{name}” deleted.")
    return redirect("templates")
