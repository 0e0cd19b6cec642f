"""Saving, renaming and deleting templates, each with its audit event in one transaction."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from convadmin.accounts.roles import ADMINS, has_role
from convadmin.audit.models import EventType
from convadmin.audit.services import record
from convadmin.credentials.models import Credential
from convadmin.drafts.models import ConversationTemplate
from providers.redact import SECRET_JSON_KEYS

NAME_MAX_LENGTH = ConversationTemplate._meta.get_field("name").max_length


class TemplateRefused(ValueError):
    """The name is empty, too long or already one of the user's templates; ``str()`` says which."""


def without_secrets(value: Any) -> Any:
    """``value`` less every key ``providers.redact`` would mask (any depth): a template never holds a secret."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if str(k).lower() not in SECRET_JSON_KEYS}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise TemplateRefused("Give the template a name.")
    if len(name) > NAME_MAX_LENGTH:
        raise TemplateRefused(f"A template name is at most {NAME_MAX_LENGTH} characters.")
    return name


def _taken(name: str) -> TemplateRefused:
    return TemplateRefused(f"You already have a template named “{name}”: choose another name.")


def usable_templates(user: Any) -> QuerySet[ConversationTemplate]:
    """The templates ``user`` may start from: the shared ones and their own."""
    return ConversationTemplate.objects.select_related("credential", "owner").visible_to(user)


def listed_templates(user: Any) -> QuerySet[ConversationTemplate]:
    """The templates page: what ``user`` may use; an administrator (who may delete any) sees them all."""
    everything = ConversationTemplate.objects.select_related("credential", "owner")
    return everything if has_role(user, ADMINS) else usable_templates(user)


def can_manage(user: Any, template: ConversationTemplate) -> bool:
    """Rename and delete: its owner, or an administrator."""
    return template.owner_id == user.pk or has_role(user, ADMINS)


def do_save_template(
    name: str,
    *,
    provider: str,
    credential: Credential | None,
    body: dict[str, Any],
    shared: bool,
    acting_user: Any,
    ip: str | None = None,
) -> ConversationTemplate:
    name = clean_name(name)
    try:
        with transaction.atomic(durable=True):
            template = ConversationTemplate.objects.create(
                name=name,
                provider=provider,
                credential=credential,
                body=without_secrets(body),
                shared=shared,
                owner=acting_user,
            )
            record(
                EventType.TEMPLATE_SAVED,
                actor=acting_user,
                target=template,
                ip=ip,
                extra={
                    "name": name,
                    "provider": provider,
                    "credential": credential.label if credential else None,
                    "shared": shared,
                },
            )
    except IntegrityError:
        raise _taken(name) from None
    return template


def do_rename_template(
    template: ConversationTemplate, name: str, *, acting_user: Any, ip: str | None = None
) -> ConversationTemplate:
    name = clean_name(name)
    old = template.name
    if name == old:
        return template
    try:
        with transaction.atomic(durable=True):
            template.name = name
            template.save(update_fields=["name", "updated_at"])
            record(
                EventType.TEMPLATE_RENAMED,
                actor=acting_user,
                target=template,
                ip=ip,
                extra={"old": old, "new": name},
            )
    except IntegrityError:
        template.name = old
        raise _taken(name) from None
    return template


def do_delete_template(template: ConversationTemplate, *, acting_user: Any, ip: str | None = None) -> None:
    with transaction.atomic(durable=True):
        record(
            EventType.TEMPLATE_DELETED,
            actor=acting_user,
            target=template,
            ip=ip,
            extra={
                "name": template.name,
                "provider": template.provider,
                "owner": template.owner.get_username(),
            },
        )
        template.delete()
