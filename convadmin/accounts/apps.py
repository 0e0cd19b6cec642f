from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "convadmin.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from convadmin.accounts import signals  # noqa: F401 - connects the login audit receivers
