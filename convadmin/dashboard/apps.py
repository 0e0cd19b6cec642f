from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "convadmin.dashboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from convadmin.dashboard import rollup

        rollup.connect()
