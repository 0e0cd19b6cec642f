from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "convadmin.jobs"
    label = "jobs"
