from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "convadmin.bulk"
    verbose_name = "Bulk create"
