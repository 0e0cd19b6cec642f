from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "convadmin.audit"
    label = "audit"
