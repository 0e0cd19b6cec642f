from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from convadmin.accounts.roles import CREATORS, READERS, role_required
from convadmin.conversations.models import Conversation, Status


@role_required(READERS)
def dashboard(request: HttpRequest) -> HttpResponse:
    recent = Conversation.objects.select_related("credential", "created_by")[:10]
    failures = Conversation.objects.filter(status=Status.FAILED).select_related("credential", "created_by")[
        :5
    ]
    return render(
        request, "conversations/dashboard.html", {"recent": list(recent), "failures": list(failures)}
    )


@role_required(CREATORS)
def new_conversation(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/new.html", {})
