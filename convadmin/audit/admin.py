from django.contrib import admin

from convadmin.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ["event_time", "event_type", "actor_name", "ip", "target_type", "target_label"]
    list_filter = ["event_type"]
    search_fields = ["actor_name", "target_label"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
