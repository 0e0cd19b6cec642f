from django.apps import AppConfig


class DraftsConfig(AppConfig):
    name = "convadmin.drafts"
    label = "drafts"
    verbose_name = "Saved templates"
