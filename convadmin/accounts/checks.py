"""Start-up checks (``manage.py check``, ``runserver``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register("security")
def dev_keys_check(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Say, at every start, that the built-in development keys are in use (INSECURE_DEV_KEYS=1)."""
    used = getattr(settings, "DEV_KEYS_IN_USE", [])
    if not used:
        return []
    return [
        Warning(
            f"{' and '.join(used)}: built-in development keys in use (INSECURE_DEV_KEYS=1). Anyone can read "
            "them: never store a real credential with them.",
            hint="Unset INSECURE_DEV_KEYS and set the keys (`make run` writes them to .env).",
            id="convadmin.W001",
        )
    ]
