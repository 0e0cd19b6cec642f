from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "convadmin.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from convadmin.accounts import checks, signals  # noqa: F401 - registers the check and the login audit receivers
