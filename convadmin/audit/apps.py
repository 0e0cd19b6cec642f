from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "convadmin.audit"
    label = "audit"

    def ready(self) -> None:
        from convadmin.audit.views import AUDIT_EXPORT
        from convadmin.lists.export import register

        register(AUDIT_EXPORT)
