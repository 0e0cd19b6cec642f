"""The inspect side: conversation list, detail and their actions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from convadmin.accounts.roles import READERS, role_required
from convadmin.conversations.models import Conversation


@role_required(READERS)
def conversation_list(request: HttpRequest) -> HttpResponse:
    conversations = Conversation.objects.select_related("credential", "created_by")[:50]
    return render(request, "conversations/list.html", {"conversations": conversations})


@role_required(READERS)
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation.objects.select_related("credential", "created_by"), pk=pk)
    return render(request, "conversations/detail.html", {"conversation": conversation})
