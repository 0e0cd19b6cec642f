from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "convadmin.conversations"
    label = "conversations"
