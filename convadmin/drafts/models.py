"""Saved templates: a named new-conversation form (provider, credential, the provider's body) to start from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q, QuerySet

import providers
from convadmin.credentials.models import Credential, provider_choices


class TemplateQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet[ConversationTemplate]:
        """The shared templates and the user's own private ones."""
        return self.filter(Q(shared=True) | Q(owner=user))


class ConversationTemplate(models.Model):
    """The body the form would send, never a secret (see ``services.without_secrets``)."""

    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=20, choices=provider_choices)
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.JSONField(default=dict, blank=True)
    shared = models.BooleanField(default=False, help_text="Everyone who creates conversations can use it.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TemplateQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="template_name_per_owner")]

    def __str__(self) -> str:
        return self.name

    @property
    def provider_label(self) -> str:
        return providers.NAMES.get(self.provider, self.provider)
