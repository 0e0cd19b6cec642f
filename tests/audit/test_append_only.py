from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, models, transaction
from django.db.models import ProtectedError

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


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET actor_name = 'someone else'",
        "DELETE FROM audit_auditevent",
    ],
)
def test_the_database_refuses_raw_sql_that_changes_or_removes_events(admin, statement):
    record(EventType.LOGIN, actor=admin)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.get().actor_name == admin.username


def test_the_database_refuses_the_orm_around_the_append_only_manager(admin):
    record(EventType.LOGIN, actor=admin)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent._base_manager.update(actor_name="someone else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent._base_manager.all()._raw_delete(connection.alias)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        models.QuerySet(AuditEvent).delete()
    assert AuditEvent.objects.get().actor_name == admin.username


def test_a_user_with_audit_events_cannot_be_deleted_only_deactivated(admin):
    record(EventType.LOGIN, actor=admin)
    with pytest.raises(ProtectedError):
        admin.delete()
    assert AuditEvent.objects.get().actor == admin


def test_the_test_suite_can_still_empty_the_table_between_transactional_tests(transactional_db, admin):
    # The flush after this test must get past the triggers (test settings only); the next test starts empty.
    record(EventType.LOGIN, actor=admin)


def test_the_table_is_empty_after_a_transactional_test_and_still_protected(transactional_db, admin):
    record(EventType.LOGIN, actor=admin)
    assert AuditEvent.objects.count() == 1
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent._base_manager.update(actor_name="x")
