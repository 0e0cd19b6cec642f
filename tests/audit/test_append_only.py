from __future__ import annotations

import pytest

from convadmin.audit.models import AuditEvent, EventType
from convadmin.audit.services import record

pytestmark = pytest.mark.django_db


def test_events_cannot_be_changed_or_deleted(admin):
    event = record(EventType.LOGIN, actor=admin, ip="127.0.0.1")
    event.actor_name = "someone else"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.all().update(actor_name="x")
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().actor_name == admin.username


def test_django_admin_shows_audit_events_read_only(admin):
    from django.contrib.admin.sites import site

    model_admin = site._registry[AuditEvent]
    assert not model_admin.has_change_permission(None) and not model_admin.has_delete_permission(None)
