from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "convadmin.exports"
    label = "exports"
