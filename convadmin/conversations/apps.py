from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "convadmin.conversations"
    label = "conversations"

    def ready(self) -> None:
        from convadmin.conversations.export import CONVERSATIONS_EXPORT
        from convadmin.lists.export import register

        register(CONVERSATIONS_EXPORT)
