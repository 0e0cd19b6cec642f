from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "convadmin.credentials"
    label = "credentials"
