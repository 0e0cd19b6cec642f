from django.apps import AppConfig


class ExchangesConfig(AppConfig):
    name = "convadmin.exchanges"
    label = "exchanges"
    verbose_name = "HTTP exchanges"
